"""Figures of a smear sample for the Snakemake report: overview (DPC crop with outlines, counts
per FOV, size histograms), cell gallery, FOV focus map, QC feature histograms.

Each function writes one PNG from a sample's merged tables; the QC figures never fail
on an empty sample (they draw an explanatory text instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from scopeflow.io import ome_zarr
from scopeflow.io.columns import read_columns
from scopeflow.smear.qc.params import QCParams

__all__ = ["focus_map_figure", "gallery_crops", "gallery_figure", "histogram_figure", "inner_outline", "pick_gallery_cells",
           "QC_CELL_COLUMNS", "sample_overview_figure"]


def _figure(nrows: int, ncols: int, figsize: tuple[float, float], **kw):
    """A matplotlib figure and its axes, without pyplot (no GUI backend, nothing global to
    close: the figure is freed with its last reference)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


#: Resolution of the saved figures (dots per inch).
_DPI = 90


def _save(fig, out_png) -> None:
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    # PNG through the Agg canvas; zlib level 1, not 6: the same pixels, the gallery's file
    # ~10 % larger, its compression ~4x cheaper
    fig.savefig(out_png, dpi=_DPI, pil_kwargs={"compress_level": 1})


def inner_outline(labels: np.ndarray) -> np.ndarray:
    """Pixels of a label that touch a different value among their 4 neighbours.

    Equals :func:`skimage.segmentation.find_boundaries` with ``mode="inner"`` and
    connectivity 1 (image edges are not boundaries), without importing scikit-image's
    morphology into the figure jobs.

    Parameters
    ----------
    labels : ndarray, 2-D
        Label image (any integer or bool dtype; 0 is background), (y, x).

    Returns
    -------
    ndarray of bool, same shape
    """
    lab = np.asarray(labels)
    p = np.pad(lab, 1, mode="edge")
    c = p[1:-1, 1:-1]
    differs = ((p[:-2, 1:-1] != c) | (p[2:, 1:-1] != c) | (p[1:-1, :-2] != c) | (p[1:-1, 2:] != c))
    return differs & (lab != 0)


def _take(table, rows):
    """Rows ``rows`` (positions) of a DataFrame or :class:`~scopeflow.io.columns.Columns`."""
    return table.iloc[rows] if hasattr(table, "iloc") else table.take(rows)


def _numeric(table, name: str) -> np.ndarray:
    """A column as float (NaN where missing or not a number, as ``pandas.to_numeric`` with
    ``errors="coerce"``); all NaN when the table lacks it."""
    if name not in table.columns:
        return np.full(len(table), np.nan)
    values = np.asarray(table[name])
    try:
        return values.astype(float)
    except (TypeError, ValueError):
        def number(v):
            try:
                return float(v)
            except (TypeError, ValueError):
                return np.nan
        return np.array([number(v) for v in values], dtype=float)


def pick_gallery_cells(cells, n: int = 16, seed: int = 0):
    """Up to ``n`` kept and ``n`` rejected cells for the gallery.

    Kept cells are a seeded random sample. Rejected cells are taken round-robin over their
    first reason, so every kind of rejection present in the sample is shown. ``cells``: a
    DataFrame or :class:`~scopeflow.io.columns.Columns`; the picks are rows of it.
    """
    rng = np.random.default_rng(seed)
    if len(cells) == 0:
        return cells, cells
    passed = np.asarray(cells["qc_pass"]).astype(bool)
    keep = np.flatnonzero(passed)
    kept = _take(cells, keep[np.sort(rng.permutation(len(keep))[:n])] if len(keep) else keep)
    rej = np.flatnonzero(~passed)
    if not len(rej):
        return kept, _take(cells, rej)
    first = np.array([str(r).split(";")[0] for r in np.asarray(cells["qc_reason"])[rej]], dtype=object)
    groups = []
    for reason in sorted(set(first)):  # by first reason, as pandas' groupby(sort=True)
        members = rej[first == reason]
        groups.append(members[rng.permutation(len(members))])
    picked, k = [], 0
    while len(picked) < n and any(k < len(g) for g in groups):
        for g in groups:
            if k < len(g) and len(picked) < n:
                picked.append(g[k])
        k += 1
    return kept, _take(cells, np.asarray(picked, dtype=np.intp))


