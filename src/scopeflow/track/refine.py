"""Subpixel bead positions by upsampled DFT cross-correlation with the bead template.

A ``K × K`` crop around each candidate minus its border median is cross-correlated with
the zero-mean bead template; the integer peak among the shifts {0, ±1}² is refined with
the Guizar-Sicairos upsampled matrix-multiply DFT on a 1/``upsample`` px grid around it
plus a 3-point parabola on that grid. The template's rank-1 terms (SVD) turn the upsampled
DFT into two small real matrix products per crop (:func:`_xcorr_tables`).

Offsets are (y, x) in pixels from the crop centre.
"""

from __future__ import annotations

import functools
import math

import numpy as np

import scopeflow.track._fast as _fast
from scopeflow.track.peaks import _border_median

__all__ = ["refine_xcorr"]


def _centred_freqs(k: int) -> np.ndarray:
    """Signed DFT frequencies (cycles per sample × k) for an odd length k."""
    return np.fft.fftfreq(k) * k


def refine_xcorr(
    crops: np.ndarray,
    valid: np.ndarray,
    template: np.ndarray,
    upsample: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subpixel offsets of beads in crops by upsampled DFT cross-correlation.

    Parameters
    ----------
    crops : ndarray (n, k, k)
        Raw crops centred on the candidates (k odd).
    valid : ndarray (n, k, k) bool
        Pixels inside the frame (others are set to the background).
    template : ndarray (k, k)
        Bead template centred on the middle pixel.
    upsample : int
        Upsampling factor of the matrix-multiply DFT (grid step ``1/upsample`` px); a
        3-point parabola on that grid refines further.

    Returns
    -------
    dy, dx : ndarray (n,)
        Offsets of the correlation peak from the crop centre (px), within ±1.5 px.
    polarity : ndarray (n,)
        +1 for a bead brighter than the background, -1 for a darker one (sign of the
        correlation peak).
    """
    n, k, _ = crops.shape
    t = np.asarray(template, dtype=np.float64)
    t = t - t.mean()
    tshift, amap, bmap, grid = _xcorr_tables(t.tobytes(), k, int(upsample))
    if _fast.HAVE_NUMBA:
        o = _fast.xcorr(crops, valid, tshift, amap, bmap, grid, upsample)
        return o[:, 0], o[:, 1], o[:, 2]
    bg = _border_median(crops, valid)
    # (the correlation is not normalised: a positive scale per crop changes no peak)
    d = np.where(valid, crops - bg[:, None, None], 0.0)
    # correlation at the integer shifts {0, 1, -1}² in real space: cc(s) = Σ_u d(u) t(u - s)
    sub = (d.reshape(n, -1) @ tshift).reshape(n, 3, 3)
    pol = np.where(sub.max(axis=(1, 2)) >= -sub.min(axis=(1, 2)), 1.0, -1.0)
    sub = sub * pol[:, None, None]
    flat = sub.reshape(n, -1).argmax(axis=1)
    shifts = np.array([0, 1, -1], dtype=np.float64)
    jy, jx = flat // 3, flat % 3
    # upsampled DFT cross-correlation on the grid s0 + grid² around the integer peak s0,
    # Σ_r A_r d B_rᵀ with the 1-D maps of the template's rank-1 terms (see _xcorr_tables)
    cu = np.einsum("rngu,nuv,rnhv->ngh", amap[:, jy], d, bmap[:, jx], optimize=True)
    cu = cu * pol[:, None, None]
    g = len(grid)
    flat = cu.reshape(n, -1).argmax(axis=1)
    iy = np.clip(flat // g, 1, g - 2)
    ix = np.clip(flat % g, 1, g - 2)
    rows = np.arange(n)
    c0 = cu[rows, iy, ix]
    dy = _parabola(cu[rows, iy - 1, ix], c0, cu[rows, iy + 1, ix])
    dx = _parabola(cu[rows, iy, ix - 1], c0, cu[rows, iy, ix + 1])
    oy = shifts[jy] + grid[iy] + dy / upsample
    ox = shifts[jx] + grid[ix] + dx / upsample
    return oy, ox, pol


@functools.lru_cache(maxsize=16)
def _xcorr_tables(tbytes: bytes, k: int, upsample: int):
    """Tables of the cross-correlation with a zero-mean template T (k × k, k odd).

    * ``tshift`` (k², 9): T shifted by s ∈ {0, 1, -1}² (circularly, like the DFT
      correlation): the correlation at the integer shifts is ``d.ravel() @ tshift``.
    * ``amap, bmap`` (R, 3, g, k): the upsampled DFT cross-correlation (Guizar-Sicairos)
      ``C(s) = Σ_f D(f) conj(T(f)) e^{2πi f·s/k} / k²`` on the grid s = s0 + δ (δ ∈ grid,
      s0 ∈ {0, +1, -1} per axis) is, for T = Σ_r a_r b_rᵀ (SVD, terms above 1e-12 of the
      largest; a Gaussian template has R = 2), ``C = Σ_r A_r d B_rᵀ`` with the real 1-D maps
      ``A_r[s, u] = Σ_f conj(â_r(f)) e^{2πi f (s - u)/k} / k`` (centred frequencies: the
      terms f and -f are complex conjugates, so each map is real).
    """
    t = np.frombuffer(tbytes, dtype=np.float64).reshape(k, k)
    # ts(u) = t(u - s), circular like the DFT correlation
    cols = [np.roll(t, (sy, sx), axis=(0, 1)).ravel() for sy in (0, 1, -1) for sx in (0, 1, -1)]
    tshift = np.ascontiguousarray(np.stack(cols, 1))
    u_, sv, vt = np.linalg.svd(t)
    rank = max(1, int(np.sum(sv > 1e-12 * sv[0]))) if sv[0] > 0 else 1
    grid = _upsample_grid(upsample)
    f = _centred_freqs(k)
    pos = np.arange(k)
    maps = []
    for vecs in (u_[:, :rank] * np.sqrt(sv[:rank]), vt[:rank].T * np.sqrt(sv[:rank])):
        spec = np.conj(np.fft.fft(vecs, axis=0))  # (k, R), fft order = fftfreq order of f
        m = np.empty((rank, 3, len(grid), k))
        for j, s0 in enumerate((0.0, 1.0, -1.0)):
            lag = (s0 + grid)[:, None] - pos[None, :]  # (g, k): s - u
            ph = np.exp(2j * np.pi * f[None, None, :] * lag[:, :, None] / k)  # (g, k, k_f)
            m[:, j] = np.einsum("guf,fr->rgu", ph, spec).real / k
        maps.append(np.ascontiguousarray(m))
    for a in (tshift, *maps, grid):
        a.setflags(write=False)
    return tshift, maps[0], maps[1], grid


def _upsample_grid(upsample: int) -> np.ndarray:
    """Fractional shifts ``-m..m / upsample`` (±0.6 px) searched around the integer peak."""
    m = int(math.ceil(0.6 * upsample))
    return np.arange(-m, m + 1) / upsample


def _parabola(cm: np.ndarray, c0: np.ndarray, cp: np.ndarray) -> np.ndarray:
    den = cm - 2 * c0 + cp
    with np.errstate(divide="ignore", invalid="ignore"):
        dlt = np.where(den < 0, 0.5 * (cm - cp) / den, 0.0)
    return np.clip(dlt, -0.5, 0.5)
