"""Compiled upsampled DFT cross-correlation of every candidate crop.

The low-rank form ``Σ_r A_r d B_rᵀ`` of :func:`scopeflow.track.refine._xcorr_tables`,
one crop at a time. See :mod:`scopeflow.track._fast` for numba and the numpy fallback.
"""

from __future__ import annotations

import numpy as np

from scopeflow._numba import njit
from scopeflow.track._fast.peaks import _border_median

__all__ = ["xcorr"]


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _xcorr(crops, valid, tshift, amap, bmap, grid, upsample, out):  # pragma: no cover
    """Per crop: border-median background, correlation at the integer shifts, polarity, and
    the upsampled correlation ``Σ_r A_r d B_rᵀ`` around the integer peak (low-rank template).
    """
    n, k, _ = crops.shape
    nr = amap.shape[0]
    g = len(grid)
    kk = k * k
    bg = np.empty(1)
    d = np.empty(kk)
    xb = np.empty((k, g))
    cu = np.empty((g, g))
    sub = np.empty(9)
    for i in range(n):
        _border_median(crops[i : i + 1], valid[i : i + 1], bg)
        b = bg[0]
        for u in range(k):
            for v in range(k):
                d[u * k + v] = crops[i, u, v] - b if valid[i, u, v] else 0.0
        for j in range(9):  # tshift is (9, k²)
            acc = 0.0
            for q in range(kk):
                acc += d[q] * tshift[j, q]
            sub[j] = acc
        hi = sub[0]
        lo = sub[0]
        for j in range(9):
            hi = max(hi, sub[j])
            lo = min(lo, sub[j])
        pol = 1.0 if hi >= -lo else -1.0
        jb = 0
        for j in range(9):
            if pol * sub[j] > pol * sub[jb]:
                jb = j
        jy = jb // 3
        jx = jb % 3
        cu[:, :] = 0.0
        for r in range(nr):
            xb[:, :] = 0.0
            for u in range(k):  # xb = d B_rᵀ (bmap is stored as (R, 3, k, g))
                for v in range(k):
                    w = d[u * k + v]
                    for c in range(g):
                        xb[u, c] += w * bmap[r, jx, v, c]
            for a in range(g):  # cu += A_r xb
                for u in range(k):
                    w = amap[r, jy, a, u]
                    for c in range(g):
                        cu[a, c] += w * xb[u, c]
        # peak of pol·cu (first in raster order), then a 3-point parabola per axis
        best = -np.inf
        iy = 0
        ix = 0
        for a in range(g):
            for c in range(g):
                val = pol * cu[a, c]
                if val > best:
                    best = val
                    iy = a
                    ix = c
        iy = min(max(iy, 1), g - 2)
        ix = min(max(ix, 1), g - 2)
        c0 = pol * cu[iy, ix]
        dy = _parab(pol * cu[iy - 1, ix], c0, pol * cu[iy + 1, ix])
        dx = _parab(pol * cu[iy, ix - 1], c0, pol * cu[iy, ix + 1])
        out[i, 0] = (jy == 1) - (jy == 2) + grid[iy] + dy / upsample  # shift 0, +1, -1
        out[i, 1] = (jx == 1) - (jx == 2) + grid[ix] + dx / upsample
        out[i, 2] = pol


@njit(cache=True, nogil=True)
def _parab(cm, c0, cp):  # pragma: no cover - compiled
    den = cm - 2.0 * c0 + cp
    if not den < 0:
        return 0.0
    return min(max(0.5 * (cm - cp) / den, -0.5), 0.5)


def xcorr(crops, valid, tshift, amap, bmap, grid, upsample):
    """Compiled :func:`scopeflow.track.refine.refine_xcorr` core; returns (n, 3) oy, ox, pol."""
    n = len(crops)
    out = np.empty((n, 3))
    if n:
        _xcorr(np.ascontiguousarray(crops, dtype=np.float64),
               np.ascontiguousarray(valid, dtype=np.bool_), np.ascontiguousarray(tshift.T),
               amap, np.ascontiguousarray(np.swapaxes(bmap, 2, 3)),
               np.ascontiguousarray(grid, dtype=np.float64), float(upsample), out)
    return out
