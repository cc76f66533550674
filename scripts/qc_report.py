"""Snakemake script: QC figures of one smear sample for the report (rule qc_report)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from concurrent.futures import ThreadPoolExecutor

    from scopeflow.io.columns import read_columns
    from scopeflow.smear import figures

    s = smk.wildcards.sample
    # the columns the figures draw, as numpy arrays (no pandas)
    cells = read_columns(smk.input.cells, figures.QC_CELL_COLUMNS)
    fovs = read_columns(smk.input.fovs, ["fov", "focus_ratio", "fov_pass", "x_mm", "y_mm"])
    # the gallery's FOVs are read (zstd, numpy: mostly outside the GIL) while the other two
    # figures are drawn
    with ThreadPoolExecutor(1, thread_name_prefix="scopeflow-gallery") as pool:
        crops = pool.submit(figures.gallery_crops, smk.params.zarr, cells)
        figures.focus_map_figure(fovs, smk.output.focus_map, sample=s)
        figures.histogram_figure(cells, fovs, smk.output.histograms, smk.params.qc, sample=s)
        figures.gallery_figure(smk.params.zarr, cells, smk.output.gallery, sample=s, crops=crops.result())


run(main, snakemake)  # noqa: F821
