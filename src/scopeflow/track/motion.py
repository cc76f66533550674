"""Drift removal, mean squared displacement and diffusion coefficients of bead tracks.

The drift is trackpy's (``trackpy.compute_drift``); the MSD is computed here, vectorised
over particles:

* ``msd_per_particle``: for each particle and lag τ = l/fps, the mean of
  ``Δy² + Δx²`` (µm²) over all pairs of frames l apart (gaps skipped).
* ``ensemble_msd``: all displacements of all particles pooled (each particle weighted by
  its number of displacements, as ``trackpy.emsd``). After drift subtraction
  (``drift_subtracted=True``) each lag is divided by the variance the subtraction removed:
  the drift of step s is the mean displacement of the n_s particles seen in both frames, so
  it holds 1/n_s of each of their own steps, and subtracting it scales a displacement's
  expected square by ``1 − 1/n_s`` (``1 + 1/n_s`` for a particle not in that mean); without
  this, a field of 20 beads would give a D 5 % low.
* ``fit_diffusion``: ``MSD = 2 d D τ + c`` (d = 2: ``4 D τ``; c absorbs the static
  localisation error ``2 d ε²`` and motion blur) by weighted least squares on the first
  lags, with weights ``n_disp / MSD_model²`` taken from the fitted line (weights from the
  noisy measured MSD would favour lags that happen to come out low and bias D down), plus
  the power law ``MSD = A τ^n`` (log-log fit, as ``trackpy.utils.fit_powerlaw``).
  ``max_lag="auto"`` picks the number of fitted lags that minimises the expected error of D
  for the measured reduced localisation error ``x = ε² / (D Δt)`` and the track lengths
  (Michalet, Phys Rev E 82:041914, 2010: few lags when x is small, more when it is large).
* ``msd_fit_error``: the expected standard error of that D for given track lengths, D, ε,
  Δt and fitted lags, computed exactly (not by simulation) from the covariance of the MSD
  estimates of Brownian tracks with Gaussian static error (sums over pairs of overlapping
  displacements).

Positions are in pixels (y, x; origin at the centre of pixel (0, 0)); lengths in the
outputs are micrometres (``*_um``), times seconds (``*_s``).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from scopeflow.errors import ScopeflowError
from scopeflow.track.link import _tp
from scopeflow.track.params import LinkParams

__all__ = [
    "MIN_MSD_FRAMES",
    "DiffusionFit",
    "add_um",
    "compute_drift",
    "diffusion_interval",
    "diffusion_per_particle",
    "ensemble_msd",
    "fit_diffusion",
    "msd_fit_error",
    "msd_per_particle",
    "optimal_fit_lags",
    "require_msd_frames",
    "subtract_drift",
]


def compute_drift(tracks: pd.DataFrame, smoothing: int = 0) -> pd.DataFrame:
    """Cumulative drift per frame (px) from the mean frame-to-frame displacement.

    Uses ``trackpy.compute_drift`` (particles present in consecutive frames).

    Returns
    -------
    pandas.DataFrame
        Columns ``frame, y, x`` (drift relative to the first frame, px); frames without
        information carry the previous value.
    """
    tp = _tp()
    frames = np.sort(tracks["frame"].unique()) if len(tracks) else np.zeros(0, int)
    if len(tracks) == 0:
        return pd.DataFrame({"frame": frames, "y": 0.0, "x": 0.0})
    df = tracks[["particle", "frame", "y", "x"]].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = tp.compute_drift(df, smoothing=smoothing, pos_columns=["y", "x"])
    d = d.reindex(frames).ffill().fillna(0.0)
    d.index.name = "frame"
    return d.reset_index()[["frame", "y", "x"]]


def subtract_drift(tracks: pd.DataFrame, drift: pd.DataFrame | None = None) -> pd.DataFrame:
    """Positions with the drift removed.

    Parameters
    ----------
    tracks : pandas.DataFrame
        Columns ``particle, frame, y, x``.
    drift : pandas.DataFrame, optional
        From :func:`compute_drift` (computed if None).

    Returns
    -------
    pandas.DataFrame
        A copy with ``y, x`` drift-corrected and columns ``drift_y_px, drift_x_px`` (the
        subtracted drift; measured = corrected + drift).
    """
    if drift is None:
        drift = compute_drift(tracks)
    out = tracks.copy()
    dd = drift.set_index("frame")
    dy = dd["y"].reindex(out["frame"]).fillna(0.0).to_numpy()
    dx = dd["x"].reindex(out["frame"]).fillna(0.0).to_numpy()
    out["y"] = out["y"].to_numpy() - dy
    out["x"] = out["x"].to_numpy() - dx
    out["drift_y_px"] = dy
    out["drift_x_px"] = dx
    return out


def add_um(tracks: pd.DataFrame, pixel_size_um: float) -> pd.DataFrame:
    """Add ``y_um, x_um`` (= px × pixel size) after ``y, x``."""
    out = tracks.copy()
    for c in ("y", "x"):
        out[f"{c}_um"] = out[c].to_numpy() * pixel_size_um
    first = [c for c in ("particle", "frame", "y", "x", "y_um", "x_um") if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


def _position_array(tracks: pd.DataFrame):
    """(n_particles, n_frames, 2) positions with NaN gaps; particle ids; first frame."""
    pid, inv = np.unique(tracks["particle"].to_numpy(), return_inverse=True)
    fr = tracks["frame"].to_numpy().astype(np.int64)
    f0 = int(fr.min())
    span = int(fr.max()) - f0 + 1
    pos = np.full((len(pid), span, 2), np.nan)
    pos[inv, fr - f0, 0] = tracks["y"].to_numpy()
    pos[inv, fr - f0, 1] = tracks["x"].to_numpy()
    return pos, pid, f0


def _drift_factors(pos: np.ndarray) -> np.ndarray:
    """Per-particle, per-step variance factor left by drift subtraction, (P, T-1).

    Step s (frame s -> s+1): the drift is the mean displacement of the n_s particles present
    in both frames (``compute_drift``), so after subtraction a particle's step keeps
    ``1 - 1/n_s`` of its variance if it is one of them, ``1 + 1/n_s`` if not.
    """
    present = np.isfinite(pos[..., 0])
    c = present[:, :-1] & present[:, 1:]
    n = c.sum(axis=0).astype(np.float64)
    inv = np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)
    return np.where(c, 1.0 - inv, 1.0 + inv)


def _msd_sums(tracks: pd.DataFrame, max_lag: int, drift_subtracted: bool = False):
    """Sums of squared displacements per particle and lag, with counts.

    ``cnt`` is the number of displacements; with ``drift_subtracted`` it is the *effective*
    number (each displacement counts by the mean drift factor of its steps, see
    :func:`_drift_factors`), so that ``sum / cnt`` is unbiased after drift subtraction.
    Also returns the raw counts.
    """
    pos, pid, _ = _position_array(tracks)
    span = pos.shape[1]
    lags = np.arange(1, min(max_lag, span - 1) + 1)
    sy = np.zeros((len(pid), len(lags)))
    sx = np.zeros_like(sy)
    cnt = np.zeros_like(sy)
    eff = np.zeros_like(sy)
    cum = None
    if drift_subtracted and span > 1:
        f = _drift_factors(pos)
        cum = np.concatenate([np.zeros((len(pid), 1)), np.cumsum(f, axis=1)], axis=1)
    for i, lag in enumerate(lags):
        d = pos[:, lag:] - pos[:, :-lag]
        ok = np.isfinite(d[..., 0])
        sy[:, i] = np.where(ok, d[..., 0] ** 2, 0).sum(1)
        sx[:, i] = np.where(ok, d[..., 1] ** 2, 0).sum(1)
        cnt[:, i] = ok.sum(1)
        if cum is not None:
            fac = (cum[:, lag:] - cum[:, :-lag]) / lag
            eff[:, i] = np.where(ok, fac, 0).sum(1)
    if cum is None:
        eff = cnt
    return pid, lags, sy, sx, eff, cnt


def msd_per_particle(
    tracks: pd.DataFrame, pixel_size_um: float, fps: float, max_lag: int = LinkParams.max_lag,
    *, drift_subtracted: bool = False,
) -> pd.DataFrame:
    """Mean squared displacement of each particle.

    Parameters
    ----------
    tracks : pandas.DataFrame
        Columns ``particle, frame, y, x`` (px; drift-corrected if wanted).
    pixel_size_um : float
        µm per px.
    fps : float
        Frames per second.
    max_lag : int
        Largest lag (frames).
    drift_subtracted : bool
        The positions had the ensemble drift of these same tracks subtracted
        (:func:`subtract_drift` after :func:`compute_drift`): undo the variance it removed.

    Returns
    -------
    pandas.DataFrame
        Long format: ``particle, lag, lag_s, msd_um2, n_disp`` (rows with ``n_disp > 0``).
    """
    if len(tracks) == 0:
        return pd.DataFrame(columns=["particle", "lag", "lag_s", "msd_um2", "n_disp"])
    pid, lags, sy, sx, eff, cnt = _msd_sums(tracks, max_lag, drift_subtracted)
    with np.errstate(invalid="ignore", divide="ignore"):
        msd = (sy + sx) / eff * pixel_size_um**2
    df = pd.DataFrame({
        "particle": np.repeat(pid, len(lags)),
        "lag": np.tile(lags, len(pid)),
        "lag_s": np.tile(lags / fps, len(pid)),
        "msd_um2": msd.ravel(),
        "n_disp": cnt.ravel().astype(np.int64),
    })
    return df.loc[df["n_disp"] > 0].reset_index(drop=True)


def ensemble_msd(
    tracks: pd.DataFrame, pixel_size_um: float, fps: float, max_lag: int = LinkParams.max_lag,
    *, drift_subtracted: bool = False,
) -> pd.DataFrame:
    """Ensemble MSD: all displacements of all particles pooled.

    Parameters
    ----------
    tracks : pandas.DataFrame
        Columns ``particle, frame, y, x`` (px).
    pixel_size_um, fps : float
        Calibration.
    max_lag : int
        Largest lag (frames).
    drift_subtracted : bool
        The positions had the ensemble drift of these same tracks subtracted: divide each
        lag by the mean fraction of variance the subtraction left (``1 − 1/n_s`` per step).

    Returns
    -------
    pandas.DataFrame
        ``lag, lag_s, msd_um2, msd_y_um2, msd_x_um2, n_disp`` (µm², s).
    """
    if len(tracks) == 0:
        return pd.DataFrame(columns=["lag", "lag_s", "msd_um2", "msd_y_um2", "msd_x_um2",
                                     "n_disp"])
    _, lags, sy, sx, eff, cnt = _msd_sums(tracks, max_lag, drift_subtracted)
    n = cnt.sum(0)
    ne = eff.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        my = sy.sum(0) / ne * pixel_size_um**2
        mx = sx.sum(0) / ne * pixel_size_um**2
    df = pd.DataFrame({"lag": lags, "lag_s": lags / fps, "msd_um2": my + mx, "msd_y_um2": my,
                       "msd_x_um2": mx, "n_disp": n.astype(np.int64)})
    return df.loc[df["n_disp"] > 0].reset_index(drop=True)


class DiffusionFit(NamedTuple):
    """Result of :func:`fit_diffusion`.

    Attributes
    ----------
    D_um2_s : float
        Diffusion coefficient from ``MSD = 2 d D τ + c`` (µm²/s).
    exponent : float
        Power-law exponent n of ``MSD = A τ^n`` (1 = free diffusion).
    A_um2_s : float
        Power-law prefactor A (µm²/s^n; ``A = 2 d D`` for free diffusion).
    offset_um2 : float
        Intercept c of the linear fit (µm²): static error ``2 d ε²`` minus motion blur.
    n_lags : int
        Lags used.
    """

    D_um2_s: float
    exponent: float
    A_um2_s: float
    offset_um2: float
    n_lags: int


def _wls_line(t: np.ndarray, y: np.ndarray, n: np.ndarray, intercept: bool):
    """Line fit with weights ``n / model²`` (model = the fitted line itself, 3 rounds).

    The first round weights by counts only; later rounds use the fitted MSD, never the
    measured one (measured weights favour lags that come out low and bias the slope down).
    """
    X = np.stack([t, np.ones_like(t)], 1) if intercept else t[:, None]
    w = n / np.maximum(np.mean(y), 1e-300) ** 2
    coef = np.zeros(X.shape[1])
    for _ in range(3):
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
        pred = X @ coef
        floor = 0.05 * max(float(np.mean(np.abs(y))), 1e-300)
        w = n / np.maximum(pred, floor) ** 2
    return float(coef[0]), (float(coef[1]) if intercept else 0.0)


def fit_diffusion(
    msd: pd.DataFrame,
    max_lag: int | str = LinkParams.fit_lags,
    *,
    ndim: int = 2,
    intercept: bool = True,
    lengths: np.ndarray | None = None,
    max_auto_lags: int = 20,
) -> DiffusionFit:
    """Fit the diffusion coefficient and the power-law exponent to an MSD curve.

    Parameters
    ----------
    msd : pandas.DataFrame
        Columns ``lag_s, msd_um2`` and optionally ``lag`` and ``n_disp`` (weights), e.g. from
        :func:`ensemble_msd` or one particle of :func:`msd_per_particle`.
    max_lag : int or "auto"
        Fit the first ``max_lag`` lags (early lags: most displacements, least correlated);
        "auto": the number that minimises the expected error of D (:func:`optimal_fit_lags`)
        for the reduced localisation error ``x = c / (2 ndim D Δt)`` of a first fit on 4 lags
        (2 when x is small; more when the static error dominates).
    ndim : int
        Dimensions (MSD = 2·ndim·D·τ).
    intercept : bool
        Fit an offset c (static localisation error / motion blur); else through the origin.
    lengths : ndarray, optional
        Track lengths (frames), for ``max_lag="auto"``; default: equal tracks inferred from
        ``n_disp`` of lags 1 and 2.
    max_auto_lags : int
        Most lags "auto" may choose.

    Returns
    -------
    DiffusionFit
        ``(D_um2_s, exponent, A_um2_s, offset_um2, n_lags)``; NaN when fewer than 2 lags.
        The power law ``A τ^n`` is fitted on ``max(n_lags, 10)`` lags (its exponent needs a
        range of lags).
    """
    m_all = msd.sort_values("lag_s")
    m_all = m_all.loc[np.isfinite(m_all["msd_um2"]) & (m_all["msd_um2"] > 0)]
    if isinstance(max_lag, str):
        if max_lag != "auto":
            raise ValueError(f"max_lag must be an int or 'auto', got {max_lag!r}")
        first = fit_diffusion(m_all, 4, ndim=ndim, intercept=intercept)
        n_lags = 10
        if len(m_all) >= 3 and np.isfinite(first.D_um2_s) and first.D_um2_s > 0:
            t1 = float(m_all["lag_s"].iloc[0])
            lag1 = float(m_all["lag"].iloc[0]) if "lag" in m_all.columns else 1.0
            dt = t1 / lag1
            x = max(first.offset_um2, 0.0) / (2 * ndim) / (first.D_um2_s * dt)
            if lengths is None:
                lengths = _lengths_from_counts(m_all)
            n_lags = optimal_fit_lags(lengths, x, max_lags=min(max_auto_lags, len(m_all)),
                                      ndim=ndim)
        max_lag = n_lags
    m = m_all.iloc[: int(max_lag)]
    t = m["lag_s"].to_numpy(float)
    y = m["msd_um2"].to_numpy(float)
    if len(t) < 2:
        return DiffusionFit(float("nan"), float("nan"), float("nan"), float("nan"), len(t))
    n = m["n_disp"].to_numpy(float) if "n_disp" in m.columns else np.ones_like(t)
    slope, off = _wls_line(t, y, n, intercept)
    mp = m_all.iloc[: max(len(t), 10)]
    tp_ = mp["lag_s"].to_numpy(float)
    lw = np.sqrt(mp["n_disp"].to_numpy(float)) if "n_disp" in mp.columns else np.ones_like(tp_)
    pc, *_ = np.linalg.lstsq(np.stack([np.log(tp_), np.ones_like(tp_)], 1) * lw[:, None],
                             np.log(mp["msd_um2"].to_numpy(float)) * lw, rcond=None)
    return DiffusionFit(slope / (2 * ndim), float(pc[0]), float(np.exp(pc[1])), off, len(t))


def diffusion_interval(
    tracks: pd.DataFrame, pixel_size_um: float, fps: float, n_lags: int, *,
    drift_subtracted: bool = False, intercept: bool = True, n_boot: int = 400, seed: int = 0,
) -> tuple[float, float, float]:
    """Standard error and 95 % interval of the ensemble D by resampling whole tracks.

    The tracks are drawn with replacement (a bootstrap over particles), each draw's ensemble
    MSD is refitted as :func:`fit_diffusion` does on ``n_lags`` lags, and the spread of those
    D is reported. Unlike the Brownian model error (:func:`msd_fit_error`) this also carries
    what the model leaves out: beads that differ in D (size, distance to a wall, focus), and
    the correlation of the lags of one track.

    Parameters
    ----------
    tracks : pandas.DataFrame
        ``particle, frame, y, x`` (px), as given to :func:`ensemble_msd`.
    pixel_size_um, fps : float
        Calibration.
    n_lags : int
        Lags fitted (``DiffusionFit.n_lags``).
    drift_subtracted, intercept : bool
        As for :func:`ensemble_msd` and :func:`fit_diffusion`.
    n_boot : int
        Resamples.
    seed : int
        Random seed (the interval is reproducible).

    Returns
    -------
    (float, float, float)
        ``(se, low, high)`` in µm²/s: standard deviation of the resampled D and its 2.5 and
        97.5 percentiles; NaN with fewer than 2 tracks or 2 lags.
    """
    nan = (float("nan"),) * 3
    if len(tracks) == 0 or int(n_lags) < 2:
        return nan
    _, lags, sy, sx, eff, cnt = _msd_sums(tracks, int(n_lags), drift_subtracted)
    if len(sy) < 2 or len(lags) < 2:
        return nan
    w = np.random.default_rng(seed).multinomial(len(sy), np.full(len(sy), 1.0 / len(sy)),
                                                size=int(n_boot)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        msd = (w @ (sy + sx)) / (w @ eff) * pixel_size_um**2
    n = w @ cnt
    t = lags / fps
    d = []  # 2-D: MSD = 4 D tau + c
    for m, k in zip(msd, n, strict=True):
        ok = np.isfinite(m) & (m > 0) & (k > 0)
        if ok.sum() >= 2:
            d.append(_wls_line(t[ok], m[ok], k[ok], intercept)[0] / 4.0)
    if len(d) < 2:
        return nan
    d = np.asarray(d)
    return float(np.std(d, ddof=1)), float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def _lengths_from_counts(m: pd.DataFrame) -> np.ndarray:
    """Equal track lengths with the same displacement counts at lags 1 and 2."""
    if "n_disp" not in m.columns or len(m) < 2:
        return np.array([100])
    n1, n2 = float(m["n_disp"].iloc[0]), float(m["n_disp"].iloc[1])
    k = max(int(round(n1 - n2)), 1)  # tracks (each loses one displacement per lag)
    return np.full(k, max(int(round(n1 / k)) + 1, 3))


def _msd_cov(lengths: np.ndarray, n_lags: int, q: float, s2: float) -> np.ndarray:
    """Covariance (n_lags²) of the per-axis pooled MSD at lags 1..n_lags.

    One track of L positions, Brownian steps of variance q per axis, white static error of
    variance s2: S_l = Σ_i (x_{i+l} − x_i)² has Cov(S_l, S_m) = 2 Σ_{i,j} C(i, j)², with
    C = Cov(x_{i+l} − x_i, x_{j+m} − x_j) = q·|[i, i+l) ∩ [j, j+m)| + s2·(δ_{i+l,j+m} −
    δ_{i+l,j} − δ_{i,j+m} + δ_{i,j}), which depends on k = j − i only and vanishes outside
    −m ≤ k ≤ l; the pooled MSD divides the summed S by the summed counts.
    """
    L, cnt = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)
    lag = np.arange(1, n_lags + 1)
    ll = lag[:, None, None]
    mm = lag[None, :, None]
    k = np.arange(-n_lags, n_lags + 1)[None, None, :]
    overlap = np.clip(np.minimum(ll, k + mm) - np.maximum(0, k), 0, None)
    noise = ((ll == k + mm).astype(float) - (ll == k) - (k + mm == 0) + (k == 0))
    C2 = (q * overlap + s2 * noise) ** 2  # (P, P, K)
    cov = np.zeros((n_lags, n_lags))
    for Li, ci in zip(L, cnt, strict=True):
        mult = np.minimum(Li - ll - 1, Li - mm - 1 - k) - np.maximum(0, -k) + 1
        cov += ci * 2.0 * (np.clip(mult, 0, None) * C2).sum(axis=2)
    n = np.array([float((cnt * np.clip(L - lg, 0, None)).sum()) for lg in lag])
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.outer(n, n), n


def msd_fit_error(
    lengths: np.ndarray,
    D_um2_s: float,
    static_error_um: float,
    dt_s: float,
    fit_lags: int,
    *,
    ndim: int = 2,
    intercept: bool = True,
) -> float:
    """Expected relative standard error of D from :func:`fit_diffusion` on an ensemble MSD.

    Exact for free Brownian tracks (no gaps) with white Gaussian static error, for the
    weighted fit with weights ``n_disp / MSD²`` at the expected MSD (what
    :func:`fit_diffusion` converges to); the error depends only on the track lengths, the
    number of fitted lags and ``x = ε² / (D Δt)``.

    Parameters
    ----------
    lengths : array of int
        Positions per track (frames).
    D_um2_s : float
        Diffusion coefficient.
    static_error_um : float
        Localisation error ε per axis (µm).
    dt_s : float
        Frame interval (s).
    fit_lags : int
        Lags fitted.
    ndim : int
        Dimensions.
    intercept : bool
        Fit ``MSD = 2 ndim D τ + c`` (True) or through the origin.

    Returns
    -------
    float
        σ(D̂) / D (NaN if fewer than 2 lags have displacements).
    """
    q = 2.0 * D_um2_s * dt_s
    s2 = float(static_error_um) ** 2
    cov1, n = _msd_cov(lengths, int(fit_lags), q, s2)
    ok = n > 0
    if ok.sum() < 2:
        return float("nan")
    lag = np.arange(1, int(fit_lags) + 1)[ok]
    cov = ndim * cov1[np.ix_(ok, ok)]  # sum of ndim independent axes
    t = lag * dt_s
    e = ndim * (q * lag + 2 * s2)
    w = n[ok] / e**2
    X = np.stack([t, np.ones_like(t)], 1) if intercept else t[:, None]
    c = np.linalg.solve(X.T @ (X * w[:, None]), (X * w[:, None]).T)[0]
    return float(math.sqrt(max(c @ cov @ c, 0.0)) / (2 * ndim) / D_um2_s)


def optimal_fit_lags(
    lengths: np.ndarray, x: float, *, max_lags: int = 20, ndim: int = 2,
    intercept: bool = True,
) -> int:
    """Number of fitted lags (≥ 2) minimising :func:`msd_fit_error` for ``x = ε²/(D Δt)``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    top = int(min(max_lags, max(int(lengths.max()) - 1, 2))) if len(lengths) else 2
    best, best_p = math.inf, 2
    for p in range(2, max(top, 2) + 1):
        err = msd_fit_error(lengths, 1.0, math.sqrt(max(x, 0.0)), 1.0, p, ndim=ndim,
                            intercept=intercept)
        if np.isfinite(err) and err < best - 1e-12:
            best, best_p = err, p
    return best_p


