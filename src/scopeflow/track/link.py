"""Linking localisations into trajectories, drift removal, MSD and diffusion coefficients.

Linking is trackpy's (``trackpy.link``, Crocker–Grier nearest-neighbour with memory and
adaptive search); the MSD is computed here, vectorised over particles:

* ``msd_per_particle``: for each particle and lag τ = l/fps, the mean of
  ``Δy² + Δx²`` (µm²) over all pairs of frames l apart (gaps skipped).
* ``ensemble_msd``: all displacements of all particles pooled (each particle weighted by
  its number of displacements, as ``trackpy.emsd``).
* ``fit_diffusion``: ``MSD = 2 d D τ + c`` (d = 2: ``4 D τ``; c absorbs the static
  localisation error ``2 d ε²`` and motion blur) by weighted least squares on the first
  lags, plus the power law ``MSD = A τ^n`` (log-log fit, as ``trackpy.utils.fit_powerlaw``).

Positions are in pixels (y, x; origin at the centre of pixel (0, 0)); lengths in the
outputs are micrometres (``*_um``), times seconds (``*_s``).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "link",
    "filter_stubs",
    "compute_drift",
    "subtract_drift",
    "add_um",
    "msd_per_particle",
    "ensemble_msd",
    "fit_diffusion",
    "DiffusionFit",
    "diffusion_per_particle",
    "summarize_tracks",
    "track_pipeline",
    "compare_tracks",
]


def _tp():
    import trackpy

    trackpy.quiet()
    return trackpy


def link(
    locs: pd.DataFrame,
    search_range: float,
    memory: int = 3,
    adaptive_stop: float | None = None,
    adaptive_step: float = 0.95,
    **kwargs,
) -> pd.DataFrame:
    """Link localisations into trajectories with ``trackpy.link``.

    Parameters
    ----------
    locs : pandas.DataFrame
        Localisations with columns ``frame, y, x`` (px) and any others (kept).
    search_range : float
        Largest displacement between linked frames (px).
    memory : int
        Frames a particle may vanish and still keep its id.
    adaptive_stop : float, optional
        Smallest search range trackpy may shrink to when a subnetwork is too large (px).
    adaptive_step : float
        Factor by which the search range shrinks in adaptive search.
    **kwargs
        Passed to ``trackpy.link`` (e.g. ``link_strategy``, ``neighbor_strategy``).

    Returns
    -------
    pandas.DataFrame
        ``locs`` plus an integer ``particle`` column, sorted by (particle, frame), with a
        fresh RangeIndex; columns ``particle, frame, y, x`` first.
    """
    tp = _tp()
    if len(locs) == 0:
        out = locs.copy()
        out.insert(0, "particle", pd.Series(dtype=np.int64))
        return out
    df = locs.reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = tp.link(df, search_range, memory=memory, adaptive_stop=adaptive_stop,
                    adaptive_step=adaptive_step, pos_columns=["y", "x"], t_column="frame",
                    **kwargs)
    t = t.reset_index(drop=True)
    t["particle"] = t["particle"].astype(np.int64)
    first = ["particle", "frame", "y", "x"]
    t = t[first + [c for c in t.columns if c not in first]]
    return t.sort_values(["particle", "frame"], kind="stable", ignore_index=True)


def filter_stubs(tracks: pd.DataFrame, threshold: int = 25) -> pd.DataFrame:
    """Keep trajectories present in at least ``threshold`` frames (``trackpy.filter_stubs``)."""
    if len(tracks) == 0:
        return tracks.copy()
    n = tracks.groupby("particle")["frame"].transform("size")
    return tracks.loc[n >= threshold].reset_index(drop=True)


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


def _msd_sums(tracks: pd.DataFrame, max_lag: int):
    pos, pid, _ = _position_array(tracks)
    span = pos.shape[1]
    lags = np.arange(1, min(max_lag, span - 1) + 1)
    sy = np.zeros((len(pid), len(lags)))
    sx = np.zeros_like(sy)
    cnt = np.zeros_like(sy)
    for i, lag in enumerate(lags):
        d = pos[:, lag:] - pos[:, :-lag]
        ok = np.isfinite(d[..., 0])
        sy[:, i] = np.where(ok, d[..., 0] ** 2, 0).sum(1)
        sx[:, i] = np.where(ok, d[..., 1] ** 2, 0).sum(1)
        cnt[:, i] = ok.sum(1)
    return pid, lags, sy, sx, cnt


def msd_per_particle(
    tracks: pd.DataFrame, pixel_size_um: float, fps: float, max_lag: int = 100
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

    Returns
    -------
    pandas.DataFrame
        Long format: ``particle, lag, lag_s, msd_um2, n_disp`` (rows with ``n_disp > 0``).
    """
    if len(tracks) == 0:
        return pd.DataFrame(columns=["particle", "lag", "lag_s", "msd_um2", "n_disp"])
    pid, lags, sy, sx, cnt = _msd_sums(tracks, max_lag)
    with np.errstate(invalid="ignore", divide="ignore"):
        msd = (sy + sx) / cnt * pixel_size_um**2
    df = pd.DataFrame({
        "particle": np.repeat(pid, len(lags)),
        "lag": np.tile(lags, len(pid)),
        "lag_s": np.tile(lags / fps, len(pid)),
        "msd_um2": msd.ravel(),
        "n_disp": cnt.ravel().astype(np.int64),
    })
    return df.loc[df["n_disp"] > 0].reset_index(drop=True)


