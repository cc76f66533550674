"""Compiled Poisson maximum-likelihood fits of a pixel-integrated Gaussian to every crop.

:func:`fit_gaussian_fixed` (σ known) and :func:`fit_gaussian_free` (σ fitted): Fisher
scoring with the same update, clamps and outputs as
:func:`scopeflow.track.fit.fit_gaussian`, one crop at a time in registers instead of
``(n, k, k)`` temporaries; the separable model lets the information matrix be summed per
row, and erf/exp are evaluated once per pixel edge. See :mod:`scopeflow.track._fast` for
numba and the numpy fallback.
"""

from __future__ import annotations

import math

import numpy as np

from scopeflow._numba import njit

__all__ = ["fit_gaussian_fixed", "fit_gaussian_free"]

_SQ2 = math.sqrt(2.0)
_SQ2PI = math.sqrt(2.0 * math.pi)


@njit(cache=True, nogil=True)
def _erf_w(c, s, r, e, de):  # pragma: no cover - compiled
    """Pixel-integrated 1-D Gaussian on u = -r..r and its derivative in the centre c.

    Neighbouring pixels share an edge, so erf and exp are evaluated once per edge (k + 1
    edges for k pixels).
    """
    k = 2 * r + 1
    inv = 1.0 / (_SQ2 * s)
    kk = 1.0 / (_SQ2PI * s)
    h = 1.0 / (2 * s * s)
    b = -r - 0.5 - c  # lower edge of the first pixel
    eb = math.erf(b * inv)
    gb = math.exp(-(b * b) * h)
    for i in range(k):
        a = b + 1.0
        ea = math.erf(a * inv)
        ga = math.exp(-(a * a) * h)
        e[i] = 0.5 * (ea - eb)
        de[i] = -kk * (ga - gb)
        b = a
        eb = ea
        gb = ga


@njit(cache=True, nogil=True)
def _solve_sym(a, b, x):  # pragma: no cover - compiled
    """Solve a x = b (q×q, Gaussian elimination with partial pivoting); non-finite -> 0."""
    q = a.shape[0]
    m = np.empty((q, q + 1))
    for i in range(q):
        for j in range(q):
            m[i, j] = a[i, j]
        m[i, q] = b[i]
    for c in range(q):
        p = c
        for i in range(c + 1, q):
            if abs(m[i, c]) > abs(m[p, c]):
                p = i
        if p != c:
            for j in range(q + 1):
                t = m[c, j]
                m[c, j] = m[p, j]
                m[p, j] = t
        piv = m[c, c]
        if piv == 0.0:
            for i in range(q):
                x[i] = 0.0
            return
        for i in range(c + 1, q):
            f = m[i, c] / piv
            for j in range(c, q + 1):
                m[i, j] -= f * m[c, j]
    for i in range(q - 1, -1, -1):
        t = m[i, q]
        for j in range(i + 1, q):
            t -= m[i, j] * x[j]
        x[i] = t / m[i, i]
    for i in range(q):
        if not np.isfinite(x[i]):
            x[i] = 0.0


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _normal_eq(d, wm, ext, th, s, r, rn2, ey, dey, ex, dex, info, grad):  # pragma: no cover
    """Fisher information and score of one crop at th = (y, x, N, b); returns chi2 sum.

    The model ``b + N·ey(u)·ex(v)`` is separable, so each Jacobian column is a row factor
    (function of u) times a column factor (function of v): per pixel only the ten weighted
    sums over v below are accumulated (scalars in registers), and the information matrix and
    score follow per row from them. Same numbers as the direct pixel sums.
    """
    k = 2 * r + 1
    _erf_w(th[0], s, r, ey, dey)
    _erf_w(th[1], s, r, ex, dex)
    amp = th[2]
    bg = th[3]
    i00 = i01 = i02 = i03 = i11 = i12 = i13 = i22 = i23 = i33 = 0.0
    g0 = g1 = g2 = g3 = 0.0
    chi = 0.0
    for u in range(k):
        eyu = ey[u]
        aeyu = amp * eyu
        ayu = amp * dey[u]
        sw = swe = swee = swed = swdd = swd = sr = sre = srd = 0.0
        for v in range(k):
            exv = ex[v]
            dxv = dex[v]
            mu = bg + aeyu * exv + ext[u, v]
            w = wm[u, v] / (max(mu, 1e-3) + rn2)  # 0 for masked pixels (no branch)
            res = d[u, v] - mu
            we = w * exv
            wd = w * dxv
            wr = w * res
            sw += w
            swe += we
            swee += we * exv
            swed += we * dxv
            swdd += wd * dxv
            swd += wd
            sr += wr
            sre += wr * exv
            srd += wr * dxv
            chi += wr * res
        # Jacobian columns: j0 = ayu·ex, j1 = aeyu·dex, j2 = eyu·ex, j3 = 1
        i00 += ayu * ayu * swee
        i01 += ayu * aeyu * swed
        i02 += ayu * eyu * swee
        i03 += ayu * swe
        i11 += aeyu * aeyu * swdd
        i12 += aeyu * eyu * swed
        i13 += aeyu * swd
        i22 += eyu * eyu * swee
        i23 += eyu * swe
        i33 += sw
        g0 += ayu * sre
        g1 += aeyu * srd
        g2 += eyu * sre
        g3 += sr
    grad[0] = g0
    grad[1] = g1
    grad[2] = g2
    grad[3] = g3
    info[0, 0] = i00
    info[0, 1] = info[1, 0] = i01
    info[0, 2] = info[2, 0] = i02
    info[0, 3] = info[3, 0] = i03
    info[1, 1] = i11
    info[1, 2] = info[2, 1] = i12
    info[1, 3] = info[3, 1] = i13
    info[2, 2] = i22
    info[2, 3] = info[3, 2] = i23
    info[3, 3] = i33
    return chi


