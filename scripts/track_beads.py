"""Snakemake script: link localisations into tracks; MSD and diffusion (rule track_beads)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.provenance import make_provenance
    from scopeflow.track.pipeline import track_movie

    p = smk.params
    s = smk.wildcards.sample
    o = smk.output
    track_movie(
        smk.input.locs, o.tracks, o.diffusion, o.msd, o.sample, sample=s,
        search_range_px=p.search_range_px, memory=p.memory, adaptive_stop_px=p.adaptive_stop_px,
        min_length=p.min_length, drift=p.drift, max_lag=p.max_lag, fit_lags=p.fit_lags,
        provenance=make_provenance(smk.config, inputs=[smk.input.locs], sample=s),
    )


run(main, snakemake)  # noqa: F821