def ensemble_msd(
    tracks: pd.DataFrame, pixel_size_um: float, fps: float, max_lag: int = 100
) -> pd.DataFrame:
    """Ensemble MSD: all displacements of all particles pooled.

    Returns
    -------
    pandas.DataFrame
        ``lag, lag_s, msd_um2, msd_y_um2, msd_x_um2, n_disp`` (µm², s).
    """
    if len(tracks) == 0:
        return pd.DataFrame(columns=["lag", "lag_s", "msd_um2", "msd_y_um2", "msd_x_um2",
                                     "n_disp"])
    _, lags, sy, sx, cnt = _msd_sums(tracks, max_lag)
    n = cnt.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        my = sy.sum(0) / n * pixel_size_um**2
        mx = sx.sum(0) / n * pixel_size_um**2
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


def fit_diffusion(
    msd: pd.DataFrame,
    max_lag: int = 10,
    *,
    ndim: int = 2,
    intercept: bool = True,
) -> DiffusionFit:
    """Fit the diffusion coefficient and the power-law exponent to an MSD curve.

    Parameters
    ----------
    msd : pandas.DataFrame
        Columns ``lag_s, msd_um2`` and optionally ``n_disp`` (weights), e.g. from
        :func:`ensemble_msd` or one particle of :func:`msd_per_particle`.
    max_lag : int
        Use the first ``max_lag`` lags (early lags: most displacements, least correlated).
    ndim : int
        Dimensions (MSD = 2·ndim·D·τ).
    intercept : bool
        Fit an offset c (static localisation error / motion blur); else through the origin.

    Returns
    -------
    DiffusionFit
        ``(D_um2_s, exponent, A_um2_s, offset_um2, n_lags)``; NaN when fewer than 2 lags.
    """
    m = msd.sort_values("lag_s").iloc[:max_lag]
    m = m.loc[np.isfinite(m["msd_um2"]) & (m["msd_um2"] > 0)]
    t = m["lag_s"].to_numpy(float)
    y = m["msd_um2"].to_numpy(float)
    if len(t) < 2:
        return DiffusionFit(float("nan"), float("nan"), float("nan"), float("nan"), len(t))
    # weights: number of displacements / variance ∝ MSD² (a lag's error grows with its MSD)
    w = m["n_disp"].to_numpy(float) if "n_disp" in m.columns else np.ones_like(t)
    w = w / np.maximum(y, 1e-300) ** 2
    if intercept:
        X = np.stack([t, np.ones_like(t)], 1)
    else:
        X = t[:, None]
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    slope = float(coef[0])
    off = float(coef[1]) if intercept else 0.0
    lw = np.sqrt(m["n_disp"].to_numpy(float)) if "n_disp" in m.columns else np.ones_like(t)
    pc, *_ = np.linalg.lstsq(np.stack([np.log(t), np.ones_like(t)], 1) * lw[:, None],
                             np.log(y) * lw, rcond=None)
    return DiffusionFit(slope / (2 * ndim), float(pc[0]), float(np.exp(pc[1])), off, len(t))