@njit(cache=True, nogil=True)
def _linear_start(d, w_i, e_i, ey, ex, rn2, th):  # pragma: no cover - compiled
    """Weighted linear least squares for (N, b) at fixed position: ``th[2], th[3]``.

    ``e_i``: known expected photons subtracted from the data (zeros when there are none).
    Returns the number of weighted pixels.
    """
    k = d.shape[0]
    a11 = a12 = a22 = b1 = b2 = 0.0
    npix = 0.0
    for u in range(k):
        for v in range(k):
            wv = w_i[u, v] / (max(d[u, v], 1.0) + rn2)
            g = ey[u] * ex[v]
            dd = d[u, v] - e_i[u, v]
            a11 += wv * g * g
            a12 += wv * g
            a22 += wv
            b1 += wv * g * dd
            b2 += wv * dd
            npix += w_i[u, v]
    det = a11 * a22 - a12 * a12
    if not abs(det) > 1e-12:
        det = 1e-12
    th[2] = (a22 * b1 - a12 * b2) / det
    th[3] = max((a11 * b2 - a12 * b1) / det, 1e-2)
    return npix


@njit(cache=True, nogil=True)
def _fisher_step(info, grad, a, step, th, lim):  # pragma: no cover - compiled
    """One damped Fisher-scoring update of ``th`` (position steps and positions clamped)."""
    q = th.shape[0]
    for p in range(q):
        for j in range(q):
            a[p, j] = info[p, j]
        a[p, p] += info[p, p] * 1e-6 + 1e-12
    _solve_sym(a, grad, step)
    for p in range(2):
        step[p] = min(max(step[p], -0.75), 0.75)
    for p in range(q):
        th[p] += step[p]
    for p in range(2):
        th[p] = min(max(th[p], -lim), lim)


@njit(cache=True, nogil=True)
def _crlb(info, a, grad, step, out_row, col):  # pragma: no cover - compiled
    """Diagonal of the regularised inverse information for y, x, N into ``out_row[col:col+3]``."""
    q = info.shape[0]
    big = 0.0
    for p in range(q):
        for j in range(q):
            big = max(big, abs(info[p, j]))
    for p in range(q):
        for j in range(q):
            a[p, j] = info[p, j]
        a[p, p] += 1e-12 * big + 1e-300
    # diagonal of the inverse: solve a z = e_p for p = 0, 1, 2
    for p in range(3):
        for j in range(q):
            grad[j] = 1.0 if j == p else 0.0
        _solve_sym(a, grad, step)
        out_row[col + p] = step[p]


