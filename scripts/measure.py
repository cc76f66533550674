"""Snakemake script: per-cell measurements and summaries (rule measure)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.pipeline import measure_store, sample_provenance

    s = smk.wildcards.sample
    measure_store(
        smk.input.zarr, smk.input.record, smk.output.cells, smk.output.fovs, smk.output.sample,
        sample=s, provenance=sample_provenance(smk.params.config, [smk.input.zarr], sample=s),
    )


run(main, snakemake)  # noqa: F821
