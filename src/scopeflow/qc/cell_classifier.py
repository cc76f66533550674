"""Learned per-cell quality: is a segmented red blood cell a good, analysable cell?

A small ConvNet looks at a fixed-size window centred on each cell's centroid with two
channels:

0. the DPC image, **z-scored within the crop** (mean 0, std 1 over the crop pixels that lie
   inside the image; pixels outside the image are 0 after z-scoring), and
1. the cell's own mask (1 inside the cell, 0 elsewhere, 0 outside the image).

It returns the probability that the cell is *good*: in focus, not overlapping another cell,
and with a contour that matches the real cell (not merged with a neighbour, not split, not
much too small or too large). The shipped model ``models/rbc_quality.pt`` and how it was
trained and validated are described in its model card ``models/rbc_quality.md``; the
training code is :mod:`scopeflow.qc.train_quality`.

The network is :class:`scopeflow.models.quality.QualityNet`; its weights are a
``torch.save``'d dict ``{"state_dict": ..., "meta": {...}}`` read with
``torch.load(weights_only=True)`` after checking their sha256 against the model card
(:func:`scopeflow.models.weights.load_network`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scopeflow.models.quality import QualityNet
from scopeflow.models.weights import MODELS_DIR, cached_network

__all__ = [
    "CROP_PX",
    "DEFAULT_WEIGHTS",
    "cell_centroids",
    "cell_crops",
    "load_quality_model",
    "predict_crops",
    "predict_good",
]

#: The shipped model (see its model card ``rbc_quality.md``).
DEFAULT_WEIGHTS = MODELS_DIR / "rbc_quality.pt"

#: Edge of the square crop (pixels at ~0.33 µm/px: 16 µm, ≈1.8 median RBC diameters).
CROP_PX = 48

_STD_FLOOR = 1e-3  # DPC units; a constant crop z-scores to 0 instead of dividing by 0


def cell_centroids(labels: np.ndarray, cell_ids: np.ndarray) -> np.ndarray:
    """Centroids (y, x) in pixels of the listed cells; NaN for ids absent from ``labels``.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer instance labels (y, x), 0 = background.
    cell_ids : numpy.ndarray
        Ids to look up, any order.

    Returns
    -------
    numpy.ndarray
        float64 (N, 2) centroids (origin at the centre of pixel (0, 0)).
    """
    lab = np.asarray(labels)
    ids = np.asarray(cell_ids).astype(np.int64).ravel()
    out = np.full((ids.size, 2), np.nan)
    if ids.size == 0:
        return out
    yy, xx = np.nonzero(lab > 0)
    if yy.size == 0:
        return out
    vals = lab[yy, xx].astype(np.int64)
    uniq, inv = np.unique(vals, return_inverse=True)
    n = np.bincount(inv, minlength=uniq.size).astype(np.float64)
    cy = np.bincount(inv, weights=yy, minlength=uniq.size) / n
    cx = np.bincount(inv, weights=xx, minlength=uniq.size) / n
    pos = np.searchsorted(uniq, ids)
    pos_c = np.clip(pos, 0, uniq.size - 1)
    found = uniq[pos_c] == ids
    out[found, 0] = cy[pos_c[found]]
    out[found, 1] = cx[pos_c[found]]
    return out


def cell_crops(
    dpc: np.ndarray,
    labels: np.ndarray,
    cell_ids: np.ndarray,
    size: int = CROP_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-channel crops centred on each cell: z-scored DPC and the cell's own mask.

    Parameters
    ----------
    dpc : numpy.ndarray
        DPC image (y, x), float in [0, 1] (any real scale works: it is z-scored per crop).
        Non-finite pixels count as missing, like pixels outside the image.
    labels : numpy.ndarray
        Integer instance labels, same shape, 0 = background.
    cell_ids : numpy.ndarray
        Cell ids, one crop each, in this order.
    size : int
        Crop edge in pixels.

    Returns
    -------
    crops : numpy.ndarray
        float32 (N, 2, size, size). Channel 0: DPC minus the crop mean, divided by the crop
        std (floored at 1e-3), over pixels inside the image; pixels outside the image are 0.
        Channel 1: 1 on the cell's pixels, else 0. The crop's centre pixel is the rounded
        centroid.
    found : numpy.ndarray
        bool (N,): False for ids that have no pixel in ``labels`` (their crops are all 0).
    """
    img = np.asarray(dpc, dtype=np.float32)
    lab = np.asarray(labels)
    if img.ndim != 2 or img.shape != lab.shape:
        raise ValueError(
            f"dpc and labels must be 2-D of equal shape, got {img.shape} and {lab.shape}"
        )
    ids = np.asarray(cell_ids).astype(np.int64).ravel()
    size = int(size)
    crops = np.zeros((ids.size, 2, size, size), np.float32)
    cent = cell_centroids(lab, ids)
    found = np.isfinite(cent[:, 0])
    if ids.size == 0 or not found.any():
        return crops, found
    half = size // 2
    ny, nx = img.shape
    for k in np.flatnonzero(found):
        y0 = int(np.rint(cent[k, 0])) - half
        x0 = int(np.rint(cent[k, 1])) - half
        ys, ye = max(y0, 0), min(y0 + size, ny)
        xs, xe = max(x0, 0), min(x0 + size, nx)
        win = img[ys:ye, xs:xe]
        valid = np.isfinite(win)
        if valid.any():
            v = win[valid].astype(np.float64)
            mu = v.mean()
            sd = max(v.std(), _STD_FLOOR)
            z = np.where(valid, (win - mu) / sd, 0.0)
        else:
            z = np.zeros(win.shape)
        crops[k, 0, ys - y0 : ye - y0, xs - x0 : xe - x0] = z
        crops[k, 1, ys - y0 : ye - y0, xs - x0 : xe - x0] = lab[ys:ye, xs:xe] == ids[k]
    return crops, found


