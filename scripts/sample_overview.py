"""Snakemake script: the per-sample overview figure for the report (rule sample_overview)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.smear.figures import sample_overview_figure

    sample_overview_figure(smk.params.zarr, smk.input.cells, smk.input.fovs, smk.output[0],
                           sample=smk.wildcards.sample)


run(main, snakemake)  # noqa: F821