def diffusion_per_particle(
    tracks: pd.DataFrame,
    pixel_size_um: float,
    fps: float,
    max_lag: int = 10,
    *,
    intercept: bool = False,
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
    msd = msd_per_particle(tracks, pixel_size_um, fps, max_lag)
    nfr = tracks.groupby("particle")["frame"].size()
    rows = []
    for pid, g in msd.groupby("particle", sort=True):
        f = fit_diffusion(g, max_lag, intercept=intercept)
        rows.append((pid, int(nfr.get(pid, 0)), *f))
    return pd.DataFrame(rows, columns=cols)


def summarize_tracks(
    tracks: pd.DataFrame,
    ensemble: pd.DataFrame,
    fit: DiffusionFit,
    per_particle: pd.DataFrame | None = None,
    *,
    n_frames: int | None = None,
    n_locs: int | None = None,
    pixel_size_um: float | None = None,
    fps: float | None = None,
) -> dict:
    """Per-sample summary: counts, track lengths, drift, ensemble and per-particle D."""
    lengths = tracks.groupby("particle").size() if len(tracks) else pd.Series(dtype=int)
    out = {
        "n_frames": int(n_frames) if n_frames is not None else int(tracks["frame"].nunique()),
        "n_localizations": int(n_locs) if n_locs is not None else int(len(tracks)),
        "n_tracks": int(len(lengths)),
        "median_track_length": float(lengths.median()) if len(lengths) else 0.0,
        "pixel_size_um": pixel_size_um,
        "fps": fps,
        "D_um2_s": fit.D_um2_s,
        "exponent": fit.exponent,
        "A_um2_s": fit.A_um2_s,
        "msd_offset_um2": fit.offset_um2,
        "fit_lags": fit.n_lags,
    }
    if "ep_px" in tracks.columns and len(tracks):
        out["median_ep_px"] = float(tracks["ep_px"].median())
    if "drift_y_px" in tracks.columns and len(tracks):
        last = tracks.sort_values("frame").iloc[-1]
        out["drift_y_px"] = float(last["drift_y_px"])
        out["drift_x_px"] = float(last["drift_x_px"])
    if per_particle is not None and len(per_particle):
        d = per_particle["D_um2_s"].dropna()
        out["D_particle_median_um2_s"] = float(d.median()) if len(d) else float("nan")
        out["D_particle_iqr_um2_s"] = (
            float(d.quantile(0.75) - d.quantile(0.25)) if len(d) else float("nan"))
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in out.items()}