def gallery_crops(
    zarr_path: str | Path, cells, *, n: int = 16, half_px: int = 40,
) -> list[tuple[object, list[tuple[np.ndarray, np.ndarray]]]]:
    """The gallery's cells (:func:`pick_gallery_cells`) and their crops, kept then rejected.

    Each part is ``(cells, crops)``: the cells sorted by (FOV, cell id) and per cell an RGB
    float crop of ``2 * half_px + 1`` pixels of DPC centred on it (its FOV's 1–99 % display
    window) and the cell's outline mask. Reads each FOV's DPC once (for its display window)
    and only the crops' chunks of the labels; no matplotlib (a caller can cut the
    crops in a thread while it draws other figures).
    """
    kept, rejected = pick_gallery_cells(cells, n=n)
    # each part sorted by (FOV, cell id), stably
    parts = [_take(table, np.lexsort((np.asarray(table["cell_id"]), np.asarray(table["fov"]).astype(str))))
             if len(table) else table for table in (kept, rejected)]
    cut: list[list] = [[None] * len(table) for table in parts]
    # (FOV, part, position) of every crop: each FOV is read once for both parts
    wanted = sorted((str(fov), k, m) for k, table in enumerate(parts)
                    for m, fov in enumerate(np.asarray(table["fov"]) if len(table) else []))
    # the columns a crop needs, as arrays, once per part
    at = [{c: np.asarray(table[c]) for c in ("y_px", "x_px", "cell_id")} if len(table) else {} for table in parts]
    fov, dpc, lo, hi = None, None, 0.0, 1.0
    for name, k, m in wanted:
        if name != fov:  # one FOV in memory at a time
            fov = name
            dpc = np.asarray(ome_zarr.read_channel(zarr_path, fov, "dpc"))
            # the display window of the FOV, once per FOV (not per crop), from every other
            # pixel of every other row (a quarter of the pixels sort 4x faster; same window
            # to the displayed precision)
            lo, hi = (float(v) for v in np.percentile(dpc[::2, ::2], [1, 99])) if dpc.size else (0.0, 1.0)
        row = {c: v[m] for c, v in at[k].items()}
        y, x = int(round(row["y_px"])), int(round(row["x_px"]))
        ys = slice(max(0, y - half_px), y + half_px + 1)
        xs = slice(max(0, x - half_px), x + half_px + 1)
        img = dpc[ys, xs]
        rgb = np.repeat(np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)[..., None], 3, axis=2)
        labels = ome_zarr.read_labels(zarr_path, fov, window=(ys, xs))  # the crop's chunks only
        cut[k][m] = (rgb, inner_outline(labels == int(row["cell_id"])))
    return list(zip(parts, cut))


