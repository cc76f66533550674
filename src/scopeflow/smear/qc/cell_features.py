"""Per-cell quality-control features computed from one FOV's instance labels: contacts with
other cells, convexity (solidity, concavity depth) and saturated pixels.

All functions take 2-D label images indexed (y, x) with 0 = background and one positive id
per cell, and return one value per id in ``index`` (the order of ``index``). Distances
are in pixels; callers convert to micrometres.

The features are computed by compiled (numba) kernels on the pixels grouped by id
(:func:`scopeflow.smear.cell_kernels.group_labels`), giving the same numbers as the
straightforward skimage/scipy code kept as ``_contacts_reference`` and
``_convexity_reference`` (used when numba cannot be imported, or with
``SCOPEFLOW_NO_NUMBA=1``; the tests compare the two).
"""

from __future__ import annotations

import numpy as np

from scopeflow._numba import HAVE_NUMBA
from scopeflow.smear.cell_kernels import LabelGroups, cell_shapes, group_labels, per_index

__all__ = ["contacts", "convexity", "saturated_fraction"]


def _contacts_grouped(groups: LabelGroups, index: np.ndarray, shapes: dict):
    top = groups.counts.size
    n_nb = np.zeros(top, np.int64)
    pairs = shapes["pairs"]
    if pairs.size:
        pairs = np.unique(pairs[:, 0] * np.int64(top) + pairs[:, 1])
        n_nb += np.bincount(pairs // top, minlength=top)
        n_nb += np.bincount(pairs % top, minlength=top)
    frac = np.zeros(top, np.float64)
    nb_all = np.zeros(top, np.int64)
    nb_all[groups.present] = shapes["n_boundary"]
    nt_all = np.zeros(top, np.int64)
    nt_all[groups.present] = shapes["n_touch"]
    np.divide(nt_all, nb_all, out=frac, where=nb_all > 0)
    return per_index(n_nb, index, 0), per_index(frac, index, 0.0)


def contacts(labels: np.ndarray, index: np.ndarray, gap_px: int = 2,
             *, groups: LabelGroups | None = None, shapes: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour count and shared-boundary fraction of every cell.

    Two cells are in contact when a boundary pixel of one lies within ``gap_px`` pixels
    (Chebyshev distance) of a pixel of the other, so cells that touch directly and cells
    split by a thin background line (as segmentations and reference masks draw touching
    cells) both count.

    Parameters
    ----------
    labels : ndarray of int, shape (y, x)
        Instance labels, 0 = background.
    index : ndarray of int
        Cell ids to report, in the order wanted.
    gap_px : int
        Largest gap (px) between two cells that still counts as contact.
    groups : LabelGroups, optional
        ``group_labels(labels)`` when the caller already has it.
    shapes : dict, optional
        ``cell_shapes(groups, gap_px)`` when the caller already has it (the contacts are
        counted in the same compiled visit of each cell's outline as its perimeter).

    Returns
    -------
    n_neighbours : ndarray of int64
        Distinct other cells in contact with each cell.
    contact_fraction : ndarray of float64
        Fraction of the cell's inner-boundary pixels that are in contact with another cell,
        in [0, 1] (0 = isolated; near 1 = enclosed by a clump). 0 for an id not present.
    """
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    if not HAVE_NUMBA:  # pragma: no cover
        return _contacts_reference(labels, index, gap_px)
    groups = group_labels(labels) if groups is None else groups
    if shapes is None or shapes.get("contact_gap") != max(int(gap_px), 1):
        shapes = cell_shapes(groups, gap_px)
    return _contacts_grouped(groups, index, shapes)


def convexity(labels: np.ndarray, index: np.ndarray, *, groups: LabelGroups | None = None,
              shapes: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Solidity and depth of the deepest concavity of each cell, from one convex hull per cell.

    The depth is the largest distance from a pixel inside the convex hull but outside the
    (hole-filled) cell to the hull's edge. A disc or ellipse gives ~0-1 px; two overlapping
    discs give the depth of the notch where their outlines meet, so the depth (relative to
    the cell diameter) flags doublets and clumps that solidity alone can miss.

    Parameters
    ----------
    labels : ndarray of int, shape (y, x)
        Instance labels, 0 = background.
    index : ndarray of int
        Cell ids to report, in the order wanted.
    groups, shapes : optional
        ``group_labels(labels)`` and ``cell_shapes(groups)`` when the caller already has them.

    Returns
    -------
    solidity : ndarray of float64
        Area / convex hull area (as skimage's ``solidity``); NaN for an id not present.
    depth_px : ndarray of float64
        Concavity depth in pixels; NaN for an id not present.
    """
    index = np.asarray(index, dtype=np.int64)
    if not HAVE_NUMBA:  # pragma: no cover
        return _convexity_reference(labels, index)
    groups = group_labels(labels) if groups is None else groups
    shapes = cell_shapes(groups) if shapes is None else shapes
    top = groups.counts.size
    area = shapes["moments"][:, 0].astype(np.float64)
    sol = np.full(top, np.nan)
    sol[groups.present] = area / np.maximum(shapes["hull_area"].astype(np.float64), 1.0)
    dep = np.full(top, np.nan)
    dep[groups.present] = shapes["depth"]
    return per_index(sol, index, np.nan), per_index(dep, index, np.nan)


def saturated_fraction(
    image: np.ndarray, labels: np.ndarray, index: np.ndarray, low: float = 0.0, high: float = 1.0
) -> np.ndarray:
    """Fraction of each cell's pixels at or beyond the image's value range.

    DPC images are clipped to [0, 1]; a pixel at 0 or 1 lost its phase information (a
    saturated or dark raw pixel, or dirt), as Octopi's ``numSaturatedPixels`` check.

    Returns
    -------
    ndarray of float64
        Fraction in [0, 1] per id of ``index``; 0 for an id not present.
    """
    from scipy import ndimage as ndi

    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return np.zeros(0, np.float64)
    img = np.asarray(image)
    sat = ((img <= low) | (img >= high)).astype(np.float64)
    return np.nan_to_num(np.asarray(ndi.mean(sat, labels, index), dtype=np.float64))


# ------------------------------------------------------------------ reference implementations
# (skimage / scipy; used without numba and by the tests)


def _shift(a: np.ndarray, dy: int, dx: int, fill=0) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]`` with ``fill`` outside the image."""
    out = np.full_like(a, fill)
    h, w = a.shape
    ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
    xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
    out[yd, xd] = a[ys, xs]
    return out


def _contacts_reference(labels: np.ndarray, index: np.ndarray, gap_px: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour count and shared-boundary fraction of every cell.

    Two cells are in contact when a boundary pixel of one lies within ``gap_px`` pixels
    (Chebyshev distance) of a pixel of the other, so cells that touch directly and cells
    split by a thin background line (as segmentations and reference masks draw touching
    cells) both count.

    Parameters
    ----------
    labels : ndarray of int, shape (y, x)
        Instance labels, 0 = background.
    index : ndarray of int
        Cell ids to report, in the order wanted.
    gap_px : int
        Largest gap (px) between two cells that still counts as contact.

    Returns
    -------
    n_neighbours : ndarray of int64
        Distinct other cells in contact with each cell.
    contact_fraction : ndarray of float64
        Fraction of the cell's inner-boundary pixels that are in contact with another cell,
        in [0, 1] (0 = isolated; near 1 = enclosed by a clump). 0 for an id not present.
    """
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    index = np.asarray(index, dtype=np.int64)
    if index.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    lab = labels.astype(np.int64, copy=False)
    boundary = find_boundaries(lab, mode="inner") & (lab > 0)
    touching = np.zeros(lab.shape, bool)
    pairs = []
    r = max(int(gap_px), 1)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy == 0 and dx == 0:
                continue
            other = _shift(lab, dy, dx)
            hit = boundary & (other > 0) & (other != lab)
            if hit.any():
                touching |= hit
                pairs.append(np.stack([lab[hit], other[hit]], axis=1))
    top = int(max(lab.max(), index.max(), 0)) + 1
    n_boundary = np.bincount(lab[boundary], minlength=top)
    n_touch = np.bincount(lab[touching], minlength=top)
    n_nb = np.zeros(top, np.int64)
    if pairs:
        p = np.unique(np.concatenate(pairs), axis=0)
        # contact is symmetric: count each unordered pair for both cells
        both = np.unique(np.concatenate([p, p[:, ::-1]]), axis=0)
        n_nb = np.bincount(both[:, 0], minlength=top).astype(np.int64)
    frac = np.divide(n_touch, n_boundary, out=np.zeros(top, np.float64), where=n_boundary > 0)
    return n_nb[index], frac[index]


def _convexity_reference(labels: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solidity and depth of the deepest concavity of each cell, from one convex hull per cell.

    The depth is the largest distance from a pixel inside the convex hull but outside the
    (hole-filled) cell to the hull's edge. A disc or ellipse gives ~0-1 px; two overlapping
    discs give the depth of the notch where their outlines meet, so the depth (relative to
    the cell diameter) flags doublets and clumps that solidity alone can miss.

    Parameters
    ----------
    labels : ndarray of int, shape (y, x)
        Instance labels, 0 = background.
    index : ndarray of int
        Cell ids to report, in the order wanted.

    Returns
    -------
    solidity : ndarray of float64
        Area / convex hull area (as skimage's ``solidity``); NaN for an id not present.
    depth_px : ndarray of float64
        Concavity depth in pixels; NaN for an id not present.
    """
    from scipy import ndimage as ndi
    from skimage.measure import regionprops

    index = np.asarray(index, dtype=np.int64)
    found = {}
    for region in regionprops(np.asarray(labels).astype(np.int64, copy=False)):
        cell = region.image_filled
        try:
            hull = region.image_convex
        except Exception:  # degenerate (e.g. collinear) pixels: no 2-D hull, no concavity
            found[region.label] = (1.0, 0.0)
            continue
        solidity = float(region.area) / max(float(hull.sum()), 1.0)
        defect = hull & ~cell
        if not defect.any():
            found[region.label] = (solidity, 0.0)
            continue
        inside = ndi.distance_transform_edt(np.pad(hull, 1))[1:-1, 1:-1]
        found[region.label] = (solidity, float(inside[defect].max()))
    out = np.array([found.get(int(i), (np.nan, np.nan)) for i in index], dtype=np.float64).reshape(-1, 2)
    return out[:, 0], out[:, 1]
