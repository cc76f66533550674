"""Per-cell kernels on one FOV's instance labels: pixels grouped by id, the skimage
``regionprops`` geometry and the per-cell intensity sums that :mod:`scopeflow.smear.measure`
needs, each in one compiled (numba) pass over a cell's pixels.

All functions take 2-D label images indexed (y, x) with 0 = background and one positive id
per cell, and return one value per id in ``index`` (the order of ``index``) or per id of
``groups.present``. Distances are in pixels; callers convert to micrometres. The pixels are
grouped by id with one counting sort of the label image (:func:`group_labels`); the numbers
are those of skimage/scipy (the tests compare them).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from scopeflow._numba import HAVE_NUMBA, njit
from scopeflow.smear.pairwise import pairwise_f32

__all__ = ["LabelGroups", "cell_shapes", "group_labels", "intensity_sums", "label_mean",
           "label_sum", "per_index"]


# ------------------------------------------------------------------ grouping pixels by label


class LabelGroups(NamedTuple):
    """A label image's pixels grouped by id (see :func:`group_labels`)."""

    lab: np.ndarray  #: (y, x) C-contiguous labels: unsigned as given, else intp with negative ids set to 0
    flat: np.ndarray  #: ``lab.ravel()``
    counts: np.ndarray  #: ``np.bincount(flat)`` (pixels per id, index 0 = background)
    present: np.ndarray  #: sorted ids > 0 with at least one pixel
    starts: np.ndarray  #: pixels of id ``l`` are ``order[starts[l]:starts[l + 1]]``
    order: np.ndarray  #: flat indices of the labelled pixels, by id, raster order within an id


@njit(cache=True, nogil=True)
def _count_labels(flat, top):  # pragma: no cover - compiled
    counts = np.zeros(top, np.int64)
    for i in range(flat.size):
        counts[flat[i]] += 1
    return counts


@njit(cache=True, nogil=True)
def _group_order(flat, starts, order):  # pragma: no cover - compiled
    pos = starts[:-1].copy()
    for i in range(flat.size):
        lv = flat[i]
        if lv > 0:
            order[pos[lv]] = i
            pos[lv] += 1
    return order


