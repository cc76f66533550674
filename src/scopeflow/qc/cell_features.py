"""Per-cell quality-control features computed from one FOV's instance labels.

All functions take 2-D label images indexed (y, x) with 0 = background and one positive id
per cell, and return one value per id in ``index`` (the order of ``index``). Distances
are in pixels; callers convert to micrometres.

The features are computed by compiled (numba) kernels that visit each cell's pixels once
(grouped by id with one counting sort of the label image, :func:`group_labels`), giving the
same numbers as the straightforward skimage/scipy code kept as ``_contacts_reference`` and
``_convexity_reference`` (used when numba cannot be imported, or with
``SCOPEFLOW_NO_NUMBA=1``; the tests compare the two). :func:`cell_shapes` also gives the
skimage ``regionprops`` geometry (bbox, area, centroid, perimeter, second moments) that
:func:`scopeflow.measure.measure_cells` needs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from scopeflow._numba import HAVE_NUMBA, njit


__all__ = ["contacts", "convexity", "saturated_fraction", "group_labels", "cell_shapes"]


# ------------------------------------------------------------------ grouping pixels by label


class LabelGroups(NamedTuple):
    """A label image's pixels grouped by id (see :func:`group_labels`)."""

    lab: np.ndarray  #: (y, x) intp labels, negative ids set to 0 (background)
    flat: np.ndarray  #: ``lab.ravel()``
    counts: np.ndarray  #: ``np.bincount(flat)`` (pixels per id, index 0 = background)
    present: np.ndarray  #: sorted ids > 0 with at least one pixel
    starts: np.ndarray  #: pixels of id ``l`` are ``order[starts[l]:starts[l + 1]]``
    order: np.ndarray  #: flat indices of the labelled pixels, by id, raster order within an id


@njit(cache=True, nogil=True)
def _group_order(flat, starts):  # pragma: no cover - compiled
    pos = starts[:-1].copy()
    order = np.empty(starts[-1], np.int64)
    for i in range(flat.size):
        lv = flat[i]
        if lv > 0:
            order[pos[lv]] = i
            pos[lv] += 1
    return order


