"""Is QC useful? Score the flags against reference masks.

Each predicted cell gets its best IoU with any reference instance; good QC keeps cells
with high IoU and rejects those with low IoU. Used by ``tests/test_qc_real.py`` and
``benchmarks/qc_usefulness.py`` on the Octopi DPC images with reference masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scopeflow.smear import measure
from scopeflow.evaluate import overlap_table, to_instances
from scopeflow.smear.qc.flags import flag_cells
from scopeflow.smear.qc.focus import focus_metrics
from scopeflow.smear.qc.gates import fov_verdicts

__all__ = ["best_iou", "flag_sample", "usefulness"]


def best_iou(pred: np.ndarray, ref, cell_ids: np.ndarray) -> np.ndarray:
    """Best IoU of each predicted cell (``cell_ids`` of ``pred``) with any instance of
    ``ref`` (a label image or binary mask, see :func:`scopeflow.evaluate.to_instances`);
    0 for a cell overlapping no reference instance."""
    table = overlap_table(np.asarray(pred), to_instances(ref))
    best = pd.Series(table["iou"]).groupby(table["pair_pred"]).max()
    return pd.Series(np.asarray(cell_ids)).map(best).fillna(0.0).to_numpy(np.float64)


def flag_sample(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], names: Sequence[str],
    pixel_size_um: float, *, sample: str = "sample", params: Mapping | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure and QC one sample in memory, as the workflow's measure + merge_tables do.

    Parameters
    ----------
    images, labels : sequences of ndarray, shape (y, x)
        DPC images in [0, 1] and their instance labels, one pair per FOV.
    names : sequence of str
        FOV names.
    pixel_size_um : float
        Pixel size (um).

    Returns
    -------
    cells, fovs : pandas.DataFrame
        The flagged cell table and the FOV table with verdicts.
    """
    cell_tables, rows = [], []
    for img, lab, name in zip(images, labels, names, strict=True):
        cells = measure.measure_cells(lab, img, None, pixel_size_um, sample=sample, fov=name)
        cell_tables.append(cells)
        rows.append(measure.summarize_fov(
            cells, sample=sample, fov=name, shape=lab.shape, pixel_size_um=pixel_size_um,
            focus=measure.fov_focus(img), extra=focus_metrics(img)))
    fovs = fov_verdicts(pd.DataFrame(rows), params)
    cells = flag_cells(pd.concat(cell_tables, ignore_index=True), params, fovs=fovs)
    return cells, fovs


def usefulness(iou: np.ndarray, keep: np.ndarray, good_iou: float = 0.8) -> dict[str, float]:
    """How well ``keep`` (QC verdict) separates cells by their best IoU.

    Returns
    -------
    dict
        ``n``, ``n_kept``, ``mean_iou_kept``, ``mean_iou_rejected``, ``delta_mean_iou``
        (kept minus rejected; NaN if either group is empty) and ``good_kept_fraction``
        (fraction of cells with IoU >= ``good_iou`` that are kept).
    """
    iou = np.asarray(iou, np.float64)
    keep = np.asarray(keep, bool)
    good = iou >= good_iou
    kept = float(iou[keep].mean()) if keep.any() else float("nan")
    rej = float(iou[~keep].mean()) if (~keep).any() else float("nan")
    return {
        "n": int(iou.size),
        "n_kept": int(keep.sum()),
        "mean_iou_kept": kept,
        "mean_iou_rejected": rej,
        "delta_mean_iou": kept - rej,
        "good_kept_fraction": float(keep[good].mean()) if good.any() else float("nan"),
    }
