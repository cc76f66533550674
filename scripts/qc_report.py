"""Snakemake script: QC figures of one smear sample for the report (rule qc_report)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from scopeflow.io.tables import read_table
    from scopeflow.smear import figures

    s = smk.wildcards.sample
    cells = read_table(smk.input.cells, columns=figures.qc_cell_columns(pq.read_schema(smk.input.cells).names))
    fovs = read_table(smk.input.fovs)
    # the gallery's FOVs are read (zarr, numpy: mostly outside the GIL) while the other two
    # figures are drawn
    with ThreadPoolExecutor(1, thread_name_prefix="scopeflow-gallery") as pool:
        crops = pool.submit(figures.gallery_crops, smk.params.zarr, cells)
        figures.focus_map_figure(fovs, smk.output.focus_map, sample=s)
        figures.histogram_figure(cells, fovs, smk.output.histograms, smk.params.qc, sample=s)
        figures.gallery_figure(smk.params.zarr, cells, smk.output.gallery, sample=s, crops=crops.result())


run(main, snakemake)  # noqa: F821
