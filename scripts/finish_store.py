"""Snakemake script: check the sample's OME-Zarr is complete and flag it beside the store
(rule finish_store)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.smear import finish_store

    finish_store(smk.params.zarr, smk.input.records, smk.output.done)


run(main, snakemake)  # noqa: F821
