"""Snakemake script: per-cell measurements of one shard's FOVs (rule measure)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    import json

    from scopeflow.smear import measure_store

    fovs = list(json.loads(Path(smk.input.record).read_text())["fovs"])
    measure_store(
        smk.params.zarr, smk.input.record, smk.output.cells, smk.output.fovs,
        sample=smk.wildcards.sample, fovs=fovs, classifier=bool(smk.params.classifier),
        focus_metrics=list(smk.params.focus_metrics), threads=smk.threads,
    )


run(main, snakemake)  # noqa: F821