def track_pipeline(
    locs: pd.DataFrame,
    pixel_size_um: float,
    fps: float,
    *,
    search_range: float = 5.0,
    memory: int = 3,
    adaptive_stop: float | None = None,
    min_length: int = 25,
    drift: bool = True,
    max_lag: int = 100,
    fit_lags: int = 10,
    n_frames: int | None = None,
) -> dict:
    """Link → filter stubs → drift → MSD → diffusion, the trackpy walkthrough recipe.

    Parameters
    ----------
    locs : pandas.DataFrame
        Localisations (``frame, y, x, ...`` px).
    pixel_size_um, fps : float
        Calibration.
    search_range, memory, adaptive_stop
        Linking (px, frames, px).
    min_length : int
        Keep tracks with at least this many frames (the walkthrough's 25).
    drift : bool
        Subtract the ensemble drift before the MSD.
    max_lag : int
        Largest MSD lag (frames).
    fit_lags : int
        Lags used by :func:`fit_diffusion`.
    n_frames : int, optional
        Frames in the movie (summary).

    Returns
    -------
    dict
        ``tracks`` (``particle, frame, y, x, y_um, x_um`` + localisation columns, measured
        positions, with ``drift_y_px, drift_x_px``), ``msd`` (per particle, long),
        ``ensemble`` (ensemble MSD), ``fit`` (DiffusionFit), ``diffusion`` (per particle),
        ``drift`` (per frame), ``summary`` (dict).
    """
    t = link(locs, search_range, memory=memory, adaptive_stop=adaptive_stop)
    t = filter_stubs(t, min_length)
    dr = compute_drift(t) if drift and len(t) else pd.DataFrame(
        {"frame": np.sort(t["frame"].unique()) if len(t) else [], "y": 0.0, "x": 0.0})
    corr = subtract_drift(t, dr) if len(t) else t.assign(drift_y_px=[], drift_x_px=[])
    ens = ensemble_msd(corr, pixel_size_um, fps, max_lag)
    fit = fit_diffusion(ens, fit_lags) if len(ens) else DiffusionFit(*(float("nan"),) * 4, 0)
    per = diffusion_per_particle(corr, pixel_size_um, fps, fit_lags)
    msd = msd_per_particle(corr, pixel_size_um, fps, max_lag)
    tracks = t.copy()
    tracks["drift_y_px"] = corr["drift_y_px"].to_numpy() if len(t) else []
    tracks["drift_x_px"] = corr["drift_x_px"].to_numpy() if len(t) else []
    tracks = add_um(tracks, pixel_size_um)
    summary = summarize_tracks(tracks, ens, fit, per, n_frames=n_frames, n_locs=len(locs),
                               pixel_size_um=pixel_size_um, fps=fps)
    return {"tracks": tracks, "msd": msd, "ensemble": ens, "fit": fit, "diffusion": per,
            "drift": dr, "summary": summary}


def compare_tracks(tracks: pd.DataFrame, truth: pd.DataFrame, max_dist: float = 1.0) -> dict:
    """Track quality against simulated truth.

    Every localisation is matched one-to-one (per frame, within ``max_dist`` px) to a true
    bead. A true trajectory covered by k different linked ids counts ``k - 1`` breaks;
    a linked id covering several true particles counts as a merge for each extra one.

    Returns
    -------
    dict
        ``n_true_tracks``, ``n_tracks``, ``broken`` (Σ k − 1), ``merged``, ``matched_frac``.
    """
    from scopeflow.track.beadnet import match_points

    pairs = []
    for f, g in tracks.groupby("frame"):
        tg = truth.loc[truth["frame"] == f]
        if len(tg) == 0:
            continue
        i, j = match_points(g[["y", "x"]].to_numpy(), tg[["y", "x"]].to_numpy(), max_dist)
        pairs.append(pd.DataFrame({"linked": g["particle"].to_numpy()[i],
                                   "true": tg["particle"].to_numpy()[j]}))
    if not pairs:
        return {"n_true_tracks": int(truth["particle"].nunique()), "n_tracks": 0, "broken": 0,
                "merged": 0, "matched_frac": 0.0}
    pr = pd.concat(pairs, ignore_index=True)
    broken = int((pr.groupby("true")["linked"].nunique() - 1).sum())
    merged = int((pr.groupby("linked")["true"].nunique() - 1).sum())
    return {
        "n_true_tracks": int(truth["particle"].nunique()),
        "n_tracks": int(tracks["particle"].nunique()),
        "broken": broken,
        "merged": merged,
        "matched_frac": float(len(pr) / max(len(tracks), 1)),
    }
