"""Bead detection and subpixel localisation: candidates, cross-correlation, MLE refinement.

Pipeline per frame (all spots of a frame are processed together, vectorised):

1. **Candidates** – local maxima (maximum-filter non-maximum suppression) of a score map
   above a threshold. The score map is either a bead-centre probability map from a network
   (:mod:`scopeflow.track.beadnet`) or a matched filter: the frame correlated with the
   zero-mean bead template, in units of its robust noise (MAD), so the threshold is an SNR.
2. **Cross-correlation (core)** – a ``K × K`` crop around each candidate minus its border
   median, scaled to unit norm, is cross-correlated with the bead template (FFT); the
   integer peak is refined with the Guizar-Sicairos upsampled matrix-multiply DFT on a
   1/``upsample`` px grid around it plus a 3-point parabola on that grid.
3. **Refinement** – a vectorised maximum-likelihood fit started at the cross-correlation
   peak: Fisher scoring (iteratively reweighted least squares with Poisson variance
   ``μ + read_noise²``) of ``μ = b + N·E(y0, x0)`` where E is the pixel-integrated Gaussian
   (``profile="gaussian"``, erf model) or the bead template shifted by Fourier
   interpolation (``profile="template"``/``"ring"``, any shape: rings, dark beads, ...).
   The amplitude is signed, so dark beads on a bright background need no inversion and keep
   the right Poisson weights. Pixels closer to another candidate than to the fitted one and
   pixels outside the frame get zero weight; a second pass refits crowded beads with their
   neighbours' fitted models added to the expected photons. Fits whose amplitude is below
   ``min_snr`` standard errors are dropped, and candidates converging on the same bead
   (closer than ``max(1, σ)`` px) are merged.
4. **Uncertainty** – ``ep_px`` = ``sqrt(mean(diag(I⁻¹)_y, diag(I⁻¹)_x) · χ²_red)``, the
   Cramér–Rao bound from the Fisher information at the fitted parameters, scaled by the
   reduced chi-square (absorbs an unknown camera gain).

Templates come from a model profile (Gaussian with σ estimated from the data by a pilot
fit with free σ) or from the data themselves (crops of the detected beads aligned by their
subpixel positions with Fourier shifts, averaged, symmetrised over the 8 rotations/flips,
re-localised and re-averaged).

Coordinates are (y, x) in pixels with the origin at the centre of pixel (0, 0), as trackpy.
Intensities are ``(ADU - offset) / gain`` (photons when gain and offset are right).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.special import erf

from scopeflow.track import _fast

__all__ = [
    "LocateParams",
    "gaussian_template",
    "ring_template",
    "matched_filter",
    "find_peaks",
    "extract_crops",
    "refine_xcorr",
    "fit_gaussian",
    "fit_template",
    "estimate_template",
    "estimate_sigma",
    "locate",
    "locate_stack",
    "LOC_COLUMNS",
]

#: Columns of a localisation table (pixels, origin at the centre of pixel (0, 0)).
LOC_COLUMNS = [
    "frame", "y", "x", "photons", "background", "ep_px", "sigma_px", "score", "snr", "chi2",
]

_SQ2 = math.sqrt(2.0)
_SQ2PI = math.sqrt(2.0 * math.pi)
#: use the compiled fixed-σ fit when numba is available (tests switch it off to compare)
_FAST_FIT = True
#: compiled fit: stop once a Fisher step moves the position by < this (px); 1e-3 px is
#: ≤ 4 % of the CRLB even at N = 5000 photons, added in quadrature: ≤ 0.1 % of the RMSE
_FIT_TOL = 1e-3


# --------------------------------------------------------------------------- templates
def gaussian_template(sigma_px: float, radius: int) -> np.ndarray:
    """Pixel-integrated Gaussian of unit sum on a ``(2r+1)²`` grid, centred on the middle pixel.

    Parameters
    ----------
    sigma_px : float
        Gaussian σ (px).
    radius : int
        Half-size r of the template (px).

    Returns
    -------
    ndarray (2r+1, 2r+1) float64
    """
    u = np.arange(-radius, radius + 1, dtype=np.float64)
    e = 0.5 * (erf((u + 0.5) / (_SQ2 * sigma_px)) - erf((u - 0.5) / (_SQ2 * sigma_px)))
    t = np.outer(e, e)
    return t / t.sum()


def ring_template(
    sigma_px: float,
    radius: int,
    ring_radius_px: float | None = None,
    ring_width_px: float | None = None,
) -> np.ndarray:
    """Brightfield bead model (dark core, bright ring; zero net) normalised to ``Σ|T| = 1``.

    Same profile as :func:`scopeflow.simulate.beads.render_frame` with ``profile="ring"``.
    """
    from scopeflow.simulate.beads import render_frame

    k = 2 * radius + 1
    t = render_frame(
        (k, k), np.array([radius]), np.array([radius]), np.array([1.0]),
        profile="ring", sigma_px=sigma_px, ring_radius_px=ring_radius_px,
        ring_width_px=ring_width_px, background=1.0,
    ) - 1.0
    return t / np.abs(t).sum()


def _symmetrize(t: np.ndarray) -> np.ndarray:
    """Average over the 8 rotations/flips (dihedral group D4) of a square template."""
    acc = np.zeros_like(t)
    for k in range(4):
        r = np.rot90(t, k)
        acc += r + r.T
    return acc / 8.0


# --------------------------------------------------------------------------- detection
def _robust_std(a: np.ndarray) -> float:
    a = np.asarray(a).ravel()
    if a.size > 60_000:
        a = a[:: a.size // 60_000 + 1]
    a = a.astype(np.float64)
    med = np.median(a)
    mad = np.median(np.abs(a - med))
    return float(1.4826 * mad) if mad > 0 else float(a.std() or 1.0)


def matched_filter(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Correlate an image with the zero-mean template, in units of the response's noise.

    The image minus its median is zero-padded (no mirrored noise at the edges) and the
    response is divided by its expected standard deviation for white noise (smaller near the
    edges, where part of the template falls outside) times the robust (MAD) noise level.

    Parameters
    ----------
    image : ndarray (y, x)
        Frame (any real dtype).
    template : ndarray (k, k)
        Bead template (its mean is removed, so a smooth background cancels).

    Returns
    -------
    ndarray (y, x) float32
        SNR map whose positive peaks are beads of the template's polarity.
    """
    from scipy.signal import oaconvolve

    img = np.asarray(image, dtype=np.float32)
    img = img - np.float32(np.median(img[::3, ::3]))
    t = np.asarray(template, dtype=np.float64)
    t = (t - t.mean()).astype(np.float32)
    r = oaconvolve(img, t[::-1, ::-1], mode="same").astype(np.float32)
    var = oaconvolve(np.ones_like(img), (t * t)[::-1, ::-1], mode="same")
    return _normalise_response(r, np.sqrt(np.maximum(var, 1e-12)).astype(np.float32))


