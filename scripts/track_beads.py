"""Snakemake script: link localisations into tracks; MSD and diffusion (rule track_beads)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.provenance import make_provenance
    from scopeflow.track.params import LinkParams
    from scopeflow.track.stages import track_movie

    s = smk.wildcards.sample
    o = smk.output
    track_movie(
        smk.input.locs, o.tracks, o.diffusion, o.msd, o.sample, sample=s,
        params=LinkParams.from_config(dict(smk.params.items())),  # the rule's track.* params
        provenance=make_provenance(smk.config, inputs=[smk.input.locs], sample=s),
    )


run(main, snakemake)  # noqa: F821
