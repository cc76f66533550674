"""Per-cell measurements and per-FOV / per-sample summaries.

Coordinates are (y, x) in pixels with the origin at the centre of pixel (0, 0); micrometre
columns are pixel columns times the pixel size. Column names carry their units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the compiled kernels (numba) are imported where used: merge_tables needs
    # only the summaries below
    from scopeflow.smear import cell_kernels

CELL_COLUMNS = {
    "sample": "sample name",
    "fov": "field-of-view name, `<t>-<i>_<j>_<k>` for Octopi acquisitions, file stem otherwise",
    "cell_id": "the cell's value in that FOV's `labels/cells`",
    "y_px": "centroid row (px, origin at the centre of pixel (0, 0))",
    "x_px": "centroid column (px)",
    "y_um": "centroid row (um)",
    "x_um": "centroid column (um)",
    "area_px": "area (pixels)",
    "area_um2": "area (um^2)",
    "perimeter_um": "perimeter (um, skimage boundary-length estimate)",
    "equivalent_diameter_um": "diameter of the disc with the same area (um)",
    "circularity": "4*pi*area/perimeter^2 (1 = disc)",
    "solidity": "area / convex hull area",
    "eccentricity": "eccentricity of the ellipse with the same second moments (0 = circle)",
    "mean_dpc": "mean DPC in the cell (0.5 = no phase gradient)",
    "std_dpc": "standard deviation of DPC in the cell",
    "dpc_contrast": "mean |DPC - 0.5| in the cell",
    "mean_phase_rad": "mean reconstructed phase in the cell (rad)",
    "phase_integral_rad_um2": "phase integrated over the cell (rad um^2), proportional to dry mass",
    "focus": "variance of the Laplacian of DPC inside the cell (local focus score)",
    "touches_border": "the cell touches the FOV border (its size is unreliable)",
    "axis_ratio": "minor / major axis of the ellipse with the same second moments (1 = circle)",
    "n_neighbours": "other cells within 2 px of the cell's boundary (touching or overlapping cells)",
    "contact_fraction": "fraction of the cell's boundary within 2 px of another cell (0 = isolated, "
                        "near 1 = inside a clump)",
    "concavity_depth_um": "depth of the deepest notch of the outline below its convex hull (um; "
                          "a doublet's waist)",
    "concavity_rel": "concavity_depth_um / equivalent_diameter_um",
    "saturated_fraction": "fraction of the cell's pixels with DPC clipped at 0 or 1",
    "focus_rel_fov": "focus / median focus of the FOV's non-border cells (local focus relative to the "
                     "FOV; NaN when that median is 0 or the FOV has no non-border cell)",
}

#: Cell columns added when a sample's shards are merged (thresholds relative to the sample),
#: see :func:`scopeflow.smear.qc.flags.flag_cells`.
CELL_QC_COLUMNS = {
    "area_rel_sample": "area_um2 / median area of the sample's non-border cells",
    "contrast_rel_sample": "dpc_contrast / median dpc_contrast of the sample's non-border cells",
    "p_good": "probability that the cell is a good, single, in-focus RBC from the learned classifier "
              "(present only with qc.classifier: true)",
    "qc_pass": "the cell passed every quality check (only these enter the sample's median statistics)",
    "qc_reason": "semicolon-separated failed checks, empty when qc_pass: border, size, clump, "
                 "out_of_focus, debris, low_contrast, saturated, shape, classifier, fov_focus, fov_count",
}


FOV_COLUMNS = {
    "sample": "sample name",
    "fov": "field-of-view name",
    "height_px": "image height (px)",
    "width_px": "image width (px)",
    "pixel_size_um": "pixel size at the sample (um)",
    "area_mm2": "imaged area (mm^2)",
    "n_cells": "cells segmented (including border cells)",
    "n_cells_border": "cells touching the FOV border",
    "density_per_mm2": "(n_cells - n_cells_border / 2) per mm^2",
    "median_area_um2": "median area of non-border cells (um^2)",
    "median_circularity": "median circularity of non-border cells",
    "focus": "variance of the Laplacian of the FOV's DPC (higher = sharper)",
    "focus_laplacian_var": "variance of the Laplacian of the DPC after a Gaussian of sigma 1 px "
                           "(default focus metric, scopeflow.smear.qc.focus; like the three below scored on "
                           "128-px tiles, 90th percentile of the tiles)",
    "focus_tenengrad": "mean squared Sobel gradient magnitude of the DPC (this and the two below: "
                       "empty unless qc.focus_metric or qc.extra_focus_metrics names them)",
    "focus_brenner": "mean squared difference of DPC pixels 2 px apart (x and y)",
    "focus_normalized_var": "variance / mean of the DPC (not a good focus metric for phase objects)",
    "i": "Octopi grid row (empty for DPC files)",
    "j": "Octopi grid column",
    "k": "Octopi z index",
    "x_mm": "stage x (mm) from coordinates.csv",
    "y_mm": "stage y (mm)",
    "z_um": "stage z (um)",
    "t": "time point (the acquisition's {t}/ folder or T index; 0 for DPC files)",
    "region": "region of the acquisition (well such as A1, or a named region; empty without regions)",
    "n_z": "z planes acquired at this FOV and time point",
    "z_selection": "how the analysed plane k was chosen: best_focus, index, all (every plane is a FOV) "
                   "or single (no stack)",
    "z_focus_scores": "focus score (qc.focus_metric of the plane's DPC) of every plane of the stack, "
                      "semicolon-separated in z order (empty without a stack)",
    "bit_depth": "camera bit depth (from the channels' pixel format, else from the data)",
    "objective": "objective the FOV was imaged with, from the acquisition metadata (e.g. 20x; empty "
                 "when the metadata do not say, and for DPC files)",
    "saturated_fraction_raw": "fraction of pixels at the camera's true maximum (e.g. 4095 for 12-bit "
                              "data in 16-bit files) in the left or right image",
}

#: FOV columns added when a sample's shards are merged, see :mod:`scopeflow.smear.qc.gates`.
FOV_QC_COLUMNS = {
    "focus_ratio": "the qc.focus_metric score / the sample's median FOV score (NaN when that median is 0)",
    "focus_pass": "focus_ratio >= qc.min_focus_ratio and the score is positive",
    "count_pass": "non-border cells >= max(qc.min_cells_per_fov, qc.min_cells_ratio x the sample's "
                  "median FOV)",
    "fov_pass": "focus_pass and count_pass",
    "fov_qc_reason": "semicolon-separated failed FOV checks (focus, count), empty when fov_pass",
    "n_cells_qc_pass": "cells of the FOV with qc_pass",
}

SAMPLE_COLUMNS = {
    "sample": "sample name",
    "region": "empty on the row of the whole sample; a region's name on the rows that summarise each "
              "region (well) of an acquisition with regions (QC flags from the whole sample, the gate "
              "per region)",
    "n_fovs": "FOVs",
    "objective": "objective(s) of the FOVs (semicolon-separated when several; empty when unknown)",
    "n_cells": "cells (including border cells)",
    "cells_per_fov_mean": "mean cells per FOV",
    "cells_per_fov_cv": "coefficient of variation of cells per FOV",
    "density_per_mm2": "mean FOV density (cells per mm^2)",
    "median_area_um2": "median area of qc_pass cells (um^2; non-border cells if the table has no QC)",
    "median_equivalent_diameter_um": "median equivalent diameter of qc_pass cells (um)",
    "median_circularity": "median circularity of qc_pass cells",
    "median_phase_integral_rad_um2": "median integrated phase of qc_pass cells (rad um^2)",
    "focus_median": "median FOV focus score",
    "n_cells_qc_pass": "cells with qc_pass (the cells the median statistics are computed from)",
    "fraction_qc_pass": "n_cells_qc_pass / n_cells (NaN without cells)",
    "n_fovs_pass": "FOVs with fov_pass (focus and cell count)",
    "qc_gate": "pass or fail: the sample's QC gate (qc.min_fraction_pass, qc.min_fraction_fovs_pass, "
               "qc.min_cells_pass); also in qc.json",
    "qc_gate_reason": "why the gate failed (semicolon-separated), empty when it passed",
}


_PROPS = (
    "label", "centroid", "area", "perimeter", "equivalent_diameter_area",
    "eccentricity", "intensity_mean", "intensity_std", "bbox",
    "axis_major_length", "axis_minor_length",
)


def _region_props(groups: cell_kernels.LabelGroups, shapes: dict, imean: np.ndarray,
                  istd: np.ndarray) -> dict:
    """The ``regionprops_table(labels, dpc, properties=_PROPS)`` columns from the compiled
    per-cell kernel (:func:`scopeflow.smear.cell_kernels.cell_shapes`), with skimage's
    formulas: centroid = mean pixel coordinate, inertia tensor from the central moments
    normalised by the area, eccentricity = sqrt(1 - l2 / l1), axis lengths 4 sqrt(l),
    equivalent diameter sqrt(4 area / pi); ``imean`` and ``istd`` (intensity mean and std,
    per id of ``groups.present``) come from :func:`scopeflow.smear.cell_kernels.intensity_sums`."""
    present = groups.present
    bbox = shapes["bbox"]
    mom = shapes["moments"]
    count = mom[:, 0]
    m00 = count.astype(np.float64)
    # regionprops: mean of the pixels' (float) coordinates; the sums are exact integers
    cy = (mom[:, 1] + count * bbox[:, 0]).astype(np.float64) / m00
    cx = (mom[:, 2] + count * bbox[:, 1]).astype(np.float64) / m00
    m10, m01 = mom[:, 1].astype(np.float64), mom[:, 2].astype(np.float64)
    mu20 = mom[:, 3].astype(np.float64) - m10 * m10 / m00
    mu02 = mom[:, 4].astype(np.float64) - m01 * m01 / m00
    mu11 = mom[:, 5].astype(np.float64) - m10 * m01 / m00
    tensor = np.empty((present.size, 2, 2), np.float64)
    tr = mu20 + mu02
    tensor[:, 0, 0] = (tr - mu20) / m00
    tensor[:, 1, 1] = (tr - mu02) / m00
    tensor[:, 0, 1] = tensor[:, 1, 0] = -mu11 / m00
    ev = np.clip(np.linalg.eigvalsh(tensor), 0, None) if present.size else np.zeros((0, 2))
    l1, l2 = ev[:, 1], ev[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(l1 == 0, 0.0, np.sqrt(1 - l2 / np.where(l1 == 0, 1.0, l1)))
    return {
        "label": present,
        "centroid-0": cy,
        "centroid-1": cx,
        "area": m00,
        "perimeter": shapes["perimeter"],
        "equivalent_diameter_area": (4 * m00 / np.pi) ** 0.5,
        "eccentricity": ecc,
        "intensity_mean": imean,
        "intensity_std": istd,
        "bbox-0": bbox[:, 0],
        "bbox-1": bbox[:, 1],
        "bbox-2": bbox[:, 2],
        "bbox-3": bbox[:, 3],
        "axis_major_length": 4 * np.sqrt(l1),
        "axis_minor_length": 4 * np.sqrt(l2),
    }


def measure_cells(
    labels: np.ndarray,
    dpc: np.ndarray,
    phase: np.ndarray | None,
    pixel_size_um: float,
    *,
    sample: str = "",
    fov: str = "",
    lap: np.ndarray | None = None,
) -> pd.DataFrame:
    """Measure every labelled cell of one FOV.

    Parameters
    ----------
    labels : ndarray
        (y, x) integer instance labels, 0 = background.
    dpc : ndarray
        (y, x) DPC image in [0, 1] (0.5 = no phase gradient).
    phase : ndarray or None
        (y, x) quantitative phase in radians, or None (phase columns become NaN).
    pixel_size_um : float
        Pixel size at the sample (um).
    sample, fov : str
        Names written into the ``sample`` and ``fov`` columns.
    lap : ndarray, optional
        :func:`scopeflow.smear.filters.laplace` of ``dpc`` when the caller already has it.

    Returns
    -------
    pandas.DataFrame
        One row per cell with the columns of :data:`CELL_COLUMNS`, sorted by ``cell_id``.

    Notes
    -----
    The geometry and the contacts come from one compiled pass over each cell's pixels
    (:func:`scopeflow.smear.cell_kernels.cell_shapes`) and the per-cell sums, DPC mean and
    std from one more (:func:`scopeflow.smear.cell_kernels.intensity_sums`, the additions
    of ``np.bincount`` and numpy's float32 pairwise sums) over the label image grouped
    once; the values are those of skimage's
    ``regionprops`` and scipy's ``ndimage.mean`` (without numba, or with
    ``SCOPEFLOW_NO_NUMBA=1``, those are called instead: :func:`_measure_cells_reference`).
    """
    from scopeflow.smear import cell_kernels
    from scopeflow.smear.filters import laplace
    from scopeflow.smear.qc import cell_features

    if not cell_kernels.HAVE_NUMBA:  # pragma: no cover
        return _measure_cells_reference(labels, dpc, phase, pixel_size_um, sample=sample, fov=fov)
    labels = np.asarray(labels)
    dpc = np.asarray(dpc, dtype=np.float32)
    groups = cell_kernels.group_labels(labels)
    shapes = cell_kernels.cell_shapes(groups, gap_px=2)  # with the contacts' counts
    index = groups.present
    n = len(index)
    if n:
        # every per-cell sum in one pass over the grouped pixels
        lap = laplace(dpc) if lap is None else np.asarray(lap, dtype=np.float32)
        sums = cell_kernels.intensity_sums(groups, dpc, lap, phase)
    else:
        sums = np.zeros((0, 7))
    props = _region_props(groups, shapes, sums[:, 5], sums[:, 6])
    n_nb, contact = cell_features.contacts(labels, index, gap_px=2, groups=groups, shapes=shapes)
    solidity, depth = cell_features.convexity(labels, index, groups=groups, shapes=shapes)
    if n:
        count = groups.counts[index].astype(np.float64)
        contrast = sums[:, 0] / count
        focus = sums[:, 2] / count - (sums[:, 1] / count) ** 2  # variance of the Laplacian
        saturated = np.nan_to_num(sums[:, 3] / count)
        if phase is None:
            mean_phase = phase_int = np.full(n, np.nan)
        else:
            ps = float(pixel_size_um)
            mean_phase = sums[:, 4] / count
            phase_int = sums[:, 4] * ps * ps
    else:
        contrast = focus = saturated = mean_phase = phase_int = np.zeros(0)
    return _cell_table(props, labels.shape, pixel_size_um, sample, fov, n_nb, contact, solidity,
                       depth, saturated, contrast, focus, mean_phase, phase_int)


def _measure_cells_reference(
    labels: np.ndarray,
    dpc: np.ndarray,
    phase: np.ndarray | None,
    pixel_size_um: float,
    *,
    sample: str = "",
    fov: str = "",
) -> pd.DataFrame:
    """:func:`measure_cells` with skimage's ``regionprops`` and scipy's ``ndimage`` (slow;
    the fallback without numba, and the tests' reference)."""
    from scipy import ndimage as ndi
    from skimage.measure import regionprops_table

    from scopeflow.smear.qc import cell_features

    labels = np.asarray(labels)
    dpc = np.asarray(dpc, dtype=np.float32)
    props = regionprops_table(labels, intensity_image=dpc, properties=_PROPS)
    index = np.asarray(props["label"])
    n_nb, contact = cell_features._contacts_reference(labels, index, gap_px=2)
    solidity, depth = cell_features._convexity_reference(labels, index)  # one convex hull per cell
    saturated = cell_features.saturated_fraction(dpc, labels, index)
    intensity = _intensity_columns(
        dpc, phase, pixel_size_um, len(index),
        lambda values: np.asarray(ndi.mean(values, labels, index)),
        lambda values: np.asarray(ndi.sum(values, labels, index)),
    )
    return _cell_table(props, labels.shape, pixel_size_um, sample, fov, n_nb, contact, solidity,
                       depth, saturated, *intensity)


def _intensity_columns(dpc, phase, pixel_size_um, n, mean, total):
    """(dpc_contrast, focus, mean_phase_rad, phase_integral_rad_um2) per cell.

    ``mean(values)`` and ``total(values)`` reduce a (y, x) image over each cell, in cell
    order; the two measurement paths pass their own.
    """
    if not n:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    from scipy import ndimage as ndi

    contrast = mean(np.abs(dpc - 0.5))
    lap = ndi.laplace(dpc)
    focus = mean(lap * lap) - mean(lap) ** 2  # variance of the Laplacian inside the cell
    if phase is None:
        return contrast, focus, np.full(n, np.nan), np.full(n, np.nan)
    ph = np.asarray(phase, dtype=np.float32)
    ps = float(pixel_size_um)
    return contrast, focus, mean(ph), total(ph) * ps * ps


def _cell_table(props, shape, pixel_size_um, sample, fov, n_nb, contact, solidity, depth,
                saturated, contrast, focus, mean_phase, phase_int) -> pd.DataFrame:
    index = np.asarray(props["label"])
    n = len(index)
    ps = float(pixel_size_um)
    area = np.asarray(props["area"], dtype=np.float64)
    perim = np.asarray(props["perimeter"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        circ = np.where(perim > 0, 4 * np.pi * area / np.maximum(perim, 1e-12) ** 2, np.nan)
    h, w = shape
    touches = (
        (np.asarray(props["bbox-0"]) == 0)
        | (np.asarray(props["bbox-1"]) == 0)
        | (np.asarray(props["bbox-2"]) == h)
        | (np.asarray(props["bbox-3"]) == w)
    )
    major = np.asarray(props["axis_major_length"], dtype=np.float64)
    minor = np.asarray(props["axis_minor_length"], dtype=np.float64)
    axis_ratio = np.divide(minor, major, out=np.ones(n), where=major > 0)
    eq_diam = np.asarray(props["equivalent_diameter_area"], dtype=np.float64)
    focus = np.asarray(focus, dtype=np.float64)
    interior_focus = focus[~touches] if n else focus
    fov_focus_median = float(np.median(interior_focus)) if interior_focus.size else np.nan
    if np.isfinite(fov_focus_median) and fov_focus_median > 0:
        focus_rel = focus / fov_focus_median
    else:
        focus_rel = np.full(n, np.nan)
    y = np.asarray(props["centroid-0"], dtype=np.float64)
    x = np.asarray(props["centroid-1"], dtype=np.float64)
    df = pd.DataFrame(
        {
            "sample": pd.Series([sample] * n, dtype="string"),
            "fov": pd.Series([fov] * n, dtype="string"),
            "cell_id": index.astype(np.uint32),
            "y_px": y,
            "x_px": x,
            "y_um": y * ps,
            "x_um": x * ps,
            "area_px": area.astype(np.int64),
            "area_um2": area * ps * ps,
            "perimeter_um": perim * ps,
            "equivalent_diameter_um": np.asarray(props["equivalent_diameter_area"]) * ps,
            "circularity": circ,
            "solidity": solidity,
            "eccentricity": np.asarray(props["eccentricity"], dtype=np.float64),
            "mean_dpc": np.asarray(props["intensity_mean"], dtype=np.float64),
            "std_dpc": np.asarray(props["intensity_std"], dtype=np.float64),
            "dpc_contrast": np.asarray(contrast, dtype=np.float64),
            "mean_phase_rad": np.asarray(mean_phase, dtype=np.float64),
            "phase_integral_rad_um2": np.asarray(phase_int, dtype=np.float64),
            "focus": np.asarray(focus, dtype=np.float64),
            "touches_border": touches.astype(bool),
            "axis_ratio": axis_ratio,
            "n_neighbours": np.asarray(n_nb, dtype=np.int64),
            "contact_fraction": np.asarray(contact, dtype=np.float64),
            "concavity_depth_um": depth * ps,
            "concavity_rel": np.divide(depth, eq_diam, out=np.zeros(n), where=eq_diam > 0),
            "saturated_fraction": np.asarray(saturated, dtype=np.float64),
            "focus_rel_fov": focus_rel,
        }
    )
    return df.sort_values("cell_id", ignore_index=True)


def fov_focus(dpc: np.ndarray, lap: np.ndarray | None = None) -> float:
    """Variance of the Laplacian of a whole FOV (higher = sharper); ``lap``: its
    :func:`scopeflow.smear.filters.laplace` when the caller already has it."""
    if lap is None:
        from scopeflow.smear.filters import laplace

        lap = laplace(dpc)
    from scopeflow.smear.pairwise import var_f32

    return var_f32(np.asarray(lap, dtype=np.float32))  # np.var's number, no temporaries


def summarize_fov(
    cells: pd.DataFrame, *, sample: str, fov: str, shape: tuple[int, int], pixel_size_um: float,
    focus: float, extra: dict | None = None,
) -> dict:
    """One per-FOV summary row.

    Density counts cells not touching the border plus half of those that do (an unbiased
    estimate for a field cut out of a larger smear), per mm² of imaged area.
    """
    area_mm2 = shape[0] * shape[1] * (pixel_size_um * 1e-3) ** 2
    n = int(len(cells))
    n_border = int(cells["touches_border"].sum()) if n else 0
    interior = cells.loc[~cells["touches_border"]] if n else cells
    row = {
        "sample": sample,
        "fov": fov,
        "height_px": int(shape[0]),
        "width_px": int(shape[1]),
        "pixel_size_um": float(pixel_size_um),
        "area_mm2": area_mm2,
        "n_cells": n,
        "n_cells_border": n_border,
        "density_per_mm2": (n - 0.5 * n_border) / area_mm2 if area_mm2 > 0 else np.nan,
        "median_area_um2": float(interior["area_um2"].median()) if len(interior) else np.nan,
        "median_circularity": float(interior["circularity"].median()) if len(interior) else np.nan,
        "focus": float(focus),
    }
    row.update(extra or {})
    return row


def summarize_sample(
    fovs: pd.DataFrame, cells: pd.DataFrame, *, sample: str, gate: dict | None = None,
    region: str = "",
) -> dict:
    """One per-sample summary row from its FOV and cell tables.

    Median statistics use the cells with ``qc_pass`` when the cell table has that column
    (see :func:`scopeflow.smear.qc.flags.flag_cells`), else the non-border cells. ``gate`` is
    the output of :func:`scopeflow.smear.qc.gates.sample_gate`; without it the QC columns are
    missing values. ``region`` names the region these tables are restricted to ("" = the
    whole sample).
    """
    if "qc_pass" in cells.columns:
        interior = cells.loc[cells["qc_pass"].astype(bool)] if len(cells) else cells
    else:
        interior = cells.loc[~cells["touches_border"]] if len(cells) else cells
    n_fovs = int(len(fovs))
    gate = gate or {}
    return {
        "sample": sample,
        "region": str(region),
        "n_fovs": n_fovs,
        "objective": ";".join(sorted({str(v) for v in fovs.get("objective", pd.Series(dtype=str)).dropna()} - {""})),
        "n_cells": int(len(cells)),
        "cells_per_fov_mean": float(fovs["n_cells"].mean()) if n_fovs else np.nan,
        "cells_per_fov_cv": (
            float(fovs["n_cells"].std(ddof=0) / fovs["n_cells"].mean())
            if n_fovs and fovs["n_cells"].mean() > 0 else np.nan
        ),
        "density_per_mm2": (
            float(fovs["density_per_mm2"].mean()) if n_fovs else np.nan
        ),
        "median_area_um2": float(interior["area_um2"].median()) if len(interior) else np.nan,
        "median_equivalent_diameter_um": (
            float(interior["equivalent_diameter_um"].median()) if len(interior) else np.nan
        ),
        "median_circularity": float(interior["circularity"].median()) if len(interior) else np.nan,
        "median_phase_integral_rad_um2": (
            float(interior["phase_integral_rad_um2"].median()) if len(interior) else np.nan
        ),
        "focus_median": float(fovs["focus"].median()) if n_fovs else np.nan,
        "n_cells_qc_pass": gate.get("n_cells_qc_pass", pd.NA),
        "fraction_qc_pass": gate.get("fraction_qc_pass", np.nan),
        "n_fovs_pass": gate.get("n_fovs_pass", pd.NA),
        "qc_gate": gate.get("qc_gate", pd.NA),
        "qc_gate_reason": gate.get("qc_gate_reason", pd.NA),
    }
