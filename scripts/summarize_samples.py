"""Snakemake script: concatenate the per-sample summaries (rules summarize_samples and
summarize_beads)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    import pandas as pd

    from scopeflow.io.tables import read_provenance, read_table, write_table

    df = pd.concat([read_table(p) for p in smk.input], ignore_index=True)
    prov = {"inputs": sorted(map(str, smk.input)),
            "samples": {str(p): read_provenance(p) for p in smk.input}}
    write_table(df, smk.output.parquet, prov)


run(main, snakemake)  # noqa: F821