def gallery_figure(
    zarr_path: str | Path, cells, out_png: str | Path, *, sample: str = "",
    n: int = 16, half_px: int = 40, crops=None,
) -> None:
    """Crops of kept (top rows) and rejected (bottom rows, titled with their reasons) cells.

    Each crop is ``2 * half_px + 1`` pixels of DPC centred on the cell, its outline drawn
    (green kept, red rejected). ``crops``: :func:`gallery_crops` of the same arguments when
    the caller already has them. The crops are laid out on a grid of 8 columns in one image
    (one Axes, not one per crop: the same picture at a fraction of matplotlib's cost), each
    titled above it; crops cut short by the FOV's edge are centred in their cell.
    """
    from matplotlib.figure import Figure

    (kept, kept_crops), (rejected, rejected_crops) = (
        crops if crops is not None else gallery_crops(zarr_path, cells, n=n, half_px=half_px))
    cols = 8
    rows_k = max(1, -(-len(kept) // cols))
    rows_r = max(1, -(-len(rejected) // cols))
    rows = rows_k + rows_r
    fig = Figure(figsize=(2 * cols, 2.2 * rows))
    parts = [(0, kept, kept_crops, (0.1, 0.9, 0.2), "kept"),
             (rows_k, rejected, rejected_crops, (1.0, 0.2, 0.1), "rejected")]
    titles = ([f"kept {f}" for f in np.asarray(kept["fov"])] if len(kept) else [],
              [str(r) for r in np.asarray(rejected["qc_reason"])] if len(rejected) else [])
    size = max([2 * half_px + 1] + [max(rgb.shape[:2]) for _, _, cut, _, _ in parts for rgb, _ in cut])
    # the Axes' box in pixels (below the suptitle) and the title band above each crop: as
    # many 7-point lines as the longest title, at the scale the grid is drawn at
    top, dpi = 0.94, _DPI
    box_w, box_h = 0.99 * 2 * cols * dpi, (top - 0.01) * 2.2 * rows * dpi
    text_px = 1.25 * 7 / 72 * dpi * max([1] + [t.count(";") + 1 for ts in titles for t in ts]) + 4
    gap = max(2, size // 9)
    scale = box_w / (cols * (size + gap))  # display pixels per crop pixel, filling the width
    band = int(np.ceil(text_px / scale))
    if rows * (size + band) * scale > box_h:  # the height limits the grid
        band = int(np.ceil(rows * text_px * size / max(box_h - rows * text_px, 1.0)))
    cell_w, cell_h = size + gap, size + band
    mosaic = np.ones((rows * cell_h, cols * cell_w, 3))
    ax = fig.add_axes((0.005, 0.01, 0.99, top - 0.01))
    ax.axis("off")
    for (start, table, cut, colour, label), names in zip(parts, titles):
        if not len(table):
            ax.text(gap / 2, start * cell_h + band + size / 2, f"no {label} cells", fontsize=10, va="center")
            continue
        for m, ((rgb, edge), title) in enumerate(zip(cut, names)):
            h, w = rgb.shape[:2]
            y0 = (start + m // cols) * cell_h + band + (size - h) // 2
            x0 = (m % cols) * cell_w + gap // 2 + (size - w) // 2
            tile = mosaic[y0:y0 + h, x0:x0 + w]
            tile[...] = rgb
            tile[edge] = colour
            ax.text(x0 + (w - 1) / 2, y0 - 1.5, title.replace(";", "\n"), fontsize=7, ha="center", va="bottom",
                    multialignment="center")
    ax.imshow(mosaic)
    fig.suptitle(f"sample {sample}: kept (top, green) and rejected (bottom, red, reasons) cells")
    _save(fig, out_png)


def focus_map_figure(fovs, out_png: str | Path, *, sample: str = "") -> None:
    """FOV focus ratio (default metric / sample median) over the stage positions, failed
    FOVs crossed; a bar chart per FOV when there are no stage positions. ``fovs``: a
    DataFrame or :class:`~scopeflow.io.columns.Columns`."""
    fig, ax = _figure(1, 1, (7, 5.5))
    ratio = _numeric(fovs, "focus_ratio")
    failed = ~np.asarray(fovs["fov_pass"]).astype(bool) if len(fovs) else np.zeros(0, bool)
    x, y = _numeric(fovs, "x_mm"), _numeric(fovs, "y_mm")
    has_xy = (len(fovs) and {"x_mm", "y_mm"} <= set(fovs.columns)
              and not np.isnan(x).any() and not np.isnan(y).any())
    if not len(fovs):
        ax.text(0.5, 0.5, "no FOVs", ha="center")
    elif has_xy:
        sc = ax.scatter(x, y, c=ratio, cmap="viridis", s=400, marker="s", vmin=0,
                        vmax=max(1.5, np.nanmax(np.nan_to_num(ratio, nan=0.0))))
        ax.scatter(x[failed], y[failed], marker="x", c="red", s=200, label="FOV failed QC")
        fig.colorbar(sc, ax=ax, label="focus ratio to sample median")
        ax.set_xlabel("stage x (mm)")
        ax.set_ylabel("stage y (mm)")
        ax.invert_yaxis()
        if failed.any():
            ax.legend(loc="best")
    else:
        colours = np.where(failed, "tab:red", "tab:green")
        ax.bar(range(len(fovs)), np.nan_to_num(ratio, nan=0.0), color=colours)
        ax.set_xticks(range(len(fovs)))
        ax.set_xticklabels([str(f) for f in np.asarray(fovs["fov"])], rotation=90, fontsize=6)
        ax.set_ylabel("focus ratio to sample median (red = FOV failed)")
    n_fail = int(failed.sum()) if len(fovs) else 0
    ax.set_title(f"sample {sample}: FOV focus, {n_fail}/{len(fovs)} FOVs failed QC")
    fig.tight_layout()
    _save(fig, out_png)


#: (column, thresholds in the qc params (low, high), axis label) of the histogram panels
_PANELS = (
    ("area_rel_sample", ("min_area_ratio", "max_area_ratio"), "area / sample median"),
    ("solidity", ("min_solidity", None), "solidity"),
    ("concavity_rel", (None, "max_concavity_rel"), "concavity depth / diameter"),
    ("focus_rel_fov", ("min_focus_rel", "max_focus_rel"), "cell focus / FOV median (log)"),
    ("contrast_rel_sample", ("min_contrast_rel", None), "DPC contrast / sample median"),
    ("saturated_fraction", (None, "max_saturated_fraction"), "saturated pixel fraction"),
    ("axis_ratio", ("min_axis_ratio", None), "minor / major axis"),
    ("p_good", ("classifier_threshold", None), "classifier p_good"),
)


#: Cell columns the gallery draws (besides the histogram panels' :data:`_PANELS`)
_GALLERY_COLUMNS = ("fov", "cell_id", "y_px", "x_px", "qc_pass", "qc_reason", "touches_border")


#: Cell columns the QC figures (:func:`gallery_crops`, :func:`gallery_figure`,
#: :func:`histogram_figure`) use: the qc_report job reads only these.
QC_CELL_COLUMNS = (*_GALLERY_COLUMNS, *(col for col, _, _ in _PANELS))


def histogram_figure(
    cells, fovs, out_png: str | Path,
    params: QCParams | Mapping | None = None,
    *, sample: str = "",
) -> None:
    """Histograms of the per-cell QC features (non-border cells) and of the FOV focus
    ratio, each with its thresholds as dashed red lines. ``cells``, ``fovs``: DataFrames or
    :class:`~scopeflow.io.columns.Columns`."""
    p = QCParams.from_config(params)
    panels = [pp for pp in _PANELS if pp[0] in cells.columns]
    n = len(panels) + 1
    cols = 3
    fig, axes = _figure(-(-n // cols), cols, (5 * cols, 3.4 * -(-n // cols)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    interior = ~np.asarray(cells["touches_border"]).astype(bool) if len(cells) else np.zeros(0, bool)
    for ax, (col, (lo, hi), label) in zip(axes.ravel(), panels):
        ax.axis("on")
        v = _numeric(cells, col)[interior]
        v = v[np.isfinite(v)]
        log = col == "focus_rel_fov"
        if log:
            v = v[v > 0]
        if v.size:
            bins = np.geomspace(v.min(), v.max(), 50) if log and v.min() < v.max() else 50
            # one filled outline, not a bar per bin (the same shape, one artist)
            ax.hist(v, bins=bins, color="0.35", histtype="stepfilled")
        if log:
            ax.set_xscale("log")
        for key in (lo, hi):
            if key is not None and getattr(p, key) is not None:
                ax.axvline(float(getattr(p, key)), color="red", ls="--", lw=1.2)
        ax.set_xlabel(label)
        ax.set_title(f"{col} (n = {v.size})", fontsize=9)
    ax = axes.ravel()[len(panels)]
    ax.axis("on")
    r = _numeric(fovs, "focus_ratio")
    r = r[~np.isnan(r)]
    if len(r):
        ax.hist(r, bins=max(5, min(30, len(r))), color="0.35", histtype="stepfilled")
    ax.axvline(float(p.min_focus_ratio), color="red", ls="--", lw=1.2)
    ax.set_xlabel(f"FOV focus ratio ({p.focus_metric} / sample median)")
    ax.set_title(f"FOVs (n = {len(fovs)})", fontsize=9)
    fig.suptitle(f"sample {sample}: QC features of non-border cells, thresholds dashed red")
    fig.tight_layout()
    _save(fig, out_png)


# ------------------------------------------------------------------ sample overview


def _count_grid(i: np.ndarray | None, j: np.ndarray | None, n_cells: np.ndarray) -> np.ndarray | None:
    """Cells per FOV laid out on the stage grid (rows i, columns j; float arrays, NaN where
    unknown), or None without a grid."""
    if i is None or j is None or np.isnan(i).any() or np.isnan(j).any():
        return None
    i = i.astype(int)
    j = j.astype(int)
    grid = np.full((i.max() + 1, j.max() + 1), np.nan)
    for a, b, n in zip(i, j, n_cells):
        grid[a, b] = n if np.isnan(grid[a, b]) else grid[a, b] + n
    return grid


def sample_overview_figure(
    zarr_path: str | Path, cells_path: str | Path, fovs_path: str | Path, out_png: str | Path,
    *, sample: str, crop: int = 512,
) -> None:
    """Write the per-sample overview PNG: a DPC crop with cell outlines, counts per FOV,
    and histograms of cell area and circularity (border cells excluded).

    Reads only the columns it draws and the crop's chunks of the first FOV.
    """
    cells = read_columns(cells_path, ["touches_border", "area_um2", "circularity"])
    fovs = read_columns(fovs_path, ["i", "j", "n_cells"])
    n_cells, n_fovs = len(cells), len(fovs)
    names = ome_zarr.fov_names(zarr_path)
    fig, axes = _figure(1, 4, (18, 4.5))
    if names:
        fov = names[0]
        window = (slice(0, crop), slice(0, crop))
        dpc = np.asarray(ome_zarr.read_channel(zarr_path, fov, "dpc", window=window))
        labels = ome_zarr.read_labels(zarr_path, fov, window=window)
        lo, hi = np.percentile(dpc, [1, 99])
        rgb = np.repeat(np.clip((dpc - lo) / max(hi - lo, 1e-6), 0, 1)[..., None], 3, axis=2)
        rgb[inner_outline(labels)] = (1.0, 0.2, 0.1)
        axes[0].imshow(rgb)
        axes[0].set_title(f"{fov}: DPC + cells (top-left {crop} px)")
    axes[0].axis("off")
    grid = _count_grid(*(None if fovs.get(k) is None else fovs[k].astype(float) for k in ("i", "j")),
                       fovs["n_cells"])
    if grid is not None:
        im = axes[1].imshow(grid, cmap="viridis")
        fig.colorbar(im, ax=axes[1], label="cells")
        axes[1].set_xticks(range(grid.shape[1]))
        axes[1].set_yticks(range(grid.shape[0]))
        axes[1].set_xlabel("FOV column j")
        axes[1].set_ylabel("FOV row i")
        axes[1].set_title("cells per FOV (stage grid)")
    else:
        axes[1].bar(range(n_fovs), fovs["n_cells"])
        axes[1].set_xlabel("FOV")
        axes[1].set_ylabel("cells")
        axes[1].set_title("cells per FOV")
    inside = ~cells["touches_border"].astype(bool) if n_cells else np.zeros(0, bool)
    n_interior = int(inside.sum())
    if n_interior:  # one filled outline per histogram (the pixels of a bar per bin)
        axes[2].hist(cells["area_um2"][inside], bins=50, color="0.3", histtype="stepfilled")
        axes[3].hist(np.clip(cells["circularity"][inside], 0, 1.2), bins=50, color="0.3", histtype="stepfilled")
    axes[2].set_xlabel("area (µm²)")
    axes[2].set_title(f"cell area, n = {n_interior}")
    axes[3].set_xlabel("circularity 4πA/P²")
    axes[3].set_title("circularity")
    fig.suptitle(f"sample {sample}: {n_fovs} FOVs, {n_cells} cells")
    fig.tight_layout()
    _save(fig, out_png)