def group_labels(labels: np.ndarray) -> LabelGroups:
    """Group the pixels of a 2-D label image by id with one counting sort (O(pixels))."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"expected a 2-D (y, x) label image, got shape {lab.shape}")
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {lab.dtype}")
    lab = np.ascontiguousarray(lab, dtype=np.intp)
    if lab.size and lab.min() < 0:  # negative ids are ignored (background), as in regionprops
        lab = np.where(lab < 0, 0, lab)
    flat = lab.ravel()
    counts = np.bincount(flat, minlength=1) if flat.size else np.zeros(1, np.intp)
    fg = counts.copy()
    fg[0] = 0
    starts = np.zeros(fg.size + 1, np.int64)
    np.cumsum(fg, out=starts[1:])
    present = np.flatnonzero(fg)
    order = _group_order(flat, starts) if HAVE_NUMBA else np.argsort(
        np.where(flat > 0, flat, 0), kind="stable")[flat.size - starts[-1]:]
    return LabelGroups(lab, flat, counts, present, starts, order)


# ------------------------------------------------------------------ compiled kernels

_PERIMETER_WEIGHTS = np.zeros(50, np.float64)  # skimage.measure.perimeter, 4-neighbourhood
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


@njit(cache=True, nogil=True, inline="always")
def _is_border4(lab, h, w, r, c, lv):  # pragma: no cover - compiled
    # a pixel of id lv with a 4-neighbour of another id or outside the image
    if r == 0 or c == 0 or r == h - 1 or c == w - 1:
        return True
    return lab[r - 1, c] != lv or lab[r + 1, c] != lv or lab[r, c - 1] != lv or lab[r, c + 1] != lv


@njit(cache=True, nogil=True)
def _cross(oy, ox, ay, ax, by, bx):  # pragma: no cover - compiled
    return (ay - oy) * (bx - ox) - (ax - ox) * (by - oy)


@njit(cache=True, nogil=True)
def _cell_shapes(lab, present, starts, order, weights):  # pragma: no cover - compiled
    """Per id of ``present``: bbox, raw moments about the bbox corner, skimage perimeter,
    convex hull area (skimage ``convex_hull_image``) and concavity depth."""
    h, w = lab.shape
    n = present.size
    bbox = np.zeros((n, 4), np.int64)
    mom = np.zeros((n, 6), np.int64)  # m00, m10 (y), m01 (x), m20, m02, m11 (bbox-local)
    perim = np.zeros(n, np.float64)
    hull_area = np.zeros(n, np.int64)
    depth = np.zeros(n, np.float64)
    hist = np.zeros(50, np.int64)
    for k in range(n):
        lv = present[k]
        s = starts[lv]
        e = starts[lv + 1]
        r0 = order[s] // w
        r1 = order[e - 1] // w
        c0 = w
        c1 = -1
        for i in range(s, e):
            c = order[i] % w
            if c < c0:
                c0 = c
            if c > c1:
                c1 = c
        hh = r1 - r0 + 1
        ww = c1 - c0 + 1
        bbox[k, 0] = r0
        bbox[k, 1] = c0
        bbox[k, 2] = r1 + 1
        bbox[k, 3] = c1 + 1
        # raw moments (exact integers) and per-row extremes
        left = np.full(hh, ww, np.int64)
        right = np.full(hh, -1, np.int64)
        m1y = 0
        m1x = 0
        m2y = 0
        m2x = 0
        mxy = 0
        for i in range(s, e):
            p = order[i]
            yy = p // w - r0
            xx = p % w - c0
            m1y += yy
            m1x += xx
            m2y += yy * yy
            m2x += xx * xx
            mxy += yy * xx
            if xx < left[yy]:
                left[yy] = xx
            if xx > right[yy]:
                right[yy] = xx
        mom[k, 0] = e - s
        mom[k, 1] = m1y
        mom[k, 2] = m1x
        mom[k, 3] = m2y
        mom[k, 4] = m2x
        mom[k, 5] = mxy
        # perimeter: skimage.measure.perimeter(image, 4) of the cell's bbox crop
        hist[:] = 0
        for i in range(s, e):
            p = order[i]
            r = p // w
            c = p % w
            if not _is_border4(lab, h, w, r, c, lv):
                continue
            code = 1
            for dy in range(-1, 2):
                rr = r + dy
                if rr < 0 or rr >= h:
                    continue
                for dx in range(-1, 2):
                    if dy == 0 and dx == 0:
                        continue
                    cc = c + dx
                    if cc < 0 or cc >= w or lab[rr, cc] != lv:
                        continue
                    if _is_border4(lab, h, w, rr, cc, lv):
                        code += 10 if (dy != 0 and dx != 0) else 2
            hist[code] += 1
        tot = 0.0
        for j in range(50):
            tot += hist[j] * weights[j]
        perim[k] = tot
        # convex hull of the pixels' edge midpoints (as skimage.morphology.convex_hull_image),
        # in doubled bbox-local coordinates (exact integers): per-row extreme pixels suffice
        npt = 0
        py = np.empty(6 * hh, np.int64)
        px = np.empty(6 * hh, np.int64)
        for yy in range(hh):
            if right[yy] < 0:
                continue
            y2 = 2 * yy
            lft = 2 * left[yy]
            rgt = 2 * right[yy]
            py[npt] = y2 - 1; px[npt] = lft; npt += 1  # noqa: E702
            py[npt] = y2 + 1; px[npt] = lft; npt += 1  # noqa: E702
            py[npt] = y2; px[npt] = lft - 1; npt += 1  # noqa: E702
            py[npt] = y2 - 1; px[npt] = rgt; npt += 1  # noqa: E702
            py[npt] = y2 + 1; px[npt] = rgt; npt += 1  # noqa: E702
            py[npt] = y2; px[npt] = rgt + 1; npt += 1  # noqa: E702
        stride = 2 * ww + 4
        key = np.empty(npt, np.int64)
        for i in range(npt):
            key[i] = (py[i] + 1) * stride + (px[i] + 1)
        srt = np.argsort(key)
        sy = np.empty(npt, np.int64)
        sx = np.empty(npt, np.int64)
        m = 0
        last = -1
        for i in range(npt):
            j = srt[i]
            if key[j] == last:
                continue
            last = key[j]
            sy[m] = py[j]
            sx[m] = px[j]
            m += 1
        # Andrew's monotone chain, counter-clockwise, collinear points dropped
        hy = np.empty(2 * m + 1, np.int64)
        hx = np.empty(2 * m + 1, np.int64)
        t = 0
        for i in range(m):
            while t >= 2 and _cross(hy[t - 2], hx[t - 2], hy[t - 1], hx[t - 1], sy[i], sx[i]) <= 0:
                t -= 1
            hy[t] = sy[i]
            hx[t] = sx[i]
            t += 1
        lower = t + 1
        for i in range(m - 2, -1, -1):
            while t >= lower and _cross(hy[t - 2], hx[t - 2], hy[t - 1], hx[t - 1], sy[i], sx[i]) <= 0:
                t -= 1
            hy[t] = sy[i]
            hx[t] = sx[i]
            t += 1
        nv = t - 1  # last point repeats the first
        # rasterise: grid point (yy, xx) is in the hull iff it is on the inner side of (or on)
        # every edge; per row an interval [lo, hi] of columns
        lo = np.zeros(hh, np.int64)
        hi = np.full(hh, ww - 1, np.int64)
        area = 0
        for yy in range(hh):
            qy = 2 * yy
            a = 0
            b = ww - 1
            for i in range(nv):
                ay = hy[i]
                ax = hx[i]
                dy = hy[i + 1] - ay
                dx = hx[i + 1] - ax
                # cross = dy * (qx - ax) - dx * (qy - ay) >= 0 with qx = 2 * xx
                tt = dy * ax + dx * (qy - ay)
                if dy > 0:
                    v = -((-tt) // (2 * dy))  # ceil
                    if v > a:
                        a = v
                elif dy < 0:
                    v = (-tt) // (-2 * dy)  # floor
                    if v < b:
                        b = v
                elif tt > 0:
                    b = -1
            lo[yy] = a
            hi[yy] = b
            if b >= a:
                area += b - a + 1
        hull_area[k] = area
        # concavity: hull pixels outside the hole-filled cell (8-connected background
        # reaching the bbox edge), deepest distance to a pixel outside the hull
        state = np.zeros((hh, ww), np.uint8)  # 1 = cell, 2 = outside background
        for i in range(s, e):
            p = order[i]
            state[p // w - r0, p % w - c0] = 1
        stack = np.empty(hh * ww, np.int64)
        ns = 0
        for yy in range(hh):
            for xx in range(ww):
                if (yy == 0 or xx == 0 or yy == hh - 1 or xx == ww - 1) and state[yy, xx] == 0:
                    state[yy, xx] = 2
                    stack[ns] = yy * ww + xx
                    ns += 1
        while ns > 0:
            ns -= 1
            q = stack[ns]
            qy = q // ww
            qx = q % ww
            for dy in range(-1, 2):
                ry = qy + dy
                if ry < 0 or ry >= hh:
                    continue
                for dx in range(-1, 2):
                    rx = qx + dx
                    if rx < 0 or rx >= ww or state[ry, rx] != 0:
                        continue
                    state[ry, rx] = 2
                    stack[ns] = ry * ww + rx
                    ns += 1
        best_all = 0
        for yy in range(hh):
            for xx in range(lo[yy], hi[yy] + 1):
                if state[yy, xx] != 2:
                    continue
                best = 1 << 62
                rad = 1
                while rad * rad < best:
                    for dy in range(-rad, rad + 1):
                        ry = yy + dy
                        full = dy == -rad or dy == rad
                        step = 1 if full else 2 * rad
                        for dx in range(-rad, rad + 1, step):
                            rx = xx + dx
                            if ry < 0 or ry >= hh or rx < lo[ry] or rx > hi[ry]:
                                d2 = dy * dy + dx * dx
                                if d2 < best:
                                    best = d2
                    rad += 1
                if best > best_all:
                    best_all = best
        depth[k] = math.sqrt(best_all)
    return bbox, mom, perim, hull_area, depth


@njit(cache=True, nogil=True)
def _contact_kernel(lab, present, starts, order, r):  # pragma: no cover - compiled
    h, w = lab.shape
    n = present.size
    n_boundary = np.zeros(n, np.int64)
    n_touch = np.zeros(n, np.int64)
    cap = 1024
    pa = np.empty(cap, np.int64)
    pb = np.empty(cap, np.int64)
    npair = 0
    local = np.empty(64, np.int64)
    for k in range(n):
        lv = present[k]
        nloc = 0
        for i in range(starts[lv], starts[lv + 1]):
            p = order[i]
            y = p // w
            x = p % w
            # inner boundary (find_boundaries, connectivity 1): a 4-neighbour in the image
            # with another id
            if not ((y > 0 and lab[y - 1, x] != lv) or (y < h - 1 and lab[y + 1, x] != lv)
                    or (x > 0 and lab[y, x - 1] != lv) or (x < w - 1 and lab[y, x + 1] != lv)):
                continue
            n_boundary[k] += 1
            hit = False
            for yy in range(max(y - r, 0), min(y + r + 1, h)):
                for xx in range(max(x - r, 0), min(x + r + 1, w)):
                    o = lab[yy, xx]
                    if o <= 0 or o == lv:
                        continue
                    hit = True
                    seen = False
                    for j in range(nloc):
                        if local[j] == o:
                            seen = True
                            break
                    if not seen:
                        if nloc == local.size:
                            bigger = np.empty(2 * local.size, np.int64)
                            bigger[:nloc] = local[:nloc]
                            local = bigger
                        local[nloc] = o
                        nloc += 1
            if hit:
                n_touch[k] += 1
        for j in range(nloc):
            if npair == cap:
                cap *= 2
                na = np.empty(cap, np.int64)
                nb = np.empty(cap, np.int64)
                na[:npair] = pa[:npair]
                nb[:npair] = pb[:npair]
                pa = na
                pb = nb
            pa[npair] = min(lv, local[j])
            pb[npair] = max(lv, local[j])
            npair += 1
    return n_boundary, n_touch, pa[:npair], pb[:npair]


@njit(cache=True, nogil=True)
def _label_sums(values, present, starts, order):  # pragma: no cover - compiled
    # per id, the float64 sum of its pixels' values in raster order from 0.0: the additions
    # np.bincount(labels, weights=values) makes (so the same sums, bit for bit)
    flat = values.ravel()
    out = np.zeros(present.size, np.float64)
    for k in range(present.size):
        lv = present[k]
        acc = 0.0
        for i in range(starts[lv], starts[lv + 1]):
            acc += np.float64(flat[order[i]])
        out[k] = acc
    return out


@njit(cache=True, nogil=True)
def _intensity_sums(dpc, lap, phase, has_phase, present, starts, order):  # pragma: no cover - compiled
    # per id, in one visit of its pixels, the float64 sums in raster order from 0.0 (the
    # additions of _label_sums / np.bincount, bit for bit) of |dpc - 0.5|, lap, lap * lap
    # (float32 products), the saturated pixels (dpc <= 0 or >= 1) and phase
    fd = dpc.ravel()
    fl = lap.ravel()
    fp = phase.ravel()
    half = np.float32(0.5)
    out = np.zeros((present.size, 5), np.float64)
    for k in range(present.size):
        lv = present[k]
        s_c = 0.0
        s_l = 0.0
        s_l2 = 0.0
        s_sat = 0.0
        s_p = 0.0
        for i in range(starts[lv], starts[lv + 1]):
            p = order[i]
            d = fd[p]
            s_c += np.float64(abs(d - half))
            v = fl[p]
            s_l += np.float64(v)
            s_l2 += np.float64(v * v)
            if d <= 0.0 or d >= 1.0:
                s_sat += 1.0
            if has_phase:
                s_p += np.float64(fp[p])
        out[k, 0] = s_c
        out[k, 1] = s_l
        out[k, 2] = s_l2
        out[k, 3] = s_sat
        out[k, 4] = s_p
    return out


# ------------------------------------------------------------------ public API


def _per_index(values_by_label: np.ndarray, index: np.ndarray, missing) -> np.ndarray:
    """``values_by_label[index]`` with ``missing`` for ids outside the table."""
    out = np.full(index.shape, missing, dtype=values_by_label.dtype)
    ok = (index >= 0) & (index < values_by_label.size)
    out[ok] = values_by_label[index[ok]]
    return out


def cell_shapes(groups: LabelGroups) -> dict[str, np.ndarray]:
    """skimage ``regionprops`` geometry of every id of ``groups.present`` (compiled kernel).

    Returns a dict of arrays in the order of ``groups.present``: ``bbox`` (n, 4) as
    regionprops (min row, min col, max row + 1, max col + 1), ``moments`` (n, 6) int64 raw
    moments m00, m10, m01, m20, m02, m11 about the bbox's first pixel (row = first axis),
    ``perimeter`` (``skimage.measure.perimeter(image, 4)``), ``hull_area`` (pixels of
    ``convex_hull_image``) and ``depth`` (concavity depth, px; see :func:`convexity`).
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("cell_shapes needs numba")
    bbox, mom, perim, hull_area, depth = _cell_shapes(
        groups.lab, groups.present, groups.starts, groups.order, _PERIMETER_WEIGHTS)
    return {"bbox": bbox, "moments": mom, "perimeter": perim, "hull_area": hull_area,
            "depth": depth}