def diffusion_per_particle(
    tracks: pd.DataFrame,
    pixel_size_um: float,
    fps: float,
    max_lag: int = LinkParams.fit_lags,
    *,
    intercept: bool = False,
    drift_subtracted: bool = False,
) -> pd.DataFrame:
    """Per-particle D and exponent from each particle's MSD (first ``max_lag`` lags).

    Short tracks give noisy values; the default fits through the origin (``intercept=False``)
    to keep them stable.

    Returns
    -------
    pandas.DataFrame
        ``particle, n_frames, D_um2_s, exponent, A_um2_s, offset_um2, n_lags``.
    """
    cols = ["particle", "n_frames", "D_um2_s", "exponent", "A_um2_s", "offset_um2", "n_lags"]
    if len(tracks) == 0:
        return pd.DataFrame(columns=cols)
    msd = msd_per_particle(tracks, pixel_size_um, fps, max_lag,
                           drift_subtracted=drift_subtracted)
    nfr = tracks.groupby("particle")["frame"].size()
    rows = []
    for pid, g in msd.groupby("particle", sort=True):
        f = fit_diffusion(g, max_lag, intercept=intercept)
        rows.append((pid, int(nfr.get(pid, 0)), *f))
    return pd.DataFrame(rows, columns=cols)


#: Fewest frames an MSD fit needs: two lags (MSD = 4 D tau + c has two unknowns).
MIN_MSD_FRAMES = 3


def require_msd_frames(n_frames: int | None, source: object) -> None:
    """Stop with one line when a movie is too short for an MSD fit.

    Parameters
    ----------
    n_frames : int or None
        Frames of the movie (None: unknown, not checked).
    source : object
        The movie (path or name) the message names.

    Raises
    ------
    scopeflow.errors.ScopeflowError
        ``n_frames`` < :data:`MIN_MSD_FRAMES`.
    """
    if n_frames is not None and int(n_frames) < MIN_MSD_FRAMES:
        raise ScopeflowError(
            f"{source}: {int(n_frames)} frame(s); an MSD and diffusion coefficient need at least "
            f"{MIN_MSD_FRAMES} frames (two lags); give a longer movie"
        )