@njit(cache=True, nogil=True)
def _fit_gaussian_fixed(crops, wm, ext, oy, ox, sig, rn2, n_iter, tol, out):  # pragma: no cover
    n, k, _ = crops.shape
    r = k // 2
    lim = r - 0.5
    ey = np.empty(k)
    dey = np.empty(k)
    ex = np.empty(k)
    dex = np.empty(k)
    info = np.empty((4, 4))
    grad = np.empty(4)
    step = np.empty(4)
    th = np.empty(4)
    a = np.empty((4, 4))
    for i in range(n):
        d = crops[i]
        w_i = wm[i]
        e_i = ext[i]
        s = sig[i]
        # weighted linear start for (N, b) at the xcorr position
        _erf_w(oy[i], s, r, ey, dey)
        _erf_w(ox[i], s, r, ex, dex)
        th[0] = oy[i]
        th[1] = ox[i]
        npix = _linear_start(d, w_i, e_i, ey, ex, rn2, th)
        converged = False
        chi = 0.0
        for _ in range(n_iter):
            chi = _normal_eq(d, w_i, e_i, th, s, r, rn2, ey, dey, ex, dex, info, grad)
            _fisher_step(info, grad, a, step, th, lim)
            # converged: this step moved the position by < tol px (the next one would move
            # it by far less: Fisher scoring converges quadratically near the optimum)
            if abs(step[0]) < tol and abs(step[1]) < tol:
                converged = True
                break
        if not converged:
            chi = _normal_eq(d, w_i, e_i, th, s, r, rn2, ey, dey, ex, dex, info, grad)
        # (when converged, the information and χ² of the last iteration are used: they were
        # taken < tol px from the final position, a relative change of ~tol/σ ≤ 0.1 %)
        _crlb(info, a, grad, step, out[i], 4)
        out[i, 0] = th[0]
        out[i, 1] = th[1]
        out[i, 2] = th[2]
        out[i, 3] = th[3]
        out[i, 7] = chi / max(npix - 4.0, 1.0)


def fit_gaussian_fixed(
    crops: np.ndarray,
    weights: np.ndarray,
    oy: np.ndarray,
    ox: np.ndarray,
    sigma: np.ndarray,
    read_noise: float,
    n_iter: int,
    extra: np.ndarray | None,
    tol: float = 0.0,
) -> np.ndarray:
    """Compiled fixed-σ Gaussian MLE; returns (n, 8): dy, dx, N, b, var_y, var_x, var_N, χ²_red.

    ``tol`` > 0: stop a crop's iterations once a Fisher step moves its position by less than
    ``tol`` px on both axes (the remaining steps would move it by far less: Fisher scoring
    converges quadratically near the optimum); 0 = always ``n_iter`` steps.
    """
    n = crops.shape[0]
    d = np.ascontiguousarray(crops, dtype=np.float64)
    wm = np.ascontiguousarray(weights, dtype=np.float64)
    ext = np.zeros_like(d) if extra is None else np.ascontiguousarray(extra, dtype=np.float64)
    out = np.empty((n, 8))
    if n:
        _fit_gaussian_fixed(d, wm, ext, np.ascontiguousarray(oy, dtype=np.float64),
                            np.ascontiguousarray(ox, dtype=np.float64),
                            np.ascontiguousarray(sigma, dtype=np.float64),
                            float(read_noise) ** 2, int(n_iter), float(tol), out)
    return out