def group_labels(labels: np.ndarray) -> LabelGroups:
    """Group the pixels of a 2-D label image by id with one counting sort (O(pixels)).

    Unsigned labels (what the stores hold) are used as they are, without an intp copy;
    ``order`` is int32 for images under 2³¹ pixels.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"expected a 2-D (y, x) label image, got shape {lab.shape}")
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {lab.dtype}")
    if HAVE_NUMBA and lab.dtype.kind == "u" and lab.size:
        lab = np.ascontiguousarray(lab)
        flat = lab.ravel()
        counts = _count_labels(flat, int(flat.max()) + 1)  # np.bincount's counts, no intp copy
    else:
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
    if HAVE_NUMBA:
        order = np.empty(starts[-1], np.int32 if flat.size < 2**31 else np.int64)
        _group_order(flat, starts, order)
    else:  # pragma: no cover
        order = np.argsort(np.where(flat > 0, flat, 0), kind="stable")[flat.size - starts[-1]:]
    return LabelGroups(lab, flat, counts, present, starts, order)


# ------------------------------------------------------------------ compiled kernels

_PERIMETER_WEIGHTS = np.zeros(50, np.float64)  # skimage.measure.perimeter, 4-neighbourhood
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


@njit(cache=True, nogil=True)
def _cross(oy, ox, ay, ax, by, bx):  # pragma: no cover - compiled
    return (ay - oy) * (bx - ox) - (ax - ox) * (by - oy)


@njit(cache=True, nogil=True)
def _cell_shapes(lab, present, starts, order, weights, gap):  # pragma: no cover - compiled
    """Per id of ``present``: bbox, raw moments about the bbox corner, skimage perimeter,
    convex hull area (skimage ``convex_hull_image``), concavity depth and, with ``gap`` > 0,
    the contact counts of :func:`scopeflow.smear.qc.cell_features.contacts` (inner-boundary
    pixels, those with another cell within ``gap`` px, and the (smaller, larger) id pairs)."""
    h, w = lab.shape
    n = present.size
    n_boundary = np.zeros(n, np.int64)
    n_touch = np.zeros(n, np.int64)
    cap = 1024
    pa = np.empty(cap, np.int64)
    pb = np.empty(cap, np.int64)
    npair = 0
    local = np.empty(64, np.int64)
    bbox = np.zeros((n, 4), np.int64)
    mom = np.zeros((n, 6), np.int64)  # m00, m10 (y), m01 (x), m20, m02, m11 (bbox-local)
    perim = np.zeros(n, np.float64)
    hull_area = np.zeros(n, np.int64)
    depth = np.zeros(n, np.float64)
    hist = np.zeros(50, np.int64)
    big = 1
    for k in range(n):
        big = max(big, starts[present[k] + 1] - starts[present[k]])
    ys = np.empty(big, np.int64)  # a cell's pixels' image rows and columns
    xs = np.empty(big, np.int64)
    qs = np.empty(big, np.int64)  # its border pixels (indices into ys, xs)
    # per-row work arrays, for the tallest bbox, and the mask's storage (grown when needed)
    tall = 1
    for k in range(n):
        tall = max(tall, order[starts[present[k] + 1] - 1] // w - order[starts[present[k]]] // w + 1)
    left = np.empty(tall, np.int64)
    right = np.empty(tall, np.int64)
    lo = np.empty(tall, np.int64)
    hi = np.empty(tall, np.int64)
    sy = np.empty(4 * tall + 4, np.int64)
    sx = np.empty(4 * tall + 4, np.int64)
    hy = np.empty(8 * tall + 9, np.int64)
    hx = np.empty(8 * tall + 9, np.int64)
    store = np.empty(4096, np.uint8)
    for k in range(n):
        lv = present[k]
        s = starts[lv]
        e = starts[lv + 1]
        npx = e - s
        # rows and columns without a division per pixel: the pixels come in raster order
        r = order[s] // w
        base = r * w
        c0 = w
        c1 = -1
        for i in range(npx):
            p = order[s + i]
            while p - base >= w:
                base += w
                r += 1
            c = p - base
            ys[i] = r
            xs[i] = c
            if c < c0:
                c0 = c
            if c > c1:
                c1 = c
        r0 = ys[0]
        r1 = ys[npx - 1]
        hh = r1 - r0 + 1
        ww = c1 - c0 + 1
        bbox[k, 0] = r0
        bbox[k, 1] = c0
        bbox[k, 2] = r1 + 1
        bbox[k, 3] = c1 + 1
        # the cell in its bbox with a 1-px frame (1 = cell), bbox-local coordinates, raw
        # moments (exact integers) and per-row extremes
        if (hh + 2) * (ww + 2) > store.size:
            store = np.empty(2 * (hh + 2) * (ww + 2), np.uint8)
        wm = ww + 2  # the mask's row stride: fm[(yy + 1) * wm + xx + 1] is mask[yy + 1, xx + 1]
        fm = store[: (hh + 2) * wm]
        fm[:] = 0
        mask = fm.reshape((hh + 2, wm))
        left[:hh] = ww
        right[:hh] = -1
        m1y = 0
        m1x = 0
        m2y = 0
        m2x = 0
        mxy = 0
        for i in range(npx):
            yy = ys[i] - r0
            xx = xs[i] - c0
            ys[i] = yy
            xs[i] = xx
            fm[(yy + 1) * wm + xx + 1] = 1
            m1y += yy
            m1x += xx
            m2y += yy * yy
            m2x += xx * xx
            mxy += yy * xx
            if xx < left[yy]:
                left[yy] = xx
            if xx > right[yy]:
                right[yy] = xx
        mom[k, 0] = npx
        mom[k, 1] = m1y
        mom[k, 2] = m1x
        mom[k, 3] = m2y
        mom[k, 4] = m2x
        mom[k, 5] = mxy
        # perimeter: skimage.measure.perimeter(image, 4) of the cell's bbox crop; border
        # pixels (a 4-neighbour not of the cell, or outside the image) marked 3 in the mask
        # and listed in qs[:nb]
        nb = 0
        for i in range(npx):
            q = (ys[i] + 1) * wm + xs[i] + 1
            if fm[q - wm] == 0 or fm[q + wm] == 0 or fm[q - 1] == 0 or fm[q + 1] == 0:
                fm[q] = 3
                qs[nb] = i
                nb += 1
        hist[:] = 0
        nloc = 0
        for t in range(nb):
            i = qs[t]
            q = (ys[i] + 1) * wm + xs[i] + 1
            code = (1 + 2 * ((fm[q - wm] == 3) + (fm[q + wm] == 3) + (fm[q - 1] == 3) + (fm[q + 1] == 3))
                    + 10 * ((fm[q - wm - 1] == 3) + (fm[q - wm + 1] == 3) + (fm[q + wm - 1] == 3)
                            + (fm[q + wm + 1] == 3)))
            hist[code] += 1
            if gap > 0:
                # contacts: an inner-boundary pixel (find_boundaries, connectivity 1: a
                # 4-neighbour in the image with another id) with another cell's pixel
                # within gap px (Chebyshev); the other ids collected in local[:nloc]
                y = r0 + ys[i]
                x = c0 + xs[i]
                if ((fm[q - wm] == 0 and y > 0) or (fm[q + wm] == 0 and y < h - 1)
                        or (fm[q - 1] == 0 and x > 0) or (fm[q + 1] == 0 and x < w - 1)):
                    n_boundary[k] += 1
                    hit = False
                    for yy in range(max(y - gap, 0), min(y + gap + 1, h)):
                        for xx in range(max(x - gap, 0), min(x + gap + 1, w)):
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
        tot = 0.0
        for j in range(50):
            tot += hist[j] * weights[j]
        perim[k] = tot
        for j in range(nloc):
            if npair == cap:
                cap *= 2
                grown_a = np.empty(cap, np.int64)
                grown_b = np.empty(cap, np.int64)
                grown_a[:npair] = pa[:npair]
                grown_b[:npair] = pb[:npair]
                pa = grown_a
                pb = grown_b
            pa[npair] = min(lv, local[j])
            pb[npair] = max(lv, local[j])
            npair += 1
        # convex hull of the pixels' edge midpoints (as skimage.morphology.convex_hull_image),
        # in doubled bbox-local coordinates (exact integers): per row the extreme pixels'
        # midpoints, and of those only the extremes of each y level (the others are never
        # hull vertices), generated in (y, x) order
        m = 0
        for lev in range(-1, 2 * hh):
            if lev % 2 == 0:  # a row's centre line: its left and right pixel edges
                yy = lev // 2
                if right[yy] < 0:
                    continue
                mn = 2 * left[yy] - 1
                mx = 2 * right[yy] + 1
            else:  # between rows yy - 1 and yy: the corners of both
                yy = (lev + 1) // 2
                mn = 1 << 62
                mx = -(1 << 62)
                for q in range(yy - 1, yy + 1):
                    if q >= 0 and q < hh and right[q] >= 0:
                        mn = min(mn, 2 * left[q])
                        mx = max(mx, 2 * right[q])
                if mx < mn:
                    continue
            sy[m] = lev
            sx[m] = mn
            m += 1
            if mx != mn:
                sy[m] = lev
                sx[m] = mx
                m += 1
        # Andrew's monotone chain, counter-clockwise, collinear points dropped
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
                if dy != 0 and (qy - ay) * (qy - hy[i + 1]) > 0:
                    # an edge that does not reach this row: its half-plane holds the row's
                    # part of the (convex) hull, so it bounds neither end
                    continue
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
        if area == npx:  # the hull holds only the cell's pixels: no concavity
            continue
        # (the mask: 0 = background not reached yet, 2 = outside background, else the cell)
        span = 0
        for yy in range(hh):
            span += right[yy] - left[yy] + 1 if right[yy] >= 0 else hh * ww + 1
        if span == npx:
            # every row's pixels are one run: all the bbox's background lies left or right
            # of its row's run, so it reaches the bbox's edge (what the depth needs of it)
            for yy in range(hh):
                for xx in range(lo[yy], hi[yy] + 1):
                    if xx < left[yy] or xx > right[yy]:
                        mask[yy + 1, xx + 1] = 2
        else:
            # flooded from the mask's frame, which touches every background pixel of the
            # bbox's edge
            stack_y = np.empty((hh + 2) * (ww + 2), np.int64)
            stack_x = np.empty((hh + 2) * (ww + 2), np.int64)
            ns = 0
            for yy in range(hh + 2):
                for xx in range(ww + 2):
                    if yy == 0 or xx == 0 or yy == hh + 1 or xx == ww + 1:
                        mask[yy, xx] = 2
                        stack_y[ns] = yy
                        stack_x[ns] = xx
                        ns += 1
            while ns > 0:
                ns -= 1
                qy = stack_y[ns]
                qx = stack_x[ns]
                for ry in range(max(qy - 1, 1), min(qy + 2, hh + 1)):
                    for rx in range(max(qx - 1, 1), min(qx + 2, ww + 1)):
                        if mask[ry, rx] != 0:
                            continue
                        mask[ry, rx] = 2
                        stack_y[ns] = ry
                        stack_x[ns] = rx
                        ns += 1
        best_all = 0
        for yy in range(hh):
            for xx in range(lo[yy], hi[yy] + 1):
                if mask[yy + 1, xx + 1] != 2:
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
    return bbox, mom, perim, hull_area, depth, n_boundary, n_touch, pa[:npair], pb[:npair]


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
    # (float32 products), the saturated pixels (dpc <= 0 or >= 1) and phase; then numpy's
    # float32 mean and std of the id's dpc values in raster order (np.mean / np.std)
    fd = dpc.ravel()
    fl = lap.ravel()
    fp = phase.ravel()
    half = np.float32(0.5)
    zero = np.float32(0.0)
    out = np.zeros((present.size, 7), np.float64)
    big = 0
    for k in range(present.size):
        lv = present[k]
        big = max(big, starts[lv + 1] - starts[lv])
    buf = np.empty(big, np.float32)
    for k in range(present.size):
        lv = present[k]
        s_c = 0.0
        s_l = 0.0
        s_l2 = 0.0
        s_sat = 0.0
        s_p = 0.0
        s = starts[lv]
        nv = starts[lv + 1] - s
        for i in range(s, s + nv):
            p = order[i]
            d = fd[p]
            buf[i - s] = d
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
        fn = np.float32(nv)
        m = pairwise_f32(buf, nv, zero, False) / fn
        out[k, 5] = m
        out[k, 6] = np.float32(math.sqrt(pairwise_f32(buf, nv, m, True) / fn))
    return out


# ------------------------------------------------------------------ public API


def per_index(values_by_label: np.ndarray, index: np.ndarray, missing) -> np.ndarray:
    """``values_by_label[index]`` with ``missing`` for ids outside the table."""
    out = np.full(index.shape, missing, dtype=values_by_label.dtype)
    ok = (index >= 0) & (index < values_by_label.size)
    out[ok] = values_by_label[index[ok]]
    return out


def cell_shapes(groups: LabelGroups, gap_px: int | None = None) -> dict[str, np.ndarray]:
    """skimage ``regionprops`` geometry of every id of ``groups.present`` (compiled kernel).

    Returns a dict of arrays in the order of ``groups.present``: ``bbox`` (n, 4) as
    regionprops (min row, min col, max row + 1, max col + 1), ``moments`` (n, 6) int64 raw
    moments m00, m10, m01, m20, m02, m11 about the bbox's first pixel (row = first axis),
    ``perimeter`` (``skimage.measure.perimeter(image, 4)``), ``hull_area`` (pixels of
    ``convex_hull_image``) and ``depth`` (concavity depth, px; see
    :func:`scopeflow.smear.qc.cell_features.convexity`). With ``gap_px`` also, in the same
    visit of each cell's outline, what :func:`scopeflow.smear.qc.cell_features.contacts`
    needs: ``contact_gap`` (the gap, at least 1 px), ``n_boundary`` and ``n_touch`` (the
    cell's inner-boundary pixels, and those with another cell within the gap) and
    ``pairs`` ((m, 2) int64, the (smaller, larger) ids of the cells in contact, once per
    cell of the pair that sees the other).
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("cell_shapes needs numba")
    gap = 0 if gap_px is None else max(int(gap_px), 1)
    bbox, mom, perim, hull_area, depth, n_boundary, n_touch, pa, pb = _cell_shapes(
        groups.lab, groups.present, groups.starts, groups.order, _PERIMETER_WEIGHTS, gap)
    out = {"bbox": bbox, "moments": mom, "perimeter": perim, "hull_area": hull_area, "depth": depth}
    if gap:
        out.update(contact_gap=gap, n_boundary=n_boundary, n_touch=n_touch,
                   pairs=np.stack([pa, pb], axis=1))
    return out


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
    return per_index(sums, np.asarray(index, dtype=np.int64), 0.0)


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
        float64 (n, 7) in the order of ``groups.present``: sums of ``|dpc − 0.5|``,
        ``lap``, ``lap²``, saturated pixels (``dpc <= 0`` or ``>= 1``) and ``phase``, the
        same numbers as :func:`label_sum` of each image (float32 products rounded first);
        then the mean and standard deviation of ``dpc`` in the cell, the float32 numbers of
        numpy's ``mean`` / ``std`` of its pixels in raster order (as skimage's
        ``regionprops`` gets them).
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
    return label_sum(values, groups, index) / per_index(groups.counts, index, 0).astype(np.float64)
