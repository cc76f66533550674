"""Snakemake script: detect and localise the beads of every frame (rule locate_beads)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.provenance import make_provenance
    from scopeflow.track.params import LocateParams
    from scopeflow.track.stages import locate_movie

    p = smk.params
    s = smk.wildcards.sample
    locate_movie(
        p.zarr, smk.output.locs, sample=s, model=p.model, threads=smk.threads,
        params=LocateParams.from_config(dict(p.items())),  # the rule's track.* params
        provenance=make_provenance(smk.config, inputs=[p.zarr], sample=s),
    )


run(main, snakemake)  # noqa: F821
