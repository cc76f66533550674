"""Poisson maximum-likelihood fits of bead crops (the refinement after the cross-correlation).

Fisher scoring (iteratively reweighted least squares with Poisson variance
``μ + read_noise²``) of ``μ = b + N·E(y0, x0)``, all spots of a frame at once, where E is
the pixel-integrated Gaussian (:func:`fit_gaussian`, erf model, σ fixed or free) or the
bead template shifted by Fourier interpolation (:func:`fit_template`, any shape: rings,
dark beads, ...). The amplitude is signed, so dark beads on a bright background need no
inversion and keep the right Poisson weights. Pixels closer to another bead than to the
fitted one get zero weight (:func:`_neighbour_mask`), or, in the refit of crowded beads,
the neighbours' fitted models are added to the expected photons (:func:`_neighbour_models`).

The fits return the CRLB (inverse Fisher information) at the estimate and the reduced
chi-square. Offsets are (y, x) in pixels from the crop centre; intensities in photons.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.special import erf

import scopeflow.track._fast as _fast
from scopeflow.track.refine import _centred_freqs

__all__ = ["fit_gaussian", "fit_template"]


_SQ2 = math.sqrt(2.0)


_SQ2PI = math.sqrt(2.0 * math.pi)


#: use the compiled fixed-σ fit when numba is available (tests switch it off to compare)
_FAST_FIT = True


#: compiled fit: stop once a Fisher step moves the position by < this (px); 1e-3 px is
#: ≤ 4 % of the CRLB even at N = 5000 photons, added in quadrature: ≤ 0.1 % of the RMSE
_FIT_TOL = 1e-3


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