def load_quality_model(weights: str | Path | None = None) -> tuple[QualityNet, dict]:
    """Load (and cache) the cell-quality network after checking its sha256.

    Parameters
    ----------
    weights : str, Path or None
        ``.pt`` file with a model card (same name, ``.md``, with a ``sha256:`` line)
        beside it; None = the shipped :data:`DEFAULT_WEIGHTS`.

    Returns
    -------
    (QualityNet, dict)
        The network in eval mode and the metadata stored with the weights (``crop``,
        ``in_channels``, ``widths``, training recipe, held-back metrics).

    Raises
    ------
    scopeflow.models.weights.WeightsError
        Missing file or card, sha256 mismatch, or not an rbc_quality model.
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    return cached_network(path, "rbc_quality", QualityNet.from_meta)


def predict_good(
    dpc: np.ndarray,
    labels: np.ndarray,
    cell_ids: np.ndarray,
    *,
    weights: str | Path | None = None,
) -> np.ndarray:
    """Probability that each listed cell is a good cell (in focus, correct contour).

    Parameters
    ----------
    dpc : numpy.ndarray
        DPC image (y, x), float in [0, 1] (Octopi ``0.5 + (L − R)/(L + R)``; an 8-bit image
        works too since crops are z-scored), ~0.33 µm/px, DPC relief along x.
    labels : numpy.ndarray
        Integer instance labels of the same shape (0 = background), e.g. from
        :func:`scopeflow.segment.chunked.segment_image`.
    cell_ids : numpy.ndarray
        Ids of the cells to score.
    weights : str, Path or None
        Weights file (sha256-checked against its model card); None = shipped model.

    Returns
    -------
    numpy.ndarray
        float64 (N,) probabilities in [0, 1], in the order of ``cell_ids``; NaN for ids
        with no pixel in ``labels``. Empty ``cell_ids`` gives an empty array. Cells near
        the border are scored on crops padded with zeros (outside the image).
    """
    ids = np.asarray(cell_ids).ravel()
    if ids.size == 0:
        return np.zeros(0, np.float64)
    _, meta = load_quality_model(weights)
    crops, found = cell_crops(dpc, labels, ids, size=int(meta["crop"]))
    out = np.full(ids.size, np.nan)
    out[found] = predict_crops(crops[found], weights=weights)
    return out


def predict_crops(crops: np.ndarray, *, weights: str | Path | None = None) -> np.ndarray:
    """Probability of *good* for crops made by :func:`cell_crops`.

    Parameters
    ----------
    crops : numpy.ndarray
        (N, 2, crop, crop) crops (float16/float32), crop size as in the model metadata.
    weights : str, Path or None
        Weights file; None = shipped model.

    Returns
    -------
    numpy.ndarray
        float64 (N,) probabilities.
    """
    net, meta = load_quality_model(weights)
    x = np.asarray(crops, dtype=np.float32)
    want = (int(meta["in_channels"]), int(meta["crop"]), int(meta["crop"]))
    if x.ndim != 4 or x.shape[1:] != want:
        raise ValueError(f"crops must have shape (N, {meta['in_channels']}, {meta['crop']}, "
                         f"{meta['crop']}), got {x.shape}")
    out = np.empty(len(x), np.float64)
    with torch.inference_mode():
        for s in range(0, len(x), 512):
            logits = net(torch.from_numpy(np.ascontiguousarray(x[s : s + 512])))
            out[s : s + 512] = torch.sigmoid(logits).double().numpy()
    return out
