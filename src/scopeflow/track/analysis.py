"""The trackpy walkthrough recipe on a localisation table, and the per-sample summary.

:func:`track_pipeline`: link (:mod:`scopeflow.track.link`) → keep tracks of at least
``min_length`` frames (default "auto": the fitted lags + 1) → subtract the ensemble drift →
ensemble and per-particle MSD → ``MSD = 4 D τ + c`` (:mod:`scopeflow.track.motion`) →
:func:`summarize_tracks`.

Positions are in pixels (y, x; origin at the centre of pixel (0, 0)); lengths in the
outputs are micrometres (``*_um``), times seconds (``*_s``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scopeflow.track.link import auto_min_length, filter_stubs, link
from scopeflow.track.motion import (
    MIN_MSD_FRAMES,
    DiffusionFit,
    add_um,
    compute_drift,
    diffusion_interval,
    diffusion_per_particle,
    ensemble_msd,
    fit_diffusion,
    msd_per_particle,
    subtract_drift,
)
from scopeflow.track.params import LinkParams

__all__ = ["summarize_tracks", "track_pipeline"]


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
    interval: tuple[float, float, float] | None = None,
    min_length: int | None = None,
) -> dict:
    """Per-sample summary: counts, track lengths, drift, ensemble and per-particle D.

    ``min_length`` is the track length the stubs filter applied (frames), reported as
    ``min_length`` (None when not given).

    ``interval`` is ``(se, low, high)`` of the ensemble D
    (:func:`~scopeflow.track.motion.diffusion_interval`), reported as ``D_se_um2_s``,
    ``D_ci_low_um2_s``, ``D_ci_high_um2_s`` (NaN when not given).
    """
    lengths = tracks.groupby("particle").size() if len(tracks) else pd.Series(dtype=int)
    out = {
        "n_frames": int(n_frames) if n_frames is not None else int(tracks["frame"].nunique()),
        "n_localizations": int(n_locs) if n_locs is not None else int(len(tracks)),
        "n_tracks": int(len(lengths)),
        "min_length": None if min_length is None else int(min_length),
        "median_track_length": float(lengths.median()) if len(lengths) else 0.0,
        "pixel_size_um": pixel_size_um,
        "fps": fps,
        "D_um2_s": fit.D_um2_s,
        "D_se_um2_s": (interval or (float("nan"),) * 3)[0],
        "D_ci_low_um2_s": (interval or (float("nan"),) * 3)[1],
        "D_ci_high_um2_s": (interval or (float("nan"),) * 3)[2],
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


def _drift_msd(t: pd.DataFrame, pixel_size_um: float, fps: float, max_lag: int, drift: bool):
    """Drift (trackpy's, if ``drift``), drift-corrected tracks, ensemble MSD, track spans."""
    dr = compute_drift(t) if drift and len(t) else pd.DataFrame(
        {"frame": np.sort(t["frame"].unique()) if len(t) else [], "y": 0.0, "x": 0.0})
    corr = subtract_drift(t, dr) if len(t) else t.assign(drift_y_px=[], drift_x_px=[])
    sub = bool(drift and len(t))
    ens = ensemble_msd(corr, pixel_size_um, fps, max_lag, drift_subtracted=sub)
    lengths = t.groupby("particle")["frame"].agg(lambda f: f.max() - f.min() + 1).to_numpy() \
        if len(t) else np.zeros(0, int)
    return corr, dr, ens, sub, lengths


def track_pipeline(
    locs: pd.DataFrame,
    pixel_size_um: float,
    fps: float,
    params: LinkParams | None = None,
    *,
    n_frames: int | None = None,
    **changes,
) -> dict:
    """Link → filter stubs → drift → MSD → diffusion, the trackpy walkthrough recipe.

    Parameters
    ----------
    locs : pandas.DataFrame
        Localisations (``frame, y, x, ...`` px).
    pixel_size_um, fps : float
        Calibration.
    params : LinkParams, optional
        Linking (``search_range_px``, ``memory``, ``adaptive_stop_px``), stubs
        (``min_length``: an int, or "auto" = the fitted lags + 1,
        :func:`~scopeflow.track.link.auto_min_length`), drift, MSD (``max_lag``) and fit
        (``fit_lags``) options (:class:`~scopeflow.track.params.LinkParams`). None: the
        defaults.
    n_frames : int, optional
        Frames in the movie (summary; caps ``min_length="auto"``; default: the frames
        spanned by ``locs``).
    **changes
        Fields of :class:`~scopeflow.track.params.LinkParams` to change, by name.

    Returns
    -------
    dict
        ``tracks`` (``particle, frame, y, x, y_um, x_um`` + localisation columns, measured
        positions, with ``drift_y_px, drift_x_px``), ``msd`` (per particle, long),
        ``ensemble`` (ensemble MSD), ``fit`` (DiffusionFit), ``diffusion`` (per particle),
        ``drift`` (per frame), ``summary`` (dict; with the bootstrap interval of D over
        tracks, :func:`~scopeflow.track.motion.diffusion_interval`).
    """
    p = (params or LinkParams()).with_changes(**changes)
    drift, max_lag, fit_lags = p.drift, p.max_lag, p.fit_lags
    linked = link(locs, p.search_range_px, memory=p.memory, adaptive_stop_px=p.adaptive_stop_px)
    min_length = p.min_length
    if min_length == "auto":
        span = n_frames if n_frames is not None else (
            int(locs["frame"].max() - locs["frame"].min() + 1) if len(locs) else None)
        if isinstance(fit_lags, str) and len(linked):
            # choose the lags on every track an MSD fit can use, then keep those reaching them
            t3 = filter_stubs(linked, MIN_MSD_FRAMES)
            _, _, ens3, _, len3 = _drift_msd(t3, pixel_size_um, fps, max_lag, drift)
            if len(ens3):
                fit_lags = fit_diffusion(ens3, fit_lags, lengths=len3).n_lags
        min_length = auto_min_length(fit_lags if not isinstance(fit_lags, str) else
                                     MIN_MSD_FRAMES - 1, span)
    t = filter_stubs(linked, int(min_length))
    corr, dr, ens, sub, lengths = _drift_msd(t, pixel_size_um, fps, max_lag, drift)
    fit = fit_diffusion(ens, fit_lags, lengths=lengths) if len(ens) else DiffusionFit(
        *(float("nan"),) * 4, 0)
    per_lags = fit.n_lags if isinstance(fit_lags, str) and fit.n_lags >= 2 else fit_lags
    ci = diffusion_interval(corr, pixel_size_um, fps, fit.n_lags, drift_subtracted=sub) \
        if len(ens) else None
    per = diffusion_per_particle(corr, pixel_size_um, fps, per_lags, drift_subtracted=sub)
    msd = msd_per_particle(corr, pixel_size_um, fps, max_lag, drift_subtracted=sub)
    tracks = t.copy()
    tracks["drift_y_px"] = corr["drift_y_px"].to_numpy() if len(t) else []
    tracks["drift_x_px"] = corr["drift_x_px"].to_numpy() if len(t) else []
    tracks = add_um(tracks, pixel_size_um)
    summary = summarize_tracks(tracks, ens, fit, per, n_frames=n_frames, n_locs=len(locs),
                               pixel_size_um=pixel_size_um, fps=fps, interval=ci,
                               min_length=int(min_length))
    return {"tracks": tracks, "msd": msd, "ensemble": ens, "fit": fit, "diffusion": per,
            "drift": dr, "summary": summary}