@njit(cache=True, nogil=True)
def _erf_ws(c, s, r, e, de, ds):  # pragma: no cover - compiled
    """:func:`_erf_w` plus the derivative in σ (edges shared between pixels)."""
    k = 2 * r + 1
    inv = 1.0 / (_SQ2 * s)
    kk = 1.0 / (_SQ2PI * s)
    h = 1.0 / (2 * s * s)
    b = -r - 0.5 - c
    eb = math.erf(b * inv)
    gb = math.exp(-(b * b) * h)
    for i in range(k):
        a = b + 1.0
        ea = math.erf(a * inv)
        ga = math.exp(-(a * a) * h)
        e[i] = 0.5 * (ea - eb)
        de[i] = -kk * (ga - gb)
        ds[i] = -kk / s * (a * ga - b * gb)
        b = a
        eb = ea
        gb = ga


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _normal_eq5(d, wm, th, r, rn2, ey, dey, dsy, ex, dex, dsx, info, grad):  # pragma: no cover
    """Information (5×5) and score of one crop at th = (y, x, N, b, σ); returns chi2 sum.

    Every Jacobian column is Σ_m α_m(u)·c_m(v) over the column factors
    c = (ex, dex, dsx, 1), so per row only the weighted sums S_mm' = Σ_v w c_m c_m' and
    R_m = Σ_v w (d − μ) c_m are accumulated.
    """
    k = 2 * r + 1
    _erf_ws(th[0], th[4], r, ey, dey, dsy)
    _erf_ws(th[1], th[4], r, ex, dex, dsx)
    amp = th[2]
    bg = th[3]
    for p in range(5):
        grad[p] = 0.0
        for q in range(5):
            info[p, q] = 0.0
    al = np.zeros((5, 4))
    sm = np.empty((4, 4))
    chi = 0.0
    for u in range(k):
        s00 = s01 = s02 = s03 = s11 = s12 = s13 = s22 = s23 = s33 = 0.0
        r0 = r1 = r2 = r3 = 0.0
        aeyu = amp * ey[u]
        for v in range(k):
            c0 = ex[v]
            c1 = dex[v]
            c2 = dsx[v]
            mu = bg + aeyu * c0
            w = wm[u, v] / (max(mu, 1e-3) + rn2)
            res = d[u, v] - mu
            w0 = w * c0
            w1 = w * c1
            w2 = w * c2
            wr = w * res
            s00 += w0 * c0
            s01 += w0 * c1
            s02 += w0 * c2
            s03 += w0
            s11 += w1 * c1
            s12 += w1 * c2
            s13 += w1
            s22 += w2 * c2
            s23 += w2
            s33 += w
            r0 += wr * c0
            r1 += wr * c1
            r2 += wr * c2
            r3 += wr
            chi += wr * res
        sm[0, 0] = s00
        sm[0, 1] = sm[1, 0] = s01
        sm[0, 2] = sm[2, 0] = s02
        sm[0, 3] = sm[3, 0] = s03
        sm[1, 1] = s11
        sm[1, 2] = sm[2, 1] = s12
        sm[1, 3] = sm[3, 1] = s13
        sm[2, 2] = s22
        sm[2, 3] = sm[3, 2] = s23
        sm[3, 3] = s33
        # columns: y = N dey·ex, x = N ey·dex, N = ey·ex, b = 1, σ = N dsy·ex + N ey·dsx
        al[0, 0] = amp * dey[u]
        al[1, 1] = aeyu
        al[2, 0] = ey[u]
        al[3, 3] = 1.0
        al[4, 0] = amp * dsy[u]
        al[4, 2] = aeyu
        for p in range(5):
            grad[p] += al[p, 0] * r0 + al[p, 1] * r1 + al[p, 2] * r2 + al[p, 3] * r3
            for m in range(4):
                if al[p, m] == 0.0:
                    continue
                t = 0.0
                for q in range(p, 5):
                    t = al[q, 0] * sm[m, 0] + al[q, 1] * sm[m, 1] + al[q, 2] * sm[m, 2] \
                        + al[q, 3] * sm[m, 3]
                    info[p, q] += al[p, m] * t
    for p in range(5):
        for q in range(p + 1, 5):
            info[q, p] = info[p, q]
    return chi


@njit(cache=True, nogil=True)
def _fit_gaussian_free(crops, wm, oy, ox, sig, rn2, n_iter, smin, smax, out):  # pragma: no cover
    n, k, _ = crops.shape
    r = k // 2
    lim = r - 0.5
    ey = np.empty(k)
    dey = np.empty(k)
    dsy = np.empty(k)
    ex = np.empty(k)
    dex = np.empty(k)
    dsx = np.empty(k)
    info = np.empty((5, 5))
    grad = np.empty(5)
    step = np.empty(5)
    th = np.empty(5)
    a = np.empty((5, 5))
    zero = np.zeros((k, k))  # no known extra photons in the free-σ fit
    for i in range(n):
        d = crops[i]
        w_i = wm[i]
        _erf_w(oy[i], sig[i], r, ey, dey)
        _erf_w(ox[i], sig[i], r, ex, dex)
        th[0] = oy[i]
        th[1] = ox[i]
        npix = _linear_start(d, w_i, zero, ey, ex, rn2, th)
        th[4] = sig[i]
        for _ in range(n_iter):
            _normal_eq5(d, w_i, th, r, rn2, ey, dey, dsy, ex, dex, dsx, info, grad)
            _fisher_step(info, grad, a, step, th, lim)
            th[4] = min(max(th[4], smin), smax)
        chi = _normal_eq5(d, w_i, th, r, rn2, ey, dey, dsy, ex, dex, dsx, info, grad)
        _crlb(info, a, grad, step, out[i], 5)
        for p in range(5):
            out[i, p] = th[p]
        out[i, 8] = chi / max(npix - 5.0, 1.0)


def fit_gaussian_free(crops, weights, oy, ox, sigma, read_noise, n_iter, smin, smax):
    """Compiled free-σ Gaussian MLE (no ``extra``); returns (n, 9): dy, dx, N, b, σ, var_y,
    var_x, var_N, χ²_red — the numbers of the numpy code in ``fit.fit_gaussian``."""
    n = crops.shape[0]
    out = np.empty((n, 9))
    if n:
        _fit_gaussian_free(np.ascontiguousarray(crops, dtype=np.float64),
                           np.ascontiguousarray(weights, dtype=np.float64),
                           np.ascontiguousarray(oy, dtype=np.float64),
                           np.ascontiguousarray(ox, dtype=np.float64),
                           np.ascontiguousarray(sigma, dtype=np.float64),
                           float(read_noise) ** 2, int(n_iter), float(smin), float(smax), out)
    return out