def _normalise_response(r: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Response / its white-noise std, minus the median, in units of the robust noise.

    Median and MAD come from every 3rd pixel along both axes (1/9 of the frame).
    """
    sub = (r[::3, ::3] / std[::3, ::3]).ravel()
    med = np.median(sub)
    mad = np.median(np.abs(sub - med))
    noise = 1.4826 * mad if mad > 0 else (float(sub.std()) or 1.0)
    z = np.divide(r, std, dtype=np.float32)
    z -= np.float32(med)
    z *= np.float32(1.0 / noise)
    return z


def _gaussian_response(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Matched filter for a Gaussian bead: Gaussian blur minus box mean (separable), SNR units."""
    img = np.asarray(image, dtype=np.float32)
    img = img - np.float32(np.median(img[::3, ::3]))
    g, size = _gauss_box_kernels(float(sigma_px))
    if _fast.HAVE_NUMBA:
        rg = _fast.gauss_minus_box(img, g)
    else:
        c1 = ndimage.correlate1d
        u1 = ndimage.uniform_filter1d
        rg = c1(c1(img, g, 0, mode="constant"), g, 1, mode="constant")
        rg -= u1(u1(img, size, 0, mode="constant"), size, 1, mode="constant")
    return _normalise_response(rg, _gaussian_response_std(img.shape, float(sigma_px)))


@functools.lru_cache(maxsize=16)
def _gauss_box_kernels(sigma_px: float) -> tuple[np.ndarray, int]:
    rad = int(math.ceil(3 * sigma_px))
    u = np.arange(-rad, rad + 1, dtype=np.float64)
    g = np.exp(-(u * u) / (2 * sigma_px**2))
    g /= g.sum()
    return g.astype(np.float32), len(g)


@functools.lru_cache(maxsize=16)
def _gaussian_response_std(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """White-noise standard deviation of the Gaussian-minus-box response (edges included).

    Depends only on the frame shape and σ, so it is computed once per movie (cached).
    """
    g32, size = _gauss_box_kernels(sigma_px)
    g = g32.astype(np.float64)
    b = np.full_like(g, 1.0 / size)
    c1 = ndimage.correlate1d
    ny, nx = shape

    def sums(n, k1, k2):
        return c1(np.ones(n), k1 * k2, mode="constant")

    var = (
        np.outer(sums(ny, g, g), sums(nx, g, g))
        - 2 * np.outer(sums(ny, g, b), sums(nx, g, b))
        + np.outer(sums(ny, b, b), sums(nx, b, b))
    )
    out = np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)
    out.setflags(write=False)
    return out


def find_peaks(
    score: np.ndarray,
    threshold: float,
    min_distance: int = 2,
    exclude_border: int = 0,
) -> np.ndarray:
    """Local maxima of a score map above ``threshold`` (non-maximum suppression).

    Parameters
    ----------
    score : ndarray (y, x)
        Probability or SNR map.
    threshold : float
        Minimum score of a peak.
    min_distance : int
        A peak is the maximum of its ``(2 d + 1)²`` neighbourhood.
    exclude_border : int
        Drop peaks closer than this to the frame edge (px).

    Returns
    -------
    ndarray (n, 2) int
        (y, x) integer positions, sorted by decreasing score.
    """
    s = np.asarray(score, dtype=np.float32)
    if _fast.HAVE_NUMBA:
        # compiled scan: only pixels above the threshold get a window check; a plateau
        # gives its first pixel (raster order)
        yx = _fast.local_maxima(s, threshold, int(min_distance))
        if exclude_border > 0 and len(yx):
            e = int(exclude_border)
            ny, nx = s.shape
            inb = (yx[:, 0] >= e) & (yx[:, 0] < ny - e) & (yx[:, 1] >= e) & (yx[:, 1] < nx - e)
            yx = yx[inb]
        if len(yx) > 1:
            yx = yx[np.argsort(-s[yx[:, 0], yx[:, 1]], kind="stable")]
        return yx.astype(np.int64)
    mx = ndimage.maximum_filter(s, size=2 * int(min_distance) + 1, mode="nearest")
    mask = (s == mx) & (s > threshold)
    if exclude_border > 0:
        e = int(exclude_border)
        mask[:e] = mask[-e:] = False
        mask[:, :e] = mask[:, -e:] = False
    yx = np.argwhere(mask)
    if len(yx) > 1:
        # plateaus: keep one pixel per flat maximum
        order = np.argsort(-s[yx[:, 0], yx[:, 1]], kind="stable")
        yx = yx[order]
        tree = cKDTree(yx)
        pairs = tree.query_pairs(1.5, output_type="ndarray")
        if len(pairs):
            drop = np.zeros(len(yx), bool)
            for i, j in pairs:  # few: only exact ties
                if not drop[i] and s[yx[i, 0], yx[i, 1]] == s[yx[j, 0], yx[j, 1]]:
                    drop[j] = True
            yx = yx[~drop]
    return yx.astype(np.int64)


def extract_crops(image: np.ndarray, centers: np.ndarray, radius: int):
    """Vectorised ``(2r+1)²`` crops around integer centres (edge pixels marked invalid).

    Parameters
    ----------
    image : ndarray (y, x)
    centers : ndarray (n, 2) int
        Crop centres (y, x).
    radius : int

    Returns
    -------
    crops : ndarray (n, k, k) float64
        Pixel values (edge-replicated outside the frame).
    valid : ndarray (n, k, k) bool
        True for pixels inside the frame.
    """
    img = np.asarray(image)
    if _fast.HAVE_NUMBA:
        return _fast.extract_crops(img, centers, radius)
    ny, nx = img.shape
    off = np.arange(-radius, radius + 1)
    iy = centers[:, 0, None] + off  # (n, k)
    ix = centers[:, 1, None] + off
    vy = (iy >= 0) & (iy < ny)
    vx = (ix >= 0) & (ix < nx)
    iyc = np.clip(iy, 0, ny - 1)
    ixc = np.clip(ix, 0, nx - 1)
    crops = img[iyc[:, :, None], ixc[:, None, :]].astype(np.float64)
    valid = vy[:, :, None] & vx[:, None, :]
    return crops, valid


def _border_median(crops: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of each crop's valid border pixels (local background)."""
    if _fast.HAVE_NUMBA:
        return _fast.border_median(crops, valid)
    n, k, _ = crops.shape
    ring = np.zeros((k, k), bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    vals = crops[:, ring]
    ok = valid[:, ring]
    med = np.median(vals, axis=1)
    part = np.flatnonzero(~ok.all(axis=1))  # crops cut by the frame edge
    for i in part:
        v = vals[i][ok[i]]
        med[i] = np.median(v) if len(v) else np.median(crops[i][valid[i]])
    return med


# --------------------------------------------------------------------------- xcorr core
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


# --------------------------------------------------------------------------- MLE fits
def _neighbour_mask(centers: np.ndarray, pos: np.ndarray, radius: int, others: np.ndarray):
    """False for crop pixels closer to another bead than to this one."""
    n = len(pos)
    k = 2 * radius + 1
    keep = np.ones((n, k, k), bool)
    if len(others) < 2 or n == 0:
        return keep
    tree = cKDTree(others)
    kq = min(7, len(others))
    dist, idx = tree.query(pos, k=kq, distance_upper_bound=2.0 * radius + 2)
    if _fast.HAVE_NUMBA:
        ok = np.isfinite(dist) & (dist > 1e-6)
        return _fast.neighbour_keep(centers, pos, others, np.where(ok, idx, 0), ok, radius)
    off = np.arange(-radius, radius + 1, dtype=np.float64)
    py = centers[:, 0, None] + off  # pixel coords (n, k)
    px = centers[:, 1, None] + off
    own = (py - pos[:, 0, None])[:, :, None] ** 2 + (px - pos[:, 1, None])[:, None, :] ** 2
    for j in range(kq):
        ok = np.isfinite(dist[:, j]) & (dist[:, j] > 1e-6)
        if not ok.any():
            continue
        q = others[np.where(ok, idx[:, j], 0)]
        dn = (py - q[:, 0, None])[:, :, None] ** 2 + (px - q[:, 1, None])[:, None, :] ** 2
        keep &= ~(ok[:, None, None] & (dn < own))
    return keep


def _irls(
    d: np.ndarray,
    w_mask: np.ndarray,
    theta: np.ndarray,
    model: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    read_noise: float,
    n_iter: int,
    clamp: Callable[[np.ndarray, np.ndarray], np.ndarray],
):
    """Fisher scoring for Poisson(+read noise) likelihood, all spots at once.

    ``d`` (n, P) data, ``w_mask`` (n, P) 0/1, ``theta`` (n, q). ``model(theta)`` returns
    μ (n, P) and J (n, P, q). Returns theta, μ, information matrix (n, q, q), chi2_red.
    """
    q = theta.shape[1]
    eye = np.eye(q)[None]
    rn2 = read_noise**2
    for _ in range(n_iter):
        mu, jac = model(theta)
        v = np.maximum(mu, 1e-3) + rn2
        w = w_mask / v
        jw = jac * w[:, :, None]
        info = np.transpose(jw, (0, 2, 1)) @ jac
        grad = np.einsum("npq,np->nq", jw, d - mu)
        damp = info * eye * 1e-6 + eye * 1e-12
        try:
            step = np.linalg.solve(info + damp, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.zeros_like(theta)
            for i in range(len(theta)):
                step[i] = np.linalg.lstsq(info[i] + damp[i], grad[i], rcond=None)[0]
        step = np.where(np.isfinite(step), step, 0.0)
        theta = clamp(theta, step)
    mu, jac = model(theta)
    v = np.maximum(mu, 1e-3) + rn2
    w = w_mask / v
    info = np.transpose(jac * w[:, :, None], (0, 2, 1)) @ jac
    npix = w_mask.sum(axis=1)
    chi2 = (w * (d - mu) ** 2).sum(axis=1) / np.maximum(npix - q, 1)
    return theta, mu, info, chi2


def _erf_weights(c: np.ndarray, s: np.ndarray, u: np.ndarray):
    """Pixel-integrated 1-D Gaussian, d/dc and d/dσ; c, s (n,), u (k,) -> (n, k) each."""
    s = s[:, None]
    a = u[None] + 0.5 - c[:, None]
    b = u[None] - 0.5 - c[:, None]
    e = 0.5 * (erf(a / (_SQ2 * s)) - erf(b / (_SQ2 * s)))
    ga = np.exp(-(a * a) / (2 * s * s))
    gb = np.exp(-(b * b) / (2 * s * s))
    kk = 1.0 / (_SQ2PI * s)
    dc = -kk * (ga - gb)
    ds = -kk / s * (a * ga - b * gb)
    return e, dc, ds


def fit_gaussian(
    crops: np.ndarray,
    weights: np.ndarray,
    oy: np.ndarray,
    ox: np.ndarray,
    sigma_px: float | np.ndarray,
    *,
    fit_sigma: bool = False,
    read_noise: float = 0.0,
    n_iter: int = 8,
    extra: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Poisson maximum-likelihood fit of a pixel-integrated Gaussian to each crop.

    Parameters
    ----------
    crops : ndarray (n, k, k)
        Crops in photons (``(ADU - offset) / gain``).
    weights : ndarray (n, k, k) bool/float
        Pixels used in the fit (inside the frame, not nearer another bead).
    oy, ox : ndarray (n,)
        Starting offsets from the crop centre (px), e.g. from :func:`refine_xcorr`.
    sigma_px : float or ndarray (n,)
        PSF σ (px); fixed unless ``fit_sigma``.
    fit_sigma : bool
        Also fit σ.
    read_noise : float
        Read noise in photons rms (variance ``μ + read_noise²``).
    n_iter : int
        Fisher-scoring iterations.
    extra : ndarray (n, k, k), optional
        Known expected photons added to the model (e.g. the fitted neighbouring beads), so
        that crowded beads are fitted with the right mean and Poisson variance.

    Returns
    -------
    dict
        ``dy, dx`` (offsets from the crop centre, px), ``photons`` (signed: negative for a
        dark bead), ``background`` (photons/px), ``sigma`` (px), ``var_y, var_x`` (px², CRLB
        at the estimate), ``chi2`` (reduced chi-square), ``ok`` (converged inside the crop).
    """
    n, k, _ = crops.shape
    r = k // 2
    u = np.arange(-r, r + 1, dtype=np.float64)
    d = np.asarray(crops, dtype=np.float64)
    wm = np.asarray(weights, dtype=np.float64)
    s0 = np.broadcast_to(np.asarray(sigma_px, dtype=np.float64), (n,)).copy()
    if _fast.HAVE_NUMBA and not fit_sigma and _FAST_FIT:
        o = _fast.fit_gaussian_fixed(d, wm, oy, ox, s0, read_noise, n_iter, extra, _FIT_TOL)
        lim = r - 0.5
        ok = (np.abs(o[:, 0]) < lim) & (np.abs(o[:, 1]) < lim) & np.all(np.isfinite(o[:, :4]), 1)
        return {
            "dy": o[:, 0], "dx": o[:, 1], "photons": o[:, 2], "background": o[:, 3],
            "sigma": s0, "var_y": o[:, 4], "var_x": o[:, 5], "var_photons": o[:, 6],
            "chi2": o[:, 7], "ok": ok,
        }
    if _fast.HAVE_NUMBA and fit_sigma and extra is None and _FAST_FIT:
        o = _fast.fit_gaussian_free(d, wm, oy, ox, s0, read_noise, n_iter, 0.3,
                                    4.0 * float(np.max(s0)) + 1.0 if n else 1.0)
        lim = r - 0.5
        ok = (np.abs(o[:, 0]) < lim) & (np.abs(o[:, 1]) < lim) & np.all(np.isfinite(o[:, :5]), 1)
        return {
            "dy": o[:, 0], "dx": o[:, 1], "photons": o[:, 2], "background": o[:, 3],
            "sigma": o[:, 4], "var_y": o[:, 5], "var_x": o[:, 6], "var_photons": o[:, 7],
            "chi2": o[:, 8], "ok": ok,
        }
    rn2 = read_noise**2
    ext = np.zeros((n, k, k)) if extra is None else np.asarray(extra, dtype=np.float64)
    # linear start for (N, b) at the xcorr position
    ey, _, _ = _erf_weights(oy, s0, u)
    ex, _, _ = _erf_weights(ox, s0, u)
    g = ey[:, :, None] * ex[:, None, :]
    wv = wm / (np.maximum(d, 1.0) + rn2)
    d = d - ext  # only for the linear start; the fit below uses d with μ + extra
    b1 = (wv * g * d).sum((1, 2))
    b2 = (wv * d).sum((1, 2))
    d = d + ext
    a11 = (wv * g * g).sum((1, 2))
    a12 = (wv * g).sum((1, 2))
    a22 = wv.sum((1, 2))
    det = a11 * a22 - a12 * a12
    det = np.where(np.abs(det) > 1e-12, det, 1e-12)
    n0 = (a22 * b1 - a12 * b2) / det
    b0 = (a11 * b2 - a12 * b1) / det
    cols = [oy, ox, n0, np.maximum(b0, 1e-2)] + ([s0] if fit_sigma else [])
    theta = np.stack(cols, axis=1)
    q = theta.shape[1]
    smin, smax = 0.3, 4.0 * float(np.max(s0)) + 1.0
    lim = r - 0.5
    ones = np.ones((n, k))
    # column -> rank-1 pieces (alpha(u) ⊗ beta(v)); sigma's column has two pieces
    col_of_piece = [0, 1, 2, 3] + ([4, 4] if fit_sigma else [])
    m = len(col_of_piece)
    pairs = [(i, j) for i in range(m) for j in range(i, m)]
    pi = np.array([i for i, _ in pairs])
    pj = np.array([j for _, j in pairs])
    S = np.zeros((q, m))
    S[col_of_piece, np.arange(m)] = 1.0

    def evaluate(th):
        sig = th[:, 4] if fit_sigma else s0
        ey, dey, dsy = _erf_weights(th[:, 0], sig, u)
        ex, dex, dsx = _erf_weights(th[:, 1], sig, u)
        amp = th[:, 2][:, None]
        mu = th[:, 3][:, None, None] + amp[:, :, None] * (ey[:, :, None] * ex[:, None, :]) + ext
        al = [amp * dey, ey, ey, ones]
        be = [ex, amp * dex, ex, ones]
        if fit_sigma:
            al += [amp * dsy, amp * ey]
            be += [ex, dsx]
        return mu, np.stack(al, 2), np.stack(be, 2)  # (n,k,k), (n,k,m), (n,k,m)

    def normal_eq(th):
        mu, al, be = evaluate(th)
        w = wm / (np.maximum(mu, 1e-3) + rn2)
        wb = w @ (be[:, :, pi] * be[:, :, pj])  # (n, k, npairs): Σ_v w β_p β_q
        gp = np.einsum("nup,nup->np", al[:, :, pi] * al[:, :, pj], wb)
        G = np.zeros((n, m, m))
        G[:, pi, pj] = gp
        G[:, pj, pi] = gp
        info = S[None] @ G @ S.T[None]
        wr = (w * (d - mu)) @ be  # (n, k, m)
        grad = (np.einsum("nup,nup->np", al, wr)) @ S.T
        return mu, w, info, grad

    eye = np.eye(q)[None]
    for _ in range(n_iter):
        _, _, info, grad = normal_eq(theta)
        step = _solve(info + info * eye * 1e-6 + eye * 1e-12, grad)
        step[:, :2] = np.clip(step[:, :2], -0.75, 0.75)
        theta = theta + step
        theta[:, :2] = np.clip(theta[:, :2], -lim, lim)
        if fit_sigma:
            theta[:, 4] = np.clip(theta[:, 4], smin, smax)
    mu, w, info, _ = normal_eq(theta)
    npix = wm.sum(axis=(1, 2))
    chi2 = (w * (d - mu) ** 2).sum(axis=(1, 2)) / np.maximum(npix - q, 1)
    cov = _safe_inv(info)
    ok = (np.abs(theta[:, 0]) < lim) & (np.abs(theta[:, 1]) < lim) & np.all(np.isfinite(theta), 1)
    return {
        "dy": theta[:, 0], "dx": theta[:, 1], "photons": theta[:, 2], "background": theta[:, 3],
        "sigma": theta[:, 4] if fit_sigma else s0,
        "var_y": cov[:, 0, 0], "var_x": cov[:, 1, 1], "var_photons": cov[:, 2, 2],
        "chi2": chi2, "ok": ok,
    }


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched solve with a per-system fallback for singular matrices; non-finite -> 0."""
    try:
        x = np.linalg.solve(a, b[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        x = np.stack([np.linalg.lstsq(a[i], b[i], rcond=None)[0] for i in range(len(a))])
    return np.where(np.isfinite(x), x, 0.0)


def _safe_inv(info: np.ndarray) -> np.ndarray:
    q = info.shape[1]
    reg = info + np.eye(q)[None] * (1e-12 * np.abs(info).max(axis=(1, 2), keepdims=True) + 1e-300)
    try:
        return np.linalg.inv(reg)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(reg)


def fit_template(
    crops: np.ndarray,
    weights: np.ndarray,
    oy: np.ndarray,
    ox: np.ndarray,
    template: np.ndarray,
    *,
    read_noise: float = 0.0,
    n_iter: int = 6,
    extra: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Poisson maximum-likelihood fit of ``b + A·T(u - s)`` with T shifted by Fourier interpolation.

    Parameters
    ----------
    crops : ndarray (n, k, k)
        Crops (photons).
    weights : ndarray (n, k, k)
        Pixels used in the fit.
    oy, ox : ndarray (n,)
        Starting offsets (px) from :func:`refine_xcorr`.
    template : ndarray (k, k)
        Bead template centred on the middle pixel, normalised to ``Σ|T| = 1`` (so ``|A|``
        is the bead's integrated absolute signal).
    read_noise : float
        Read noise (photons rms).
    n_iter : int
        Fisher-scoring iterations.
    extra : ndarray (n, k, k), optional
        Known expected photons added to the model (fitted neighbours).

    Returns
    -------
    dict
        Same keys as :func:`fit_gaussian` (``photons`` = A).
    """
    n, k, _ = crops.shape
    r = k // 2
    d = crops.reshape(n, -1)
    wm = np.asarray(weights, dtype=np.float64).reshape(n, -1)
    t = np.asarray(template, dtype=np.float64)
    ft = np.fft.fft2(t)  # T(u) sampled with its centre at index r
    f = _centred_freqs(k)
    fy = f[:, None]
    fx = f[None, :]

    def shifted(sy, sx):
        ph = np.exp(-2j * np.pi * (sy[:, None, None] * fy + sx[:, None, None] * fx) / k)
        spec = ft[None] * ph
        ts = np.fft.ifft2(spec).real
        ty = np.fft.ifft2(spec * (-2j * np.pi * fy / k)).real
        tx = np.fft.ifft2(spec * (-2j * np.pi * fx / k)).real
        return ts, ty, tx

    ext = np.zeros((n, k * k)) if extra is None else np.asarray(extra, np.float64).reshape(n, -1)
    ts, _, _ = shifted(oy, ox)
    g = ts.reshape(n, -1)
    wv = wm / (np.maximum(d, 1.0) + read_noise**2)
    d = d - ext
    a11 = (wv * g * g).sum(1)
    a12 = (wv * g).sum(1)
    a22 = wv.sum(1)
    b1 = (wv * g * d).sum(1)
    b2 = (wv * d).sum(1)
    det = a11 * a22 - a12 * a12
    det = np.where(np.abs(det) > 1e-12, det, 1e-12)
    a0 = (a22 * b1 - a12 * b2) / det
    b0 = (a11 * b2 - a12 * b1) / det
    d = d + ext
    theta = np.stack([oy, ox, a0, b0], axis=1)
    lim = r - 0.5

    def model(th):
        ts, ty, tx = shifted(th[:, 0], th[:, 1])
        amp = th[:, 2][:, None, None]
        mu = th[:, 3][:, None, None] + amp * ts + ext.reshape(n, k, k)
        jac = np.stack(
            [(amp * ty).reshape(n, -1), (amp * tx).reshape(n, -1), ts.reshape(n, -1),
             np.ones((n, k * k))],
            axis=2,
        )
        return mu.reshape(n, -1), jac

    def clamp(th, step):
        step = step.copy()
        step[:, :2] = np.clip(step[:, :2], -0.75, 0.75)
        th = th + step
        th[:, :2] = np.clip(th[:, :2], -lim, lim)
        return th

    theta, mu, info, chi2 = _irls(d, wm, theta, model, read_noise, n_iter, clamp)
    cov = _safe_inv(info)
    ok = (np.abs(theta[:, 0]) < lim) & (np.abs(theta[:, 1]) < lim) & np.all(np.isfinite(theta), 1)
    return {
        "dy": theta[:, 0], "dx": theta[:, 1], "photons": theta[:, 2], "background": theta[:, 3],
        "sigma": np.full(n, np.nan), "var_y": cov[:, 0, 0], "var_x": cov[:, 1, 1],
        "var_photons": cov[:, 2, 2], "chi2": chi2, "ok": ok,
    }


# --------------------------------------------------------------------------- parameters
@dataclass
class LocateParams:
    """Options of :func:`locate_stack` (see there)."""

    profile: str = "gaussian"
    sigma_px: float | None = None
    radius_px: int | None = None
    template: np.ndarray | None = None
    invert: bool | None = None
    snr_threshold: float = 5.0
    prob_threshold: float = 0.5
    min_distance: int | None = None
    upsample: int = 10
    refine: str = "mle"
    gain: float = 1.0
    offset: float = 0.0
    read_noise: float = 0.0
    n_iter: int = 5
    ep_scale: str = "chi2"
    pilot_frames: int = 50
    pilot_spots: int = 400
    min_snr: float = 4.0
    neighbours: bool = True


def _radius_for(sigma: float, profile: str) -> int:
    if profile == "gaussian":
        return int(max(4, math.ceil(3.5 * sigma)))
    # rings/templates: ring radius 2.2σ + 3 widths 0.6σ ≈ 4σ
    return int(max(5, math.ceil(4.5 * sigma)))


# --------------------------------------------------------------------------- helpers
class _Detector:
    """Candidate detection (network map or matched filter) for one configuration."""

    def __init__(self, model, p: LocateParams, sigma: float, template: np.ndarray | None):
        self.model = model
        self.p = p
        self.sigma = sigma
        self.template = template
        self.min_distance = p.min_distance or max(2, int(round(1.5 * sigma)))

    def score(self, img: np.ndarray, polarity: float) -> np.ndarray:
        if self.model is not None:
            return np.asarray(self.model(img), dtype=np.float32)
        if self.template is None:
            r = _gaussian_response(img, self.sigma)
        else:
            r = matched_filter(img, self.template)
        return r * np.float32(polarity)

    def detect(self, img: np.ndarray, polarity: float) -> tuple[np.ndarray, np.ndarray]:
        s = self.score(img, polarity)
        thr = self.p.prob_threshold if self.model is not None else self.p.snr_threshold
        yx = find_peaks(s, thr, self.min_distance)
        return yx, s[yx[:, 0], yx[:, 1]] if len(yx) else np.zeros(0, np.float32)


def _n_workers(workers: int | None) -> int:
    """Thread count of the frame pool: ``workers``, or the cores available to the process."""
    if workers is not None:
        return max(1, int(workers))
    try:
        import os

        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        import os

        return max(1, os.cpu_count() or 1)


def _auto_polarity(img: np.ndarray, sigma: float) -> float:
    """+1 if beads are brighter than the background, -1 if darker (matched-filter tails)."""
    r = _gaussian_response(img, sigma)
    hi = np.percentile(r, 99.9)
    lo = -np.percentile(r, 0.1)
    return 1.0 if hi >= lo else -1.0


def _to_photons(frame: np.ndarray, p: LocateParams) -> np.ndarray:
    f = np.asarray(frame, dtype=np.float64)
    if p.offset or p.gain != 1.0:
        f = (f - p.offset) / p.gain
    return f


def _neighbour_models(
    cand: np.ndarray,
    pos: np.ndarray,
    amp: np.ndarray,
    radius: int,
    mode: str,
    sigma: float | None,
    template: np.ndarray,
    max_neighbours: int = 8,
) -> np.ndarray:
    """Expected photons of the other fitted beads on each bead's crop grid, (n, k, k)."""
    n = len(pos)
    k = 2 * radius + 1
    extra = np.zeros((n, k, k))
    if n < 2:
        return extra
    dist, idx = cKDTree(pos).query(pos, k=min(max_neighbours + 1, n),
                                   distance_upper_bound=2.0 * radius + 1.0)
    if mode == "gaussian" and _fast.HAVE_NUMBA:
        ok = np.isfinite(dist) & (idx < n) & (idx != np.arange(n)[:, None])
        return _fast.neighbour_gauss(cand, pos, amp, np.where(ok, idx, 0), ok, radius,
                                     float(sigma))
    off = np.arange(-radius, radius + 1, dtype=np.float64)
    for j in range(dist.shape[1]):
        ok = np.isfinite(dist[:, j]) & (idx[:, j] < n)
        ok &= idx[:, j] != np.arange(n)
        if not ok.any():
            continue
        rows = np.flatnonzero(ok)
        q = idx[rows, j]
        py = cand[rows, 0, None] + off - pos[q, 0, None]  # pixel centre − neighbour centre
        px = cand[rows, 1, None] + off - pos[q, 1, None]
        if mode == "gaussian":
            s = _SQ2 * float(sigma)
            ey = 0.5 * (erf((py + 0.5) / s) - erf((py - 0.5) / s))
            ex = 0.5 * (erf((px + 0.5) / s) - erf((px - 0.5) / s))
            extra[rows] += amp[q, None, None] * ey[:, :, None] * ex[:, None, :]
        else:
            r = template.shape[0] // 2
            cy = np.broadcast_to((py + r)[:, :, None], (len(rows), k, k))
            cx = np.broadcast_to((px + r)[:, None, :], (len(rows), k, k))
            vals = ndimage.map_coordinates(template, [cy.ravel(), cx.ravel()], order=3,
                                           mode="constant", cval=0.0).reshape(len(rows), k, k)
            extra[rows] += amp[q, None, None] * vals
    return extra


def _fit(crops, w, oy, ox, p, mode, sigma, template, n_iter, extra=None, fit_sigma=False):
    if mode == "gaussian":
        return fit_gaussian(crops, w, oy, ox, sigma, fit_sigma=fit_sigma,
                            read_noise=p.read_noise, n_iter=n_iter, extra=extra)
    return fit_template(crops, w, oy, ox, template, read_noise=p.read_noise, n_iter=n_iter,
                        extra=extra)


def _select(res, cand, pol, scores, p, shape, sigma, dedup_px=None):
    """Quality filter + de-duplication; returns the kept indices and the output columns.

    Fits closer than ``dedup_px`` (default ``max(1, σ)``) converged on one bead: the one
    with the larger SNR is kept.
    """
    var = 0.5 * (res["var_y"] + res["var_x"])
    var_n = res["var_photons"]
    if p.ep_scale == "chi2":
        var = var * np.maximum(res["chi2"], 1e-6)
        var_n = var_n * np.maximum(res["chi2"], 1e-6)
    snr = np.abs(res["photons"]) / np.sqrt(np.maximum(var_n, 1e-300))
    y = cand[:, 0] + res["dy"]
    x = cand[:, 1] + res["dx"]
    ny, nx = shape
    keep = res["ok"] & (y >= -0.5) & (y < ny - 0.5) & (x >= -0.5) & (x < nx - 0.5)
    keep &= np.isfinite(var) & (np.sign(res["photons"]) == pol) & (snr >= p.min_snr)
    idx = np.flatnonzero(keep)
    # candidates converging on the same bead (closer than max(1, σ) px: unresolvable):
    # keep the better-determined one
    if len(idx) > 1:
        pts = np.stack([y[idx], x[idx]], 1)
        rad = float(dedup_px) if dedup_px else max(1.0, float(sigma) if sigma else 1.0)
        pairs = cKDTree(pts).query_pairs(rad, output_type="ndarray")
        if len(pairs):
            drop = np.zeros(len(idx), bool)
            for i, j in pairs:
                if drop[i] or drop[j]:
                    continue
                drop[j if snr[idx[i]] >= snr[idx[j]] else i] = True
            idx = idx[~drop]
    out = {
        "y": y, "x": x, "photons": np.abs(res["photons"]), "background": res["background"],
        "ep_px": np.sqrt(np.maximum(var, 0)), "sigma_px": res["sigma"], "score": scores,
        "snr": snr, "chi2": res["chi2"],
    }
    return idx, {k_: np.asarray(v, dtype=np.float64)[idx] for k_, v in out.items()}


def _localize_frame(
    img: np.ndarray,
    cand: np.ndarray,
    scores: np.ndarray,
    p: LocateParams,
    radius: int,
    sigma: float | None,
    template: np.ndarray,
    mode: str,
    dedup_px: float | None = None,
) -> dict[str, np.ndarray]:
    """xcorr + fit for all candidates of one frame; returns arrays (frame coordinates).

    ``dedup_px``: fits closer than this merge (default ``max(1, σ)``; the bead radius).

    Pass 1 fits each bead with pixels nearer another candidate masked out; after quality
    filtering and de-duplication, pass 2 (``p.neighbours``) refits every bead with the
    fitted models of its neighbours added to its expected photons (all pixels used).
    """
    n = len(cand)
    if n == 0:
        return {k: np.zeros(0) for k in ("y", "x", "photons", "background", "ep_px", "sigma_px",
                                         "score", "snr", "chi2")}
    crops, valid = extract_crops(img, cand, radius)
    oy, ox, pol = refine_xcorr(crops, valid, template, p.upsample)
    pos0 = cand + np.stack([oy, ox], 1)
    w = valid & _neighbour_mask(cand, pos0, radius, pos0)
    if p.refine == "xcorr":
        # amplitude/background by weighted linear least squares at the xcorr position
        res = _fit(crops, w, oy, ox, p, mode, sigma, template, 0)
        res["dy"], res["dx"] = oy, ox
        return _select(res, cand, pol, scores, p, img.shape, sigma, dedup_px)[1]
    res = _fit(crops, w, oy, ox, p, mode, sigma, template, p.n_iter)
    idx, out = _select(res, cand, pol, scores, p, img.shape, sigma, dedup_px)
    if not p.neighbours or len(idx) < 2:
        return out
    pos = np.stack([out["y"], out["x"]], 1)
    amp = res["photons"][idx]
    c2 = cand[idx]
    extra = _neighbour_models(c2, pos, amp, radius, mode, sigma, template)
    crowded = np.abs(extra).sum(axis=(1, 2)) > 1e-3 * np.abs(amp)
    if not crowded.any():
        return out
    sel = np.flatnonzero(crowded)
    res2 = _fit(crops[idx[sel]], valid[idx[sel]], res["dy"][idx[sel]], res["dx"][idx[sel]], p,
                mode, sigma, template, 3, extra=extra[sel])
    idx2, out2 = _select(res2, c2[sel], pol[idx[sel]], out["score"][sel], p, img.shape, None)
    # crowded beads take the refit values where the refit passed the filters
    rows = sel[idx2]
    for key in out:
        out[key][rows] = out2[key]
    return out


def estimate_sigma(
    frames: Iterable[np.ndarray],
    detector: _Detector,
    p: LocateParams,
    polarity: float,
    sigma0: float,
) -> float:
    """Median σ (px) of free-σ Gaussian fits of the strongest detected beads.

    Parameters
    ----------
    frames : iterable of ndarray (y, x)
        Pilot frames (photons).
    detector : _Detector
        Candidate detector.
    p : LocateParams
        Options (read noise, pilot_spots).
    polarity : float
        +1 bright beads, -1 dark beads (matched filter only).
    sigma0 : float
        Starting σ (px).

    Returns
    -------
    float
        Estimated σ (px); ``sigma0`` when too few beads were found.
    """
    sig, snr = [], []
    radius = _radius_for(sigma0, "gaussian")
    tpl = gaussian_template(sigma0, radius)
    for img in frames:
        cand, sc = detector.detect(img, polarity)
        if len(cand) == 0:
            continue
        if len(cand) > 300:  # the strongest candidates are enough (sorted by score)
            top = np.argsort(-sc, kind="stable")[:300]
            cand, sc = cand[top], sc[top]
        crops, valid = extract_crops(img, cand, radius)
        oy, ox, _ = refine_xcorr(crops, valid, tpl, p.upsample)
        pos0 = cand + np.stack([oy, ox], 1)
        w = valid & _neighbour_mask(cand, pos0, radius, pos0)
        res = fit_gaussian(crops, w, oy, ox, sigma0, fit_sigma=True, read_noise=p.read_noise,
                           n_iter=7)
        good = res["ok"] & np.isfinite(res["sigma"]) & (res["sigma"] > 0.35)
        good &= res["sigma"] < 4.0 * sigma0 + 0.9
        sig.append(res["sigma"][good])
        snr.append(np.abs(res["photons"][good]) / np.sqrt(np.maximum(res["var_x"][good], 1e-12)))
        if sum(len(s) for s in sig) >= p.pilot_spots:
            break
    if not sig:
        return sigma0
    s = np.concatenate(sig)
    q = np.concatenate(snr)
    if len(s) < 5:
        return sigma0
    top = q >= np.median(q)  # the better half
    return float(np.median(s[top]))


def estimate_template(
    frames: Iterable[np.ndarray],
    positions: Iterable[np.ndarray],
    radius: int,
    *,
    iterations: int = 2,
    initial: np.ndarray | None = None,
    upsample: int = 10,
    max_spots: int = 2000,
) -> np.ndarray:
    """Bead template from the data: average of crops aligned at subpixel positions.

    Each crop (``(2r+1)²``, minus its border median, sign-flipped to the common polarity)
    is shifted by Fourier interpolation so that its bead centre falls on the middle pixel;
    the mean is symmetrised over the 8 rotations/flips. With ``initial`` the beads are
    re-localised by cross-correlation with the current template before each average.

    Parameters
    ----------
    frames : iterable of ndarray (y, x)
        Frames.
    positions : iterable of ndarray (n_i, 2)
        Subpixel (y, x) bead positions per frame (px).
    radius : int
        Template half-size r (px).
    iterations : int
        Align/average rounds (with ``initial``).
    initial : ndarray, optional
        Starting template for re-localisation.
    upsample : int
        DFT upsampling of the re-localisation.
    max_spots : int
        Use at most this many beads.

    Returns
    -------
    ndarray (2r+1, 2r+1)
        Template with ``Σ|T| = 1``; bright beads give mostly positive values, dark beads
        mostly negative ones (the sign of the crops' mean central contrast).
    """
    allc, allv, alls = [], [], []
    total = 0
    for img, pos in zip(frames, positions, strict=False):
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        if len(pos) == 0:
            continue
        cen = np.round(pos).astype(np.int64)
        crops, valid = extract_crops(img, cen, radius)
        inside = valid.all(axis=(1, 2))
        allc.append(crops[inside])
        allv.append(valid[inside])
        alls.append((pos - cen)[inside])
        total += int(inside.sum())
        if total >= max_spots:
            break
    if not allc or total == 0:
        raise ValueError("estimate_template: no bead fully inside the frames")
    crops = np.concatenate(allc)[:max_spots]
    valid = np.concatenate(allv)[:max_spots]
    sub = np.concatenate(alls)[:max_spots]
    k = 2 * radius + 1
    bg = _border_median(crops, valid)
    d = crops - bg[:, None, None]
    f = _centred_freqs(k)
    tpl = initial
    rounds = max(1, iterations if initial is not None else 1)
    for _ in range(rounds):
        if tpl is not None:
            oy, ox, pol = refine_xcorr(crops, valid, tpl, upsample)
        else:
            oy, ox = sub[:, 0], sub[:, 1]
            c = k // 2
            cen = d[:, c - 1 : c + 2, c - 1 : c + 2].mean(axis=(1, 2))
            pol = np.sign(cen)
            pol[pol == 0] = 1
        # move each bead to the middle: shift by -(oy, ox)
        ph = np.exp(2j * np.pi * (oy[:, None, None] * f[:, None] + ox[:, None, None] * f[None, :]) / k)
        aligned = np.fft.ifft2(np.fft.fft2(d) * ph).real * pol[:, None, None]
        amp = np.abs(aligned).sum(axis=(1, 2))
        good = amp > 0
        mean = (aligned[good] / amp[good, None, None]).mean(axis=0)
        mean = _symmetrize(mean)
        mean -= np.median(np.concatenate([mean[0], mean[-1], mean[:, 0], mean[:, -1]]))
        # common polarity: sign of the majority
        sgn = 1.0 if np.median(pol) >= 0 else -1.0
        tpl = mean * sgn
        tpl = tpl / np.abs(tpl).sum()
    return tpl


def _resolve_model(model):
    if model is None:
        return None
    if isinstance(model, str):
        from scopeflow.models.beadnet import BeadNet

        return BeadNet.load() if model in ("beadnet", "default", "shipped") else BeadNet.load(model)
    return model


def locate_stack(
    stack: np.ndarray | Iterable[np.ndarray],
    model=None,
    *,
    profile: str = "auto",
    diameter_px: float | None = None,
    minmass: float | None = None,
    match_factor: float = 0.6,
    classes: list | None = None,
    sigma_px: float | None = None,
    radius_px: int | None = None,
    template: np.ndarray | None = None,
    invert: bool | None = None,
    snr_threshold: float = 5.0,
    prob_threshold: float = 0.5,
    min_distance: int | None = None,
    upsample: int = 10,
    refine: str = "mle",
    gain: float = 1.0,
    offset: float = 0.0,
    read_noise: float = 0.0,
    n_iter: int = 5,
    ep_scale: str = "chi2",
    pilot_frames: int = 50,
    min_snr: float = 4.0,
    neighbours: bool = True,
    progress: bool = False,
    first_frame: int = 0,
    workers: int | None = None,
) -> pd.DataFrame:
    """Detect and localise beads in every frame of a movie.

    Parameters
    ----------
    stack : ndarray (t, y, x) or (y, x), or iterable of 2-D frames
        Raw frames (counts/ADU; any real dtype). Use the green channel of RGB frames.
    model : None, "beadnet", path, or callable
        Candidate detector. None: matched filter with the bead template; "beadnet": the
        shipped U-Net bead-centre map (:class:`scopeflow.models.beadnet.BeadNet`); a path to
        other weights; or any callable mapping a frame to a probability map (y, x).
    profile : {"auto", "gaussian", "template", "ring"}
        Bead model. "auto" (default; matched filter only, see
        :mod:`scopeflow.track.appearance`): the bead polarity, size(s) and radial profile
        are estimated from the data, beads are detected at their own scale with
        non-maximum suppression within a bead radius, placed with the data-derived
        template (or the Gaussian fit when the beads are Gaussian spots) and candidates
        whose profile does not match are dropped. With a network ``model`` "auto" means
        "gaussian". "gaussian": pixel-integrated Gaussian, σ estimated
        from the data unless ``sigma_px`` is given (fluorescent beads, dark blobs).
        "template": template estimated from the data (any bead image, e.g. brightfield
        rings). "ring": start the template estimation from the brightfield ring model.
    diameter_px : float, optional
        Approximate bead diameter (px), as trackpy's ``diameter`` ("auto" only): the size
        is then searched between d/8 and d/2 (LoG σ) and the suppression radius is d/2.
        Default: estimated from the data.
    minmass : float, optional
        "auto": the features are those ``trackpy.locate(diameter, minmass=minmass)``
        selects (:func:`scopeflow.track.mass.bandpass_features`: band-pass maxima at least
        ``diameter + 1`` apart, not within ``diameter // 2`` of an edge, trackpy ``mass``
        above ``minmass``; the ``mass`` column, present only then), each placed by the bead
        fit where its amplitude SNR reaches
        :data:`scopeflow.track.appearance.FIT_SNR`, else at its band-pass centroid.
        None: scopeflow's own detection (SNR threshold, one per bead, profile check).
    match_factor : float
        "auto": drop candidates whose correlation with the fitted bead is below this
        fraction of its expected value at their SNR (dirt, smudges); 0 disables.
    classes : list of dict, optional
        "auto": use these bead classes (``attrs["classes"]`` of an earlier call) instead of
        estimating them, e.g. to hold a movie's bead model fixed across blocks.
    sigma_px : float, optional
        Bead σ (px). Default: estimated by a pilot pass (starting at 1.5 px).
    radius_px : int, optional
        Crop/template half-size (px). Default ``ceil(3.5 σ)`` (Gaussian) or ``ceil(4.5 σ)``.
    template : ndarray (2r+1, 2r+1), optional
        Use this template (implies ``profile="template"`` unless profile is "gaussian").
    invert : bool, optional
        Matched filter only: True for dark beads on a bright background, False for bright
        beads; None = decide from the data. (Fits use signed amplitudes, so the raw data
        are never inverted.)
    snr_threshold : float
        Matched-filter detection threshold (response / robust noise).
    prob_threshold : float
        Network detection threshold (probability).
    min_distance : int, optional
        Non-maximum-suppression radius (px); default ``max(2, round(1.5 σ))``.
    upsample : int
        Upsampling factor of the cross-correlation DFT.
    refine : {"mle", "xcorr"}
        "mle": Poisson maximum-likelihood refinement started at the cross-correlation peak
        (default; reaches the CRLB); "xcorr": cross-correlation peak only.
    gain, offset : float
        Camera gain (ADU/photon) and offset (ADU); photons = (ADU - offset) / gain.
    read_noise : float
        Read noise (photons rms) in the noise model.
    n_iter : int
        Fisher-scoring iterations.
    ep_scale : {"chi2", "none"}
        Scale the CRLB-based ``ep_px`` by the fit's reduced chi-square (default).
    pilot_frames : int
        Frames used to estimate σ / the template (at most).
    min_snr : float
        Drop localisations whose fitted amplitude is below ``min_snr`` times its standard
        error (Fisher information, χ²-scaled): removes noise candidates of the network.
    neighbours : bool
        Second pass for crowded beads: refit each bead with its fitted neighbours' models
        added to the expected photons (instead of masking the pixels nearer a neighbour).
    progress : bool
        Show a tqdm progress bar.
    first_frame : int
        Frame number of the first frame.
    workers : int, optional
        Frames localised in parallel by a thread pool (matched filter; the compiled kernels
        release the GIL). None: the CPU cores available to the process. 1: one frame at a
        time. The result does not depend on it.

    Returns
    -------
    pandas.DataFrame
        Columns ``frame, y, x, photons, background, ep_px, sigma_px, score, snr, chi2``: y, x in
        px with the origin at the centre of pixel (0, 0); photons = integrated |signal|
        above (or below, dark beads) the background; background in photons/px; ep_px the
        estimated localisation error per axis (px); score = detection probability or SNR;
        snr = fitted amplitude / its standard error; chi2 = reduced chi-square of the fit.
        ``attrs`` hold the σ, radius, profile and template used ("auto": also ``classes``,
        one dict per bead class with its σ, radius, polarity, mode and template, and
        ``diameter_px``, twice the radius of the first class).

    Notes
    -----
    Throughput: all candidates of a frame are cropped, cross-correlated and fitted by
    compiled kernels (numba; numpy fallback) without a Python loop over beads, and frames run
    in parallel on ``workers`` threads. ``benchmarks/track_speed.py`` compares the frames/s
    with ``trackpy.locate`` on the same frames.
    """
    p = LocateParams(
        profile=profile, sigma_px=sigma_px, radius_px=radius_px, template=template,
        invert=invert, snr_threshold=snr_threshold, prob_threshold=prob_threshold,
        min_distance=min_distance, upsample=upsample, refine=refine, gain=gain, offset=offset,
        read_noise=read_noise, n_iter=n_iter, ep_scale=ep_scale, pilot_frames=pilot_frames,
        min_snr=min_snr, neighbours=neighbours,
    )
    if p.profile not in ("auto", "gaussian", "template", "ring"):
        raise ValueError(f"profile must be 'auto', 'gaussian', 'template' or 'ring', got "
                         f"{profile!r}")
    if diameter_px is not None and not (float(diameter_px) > 1):
        raise ValueError(f"diameter_px must be a number of pixels > 1, got {diameter_px!r}")
    if p.refine not in ("mle", "xcorr"):
        raise ValueError(f"refine must be 'mle' or 'xcorr', got {refine!r}")
    if isinstance(stack, np.ndarray):
        frames = stack[None] if stack.ndim == 2 else stack
        if frames.ndim != 3:
            raise ValueError(f"stack must be (t, y, x) or (y, x), got shape {stack.shape}")
        frames_list = frames
    else:
        frames_list = [np.asarray(f) for f in stack]
    n_frames = len(frames_list)
    net = _resolve_model(model)
    if p.profile == "auto" and (net is not None or p.template is not None):
        p.profile = "gaussian"
    if p.profile == "auto" and n_frames:
        return _locate_auto(frames_list, n_frames, p, diameter_px, match_factor, progress,
                            first_frame, workers, minmass, classes)
    if p.profile == "auto":
        p.profile = "gaussian"
    sigma0 = float(p.sigma_px) if p.sigma_px else 1.5
    n_pilot = min(n_frames, max(p.pilot_frames, 1))

    def pilot_frames_iter():  # lazy: frames are converted only while the pilot needs them
        return (_to_photons(frames_list[i], p) for i in range(n_pilot))

    polarity = 1.0
    if net is None and n_frames:
        if p.invert is None:
            polarity = _auto_polarity(_to_photons(frames_list[0], p), sigma0)
        else:
            polarity = -1.0 if p.invert else 1.0
    mode = "gaussian" if p.profile == "gaussian" and p.template is None else "template"
    sigma = sigma0
    if mode == "gaussian" and p.sigma_px is None and n_frames:
        det = _Detector(net, p, sigma0, None)
        sigma = estimate_sigma(pilot_frames_iter(), det, p, polarity, sigma0)
        if net is None and abs(sigma - sigma0) > 0.2 * sigma0:
            det = _Detector(net, p, sigma, None)
            sigma = estimate_sigma(pilot_frames_iter(), det, p, polarity, sigma)
    radius = int(p.radius_px) if p.radius_px else _radius_for(sigma, mode)
    if mode == "gaussian":
        tpl = gaussian_template(sigma, radius)
        det = _Detector(net, p, sigma, None)
    else:
        if p.template is not None:
            tpl = np.asarray(p.template, dtype=np.float64)
            radius = tpl.shape[0] // 2
        else:
            # start: ring model or Gaussian, then data-driven template
            if p.profile == "ring":
                start = ring_template(sigma, radius)
                if p.invert:
                    start = -start
            else:
                start = gaussian_template(sigma, radius) * polarity
            det0 = _Detector(net, p, sigma, start)
            pilot, pos, n_found = [], [], 0
            for img in pilot_frames_iter():
                pilot.append(img)
                pos.append(det0.detect(img, 1.0)[0].astype(np.float64))
                n_found += len(pos[-1])
                if n_found >= 2000:
                    break
            try:
                tpl = estimate_template(pilot, pos, radius, iterations=3, initial=start,
                                        upsample=p.upsample)
            except ValueError:  # no bead found in the pilot frames: keep the model
                tpl = start / np.abs(start).sum()
        det = _Detector(net, p, sigma, tpl if net is None else None)
        polarity = 1.0  # the template carries the sign
    def one_frame(i: int) -> dict[str, np.ndarray]:
        img = _to_photons(frames_list[i], p)
        cand, sc = det.detect(img, polarity)
        out = _localize_frame(img, cand, sc, p, radius, sigma, tpl, mode)
        out["frame"] = np.full(len(out["y"]), i + first_frame, dtype=np.int64)
        return out

    t0 = time.perf_counter()
    # frames in parallel: the compiled kernels release the GIL (the network detector runs
    # serially: torch has its own intra-op threads)
    parts = _run_frames(one_frame, n_frames, workers, progress, parallel=net is None)
    if parts:
        df = pd.DataFrame({c: np.concatenate([o[c] for o in parts]) for c in LOC_COLUMNS})
    else:
        df = pd.DataFrame({c: np.zeros(0, np.int64 if c == "frame" else np.float64)
                           for c in LOC_COLUMNS})
    df.attrs.update(
        sigma_px=float(sigma), radius_px=int(radius), profile=mode,
        detector="matched_filter" if net is None else getattr(net, "name", "network"),
        polarity=float(polarity), seconds=time.perf_counter() - t0,
        template=tpl.tolist(),
    )
    return df


def _run_frames(one_frame, n_frames, workers, progress, parallel=True):
    """Apply ``one_frame`` to every frame (thread pool when ``workers`` > 1)."""
    n_workers = _n_workers(workers)
    if n_workers > 1 and parallel and n_frames > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=min(n_workers, n_frames))
        it = pool.map(one_frame, range(n_frames))
    else:
        pool = None
        it = map(one_frame, range(n_frames))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="locate", unit="frame", total=n_frames)
    try:
        return list(it)
    finally:
        if pool is not None:
            pool.shutdown()


def _locate_auto(frames_list, n_frames, p, diameter_px, match_factor, progress, first_frame,
                 workers, minmass=None, fixed=None) -> pd.DataFrame:
    """``profile="auto"`` (see :mod:`scopeflow.track.appearance`)."""
    from scopeflow.track.appearance import classes_to_records, locate_auto

    polarity = None if p.invert is None else (-1.0 if p.invert else 1.0)
    t0 = time.perf_counter()
    classes, one = locate_auto(frames_list, n_frames, p, lambda f: _to_photons(f, p),
                               diameter_px=diameter_px, polarity=polarity,
                               match_factor=match_factor, minmass=minmass, classes=fixed)
    if not classes:  # nothing blob-like in the pilot frames: the Gaussian path
        q = LocateParams(**{**p.__dict__, "profile": "gaussian"})
        return locate_stack(frames_list, None, **{k: v for k, v in q.__dict__.items()
                                                  if k not in ("pilot_spots",)},
                            progress=progress, first_frame=first_frame, workers=workers)

    def one_frame(i: int) -> dict[str, np.ndarray]:
        out = one(i)
        out["frame"] = np.full(len(out["y"]), i + first_frame, dtype=np.int64)
        return out

    parts = _run_frames(one_frame, n_frames, workers, progress)
    cols = [*LOC_COLUMNS, "mass"] if minmass is not None else list(LOC_COLUMNS)
    df = pd.DataFrame({c: np.concatenate([o[c] for o in parts]) for c in cols})
    first = classes[0]
    df.attrs.update(
        sigma_px=float(first.sigma_fit), radius_px=int(first.crop_radius),
        profile="auto:" + "+".join(c.mode for c in classes), detector="matched_filter",
        polarity=float(first.polarity), seconds=time.perf_counter() - t0,
        template=np.asarray(first.template).tolist(),
        diameter_px=float(2 * first.radius_px),
        classes=classes_to_records(classes),
    )
    return df


def locate(image: np.ndarray, model=None, **kwargs) -> pd.DataFrame:
    """Detect and localise beads in one frame (see :func:`locate_stack` for options).

    Parameters
    ----------
    image : ndarray (y, x)
        One frame.
    model : None, "beadnet", path, or callable
        Candidate detector.
    **kwargs
        Options of :func:`locate_stack`.

    Returns
    -------
    pandas.DataFrame
        Columns ``frame, y, x, photons, background, ep_px, sigma_px, score, chi2`` (frame 0).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"locate expects a 2-D frame, got shape {img.shape}; use locate_stack")
    return locate_stack(img[None], model, **kwargs)