def _contacts_grouped(groups: LabelGroups, index: np.ndarray, gap_px: int):
    r = max(int(gap_px), 1)
    n_boundary, n_touch, pa, pb = _contact_kernel(
        groups.lab, groups.present, groups.starts, groups.order, r)
    top = groups.counts.size
    n_nb = np.zeros(top, np.int64)
    if pa.size:
        pairs = np.unique(pa * np.int64(top) + pb)
        n_nb += np.bincount(pairs // top, minlength=top)
        n_nb += np.bincount(pairs % top, minlength=top)
    frac = np.zeros(top, np.float64)
    nb_all = np.zeros(top, np.int64)
    nb_all[groups.present] = n_boundary
    nt_all = np.zeros(top, np.int64)
    nt_all[groups.present] = n_touch
    np.divide(nt_all, nb_all, out=frac, where=nb_all > 0)
    return _per_index(n_nb, index, 0), _per_index(frac, index, 0.0)


def contacts(labels: np.ndarray, index: np.ndarray, gap_px: int = 2,
             *, groups: LabelGroups | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    return _contacts_grouped(groups, index, gap_px)


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
    return _per_index(sol, index, np.nan), _per_index(dep, index, np.nan)


def label_sum(values: np.ndarray, groups: LabelGroups, index: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.sum_labels(values, labels, index)`` (the same sums) from precomputed
    groups; 0 for an id not present."""
    values = np.ascontiguousarray(values)
    if values.shape != groups.lab.shape:
        raise ValueError(f"values of shape {values.shape} for labels of shape {groups.lab.shape}")
    if HAVE_NUMBA:
        sums = np.zeros(groups.counts.size, np.float64)
        sums[groups.present] = _label_sums(values, groups.present, groups.starts, groups.order)
    else:  # pragma: no cover
        sums = np.bincount(groups.flat, weights=values.ravel(), minlength=groups.counts.size)
    return _per_index(sums, np.asarray(index, dtype=np.int64), 0.0)


def intensity_sums(groups: LabelGroups, dpc: np.ndarray, lap: np.ndarray,
                   phase: np.ndarray | None) -> np.ndarray:
    """Per-cell sums for the intensity columns, in one compiled pass over the grouped pixels.

    Parameters
    ----------
    groups : LabelGroups
        :func:`group_labels` of the label image.
    dpc, lap : numpy.ndarray
        float32 (y, x) DPC and its Laplacian.
    phase : numpy.ndarray or None
        float32 (y, x) phase (rad), or None (its column is 0).

    Returns
    -------
    numpy.ndarray
        float64 (n, 5) in the order of ``groups.present``: sums of ``|dpc − 0.5|``,
        ``lap``, ``lap²``, saturated pixels (``dpc <= 0`` or ``>= 1``) and ``phase``; the
        same numbers as :func:`label_sum` of each image (float32 products rounded first).
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("intensity_sums needs numba")
    d = np.ascontiguousarray(dpc, dtype=np.float32)
    lp = np.ascontiguousarray(lap, dtype=np.float32)
    for name, a in (("dpc", d), ("laplacian", lp)):
        if a.shape != groups.lab.shape:
            raise ValueError(f"{name} of shape {a.shape} for labels of shape {groups.lab.shape}")
    has_phase = phase is not None
    ph = np.ascontiguousarray(phase, dtype=np.float32) if has_phase else np.zeros((1, 1), np.float32)
    if has_phase and ph.shape != groups.lab.shape:
        raise ValueError(f"phase of shape {ph.shape} for labels of shape {groups.lab.shape}")
    return _intensity_sums(d, lp, ph, has_phase, groups.present, groups.starts, groups.order)


def label_mean(values: np.ndarray, groups: LabelGroups, index: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.mean(values, labels, index)`` (the same numbers) from precomputed groups."""
    index = np.asarray(index, dtype=np.int64)
    return label_sum(values, groups, index) / _per_index(groups.counts, index, 0).astype(np.float64)


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
