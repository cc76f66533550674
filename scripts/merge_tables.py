"""Snakemake script: merge a sample's shard tables, apply QC and summarise it (rule merge_tables)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.smear import merge_tables, sample_provenance

    s = smk.wildcards.sample
    merge_tables(
        smk.input.cells, smk.input.fovs, smk.params.zarr, smk.output.cells, smk.output.fovs,
        smk.output.sample, sample=s, provenance=sample_provenance(smk.config, [smk.params.zarr], sample=s),
        qc=smk.params.qc, out_qc=smk.output.qc,
    )


run(main, snakemake)  # noqa: F821
