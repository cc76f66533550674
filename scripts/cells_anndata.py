"""Snakemake script: the merged cell table as AnnData, cells.h5ad (rule cells_anndata)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    import pandas as pd

    from scopeflow.io.h5ad import write_cells_h5ad
    from scopeflow.io.tables import read_provenance

    cells = pd.read_parquet(smk.input.cells)
    write_cells_h5ad(cells, smk.output.h5ad, read_provenance(smk.input.cells))


run(main, snakemake)  # noqa: F821
