"""Compiled candidates, Gaussian matched filter, crops and crop backgrounds.

* :func:`local_maxima` – pixels above a threshold that are the maximum of their
  ``(2d+1)²`` neighbourhood (clipped at the frame edge); on a plateau only the first pixel
  in raster order counts. Only pixels above the threshold are inspected, so the cost is
  one pass over the frame plus a window check per bright pixel.
* :func:`gauss_minus_box` – the matched filter of a Gaussian bead (separable passes along
  contiguous rows).
* :func:`extract_crops`, :func:`border_median` – crops around the candidates and their
  background (median of the valid border pixels).

See :mod:`scopeflow.track._fast` for numba and the numpy fallback.
"""

from __future__ import annotations

import numpy as np

from scopeflow._numba import njit

__all__ = ["border_median", "extract_crops", "gauss_minus_box", "local_maxima"]


@njit(cache=True, nogil=True)
def _local_maxima(s, thr, d):  # pragma: no cover - compiled
    ny, nx = s.shape
    cap = (ny // (d + 1) + 2) * (nx // (d + 1) + 2)
    out = np.empty((cap, 2), np.int64)
    n = 0
    for y in range(ny):
        y0 = max(y - d, 0)
        y1 = min(y + d + 1, ny)
        for x in range(nx):
            v = s[y, x]
            if not v > thr:
                continue
            x0 = max(x - d, 0)
            x1 = min(x + d + 1, nx)
            ok = True
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    w = s[yy, xx]
                    if w > v or (w == v and (yy < y or (yy == y and xx < x))):
                        ok = False
                        break
                if not ok:
                    break
            if ok and n < cap:
                out[n, 0] = y
                out[n, 1] = x
                n += 1
    return out[:n]


def local_maxima(score: np.ndarray, threshold: float, min_distance: int) -> np.ndarray:
    """(n, 2) int64 (y, x) of the local maxima above ``threshold`` (raster order).

    Requires numba (see the module docstring); :func:`scopeflow.track.peaks.find_peaks`
    falls back to a maximum filter without it.
    """
    s = np.ascontiguousarray(score, dtype=np.float32)
    return _local_maxima(s, np.float32(threshold), int(min_distance))


@njit(cache=True, nogil=True, fastmath=True)
def _gauss_minus_box(img, g, out):  # pragma: no cover - compiled
    """Separable (g ⊗ g) − (box ⊗ box) correlation with zero padding, box size = len(g).

    Both passes run along contiguous rows (the inner loops vectorise): first along y (rows
    of the frame combined with the taps as weights), then along x on a zero-padded copy
    of each row.
    """
    ny, nx = img.shape
    m = len(g)
    r = m // 2
    inv = np.float32(1.0 / m)
    rg = np.zeros(nx + 2 * r, np.float32)  # padded rows of the y-pass results
    rb = np.zeros(nx + 2 * r, np.float32)
    for y in range(ny):
        for x in range(nx):
            rg[r + x] = 0.0
            rb[r + x] = 0.0
        for t in range(m):  # along y
            yy = y + t - r
            if 0 <= yy < ny:
                gt = g[t]
                for x in range(nx):
                    v = img[yy, x]
                    rg[r + x] += gt * v
                    rb[r + x] += v
        for x in range(nx):
            out[y, x] = 0.0
        for t in range(m):  # along x
            gt = g[t]
            for x in range(nx):
                out[y, x] += gt * rg[x + t] - inv * inv * rb[x + t]


def gauss_minus_box(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """float32 (Gaussian ⊗ Gaussian − box ⊗ box) response of ``img`` (zero padding)."""
    a = np.ascontiguousarray(img, dtype=np.float32)
    out = np.empty_like(a)
    _gauss_minus_box(a, np.ascontiguousarray(g, dtype=np.float32), out)
    return out


@njit(cache=True, nogil=True)
def _crops(img, centers, radius, crops, valid):  # pragma: no cover - compiled
    ny, nx = img.shape
    k = 2 * radius + 1
    for i in range(centers.shape[0]):
        cy = centers[i, 0] - radius
        cx = centers[i, 1] - radius
        for u in range(k):
            yy = cy + u
            vy = 0 <= yy < ny
            yc = min(max(yy, 0), ny - 1)
            for v in range(k):
                xx = cx + v
                xc = min(max(xx, 0), nx - 1)
                crops[i, u, v] = img[yc, xc]
                valid[i, u, v] = vy and (0 <= xx < nx)


def extract_crops(img: np.ndarray, centers: np.ndarray, radius: int):
    """(n, k, k) float64 crops (edge-replicated) and their in-frame mask; see peaks.extract_crops."""
    n = len(centers)
    k = 2 * radius + 1
    crops = np.empty((n, k, k))
    valid = np.empty((n, k, k), np.bool_)
    if n:
        _crops(np.ascontiguousarray(img), np.ascontiguousarray(centers, dtype=np.int64),
               int(radius), crops, valid)
    return crops, valid


@njit(cache=True, nogil=True)
def _median_sorted(buf, m):  # pragma: no cover - compiled
    b = np.sort(buf[:m])
    h = m // 2
    return b[h] if m % 2 else 0.5 * (b[h - 1] + b[h])


@njit(cache=True, nogil=True)
def _border_median(crops, valid, out):  # pragma: no cover - compiled
    n, k, _ = crops.shape
    buf = np.empty(k * k)
    for i in range(n):
        m = 0
        for u in range(k):
            step = 1 if (u == 0 or u == k - 1) else k - 1
            for v in range(0, k, step):
                if valid[i, u, v]:
                    buf[m] = crops[i, u, v]
                    m += 1
        if m == 0:  # no border pixel inside the frame: median of the valid pixels
            for u in range(k):
                for v in range(k):
                    if valid[i, u, v]:
                        buf[m] = crops[i, u, v]
                        m += 1
        out[i] = _median_sorted(buf, m) if m else np.nan


def border_median(crops: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of each crop's in-frame border pixels (of its in-frame pixels if none)."""
    out = np.empty(len(crops))
    if len(crops):
        _border_median(np.ascontiguousarray(crops, dtype=np.float64),
                       np.ascontiguousarray(valid, dtype=np.bool_), out)
    return out
