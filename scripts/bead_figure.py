"""Snakemake script: the per-sample tracks/MSD figure for the report (rule bead_figure)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.track.figures import tracks_figure

    i = smk.input
    tracks_figure(smk.params.zarr, i.tracks, i.msd, i.diffusion, i.sample, smk.output[0],
                  sample=smk.wildcards.sample)


run(main, snakemake)  # noqa: F821
