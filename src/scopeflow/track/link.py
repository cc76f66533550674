"""Linking localisations into trajectories (trackpy) and dropping short ones.

Linking is trackpy's (``trackpy.link``, Crocker–Grier nearest-neighbour with memory and
adaptive search); :func:`filter_stubs` keeps trajectories present in at least a given
number of frames, as ``trackpy.filter_stubs``, and :func:`auto_min_length` is the length
``min_length="auto"`` stands for (the fitted MSD lags + 1). Drift, MSD and diffusion
coefficients are in :mod:`scopeflow.track.motion`; the whole recipe in
:mod:`scopeflow.track.analysis`.

Positions are in pixels (y, x; origin at the centre of pixel (0, 0)).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from scopeflow.track.params import LinkParams

__all__ = ["auto_min_length", "filter_stubs", "link"]


def _tp():
    import trackpy

    trackpy.quiet()
    return trackpy


def link(
    locs: pd.DataFrame,
    search_range_px: float,
    memory: int = LinkParams.memory,
    adaptive_stop_px: float | None = None,
    adaptive_step: float = 0.95,
    **kwargs,
) -> pd.DataFrame:
    """Link localisations into trajectories with ``trackpy.link``.

    Parameters
    ----------
    locs : pandas.DataFrame
        Localisations with columns ``frame, y, x`` (px) and any others (kept).
    search_range_px : float
        Largest displacement between linked frames (px; trackpy's ``search_range``).
    memory : int
        Frames a particle may vanish and still keep its id.
    adaptive_stop_px : float, optional
        Smallest search range trackpy may shrink to when a subnetwork is too large (px;
        trackpy's ``adaptive_stop``).
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
        t = tp.link(df, search_range_px, memory=memory, adaptive_stop=adaptive_stop_px,
                    adaptive_step=adaptive_step, pos_columns=["y", "x"], t_column="frame",
                    **kwargs)
    t = t.reset_index(drop=True)
    t["particle"] = t["particle"].astype(np.int64)
    first = ["particle", "frame", "y", "x"]
    t = t[first + [c for c in t.columns if c not in first]]
    return t.sort_values(["particle", "frame"], kind="stable", ignore_index=True)


def filter_stubs(tracks: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Keep trajectories present in at least ``threshold`` frames (``trackpy.filter_stubs``)."""
    if len(tracks) == 0:
        return tracks.copy()
    n = tracks.groupby("particle")["frame"].transform("size")
    return tracks.loc[n >= threshold].reset_index(drop=True)


def auto_min_length(fit_lags: int, n_frames: int | None = None) -> int:
    """Shortest track kept by ``min_length="auto"``: one more frame than the fitted lags.

    A track of ``fit_lags + 1`` frames has a displacement at every lag of the MSD fit, so
    every kept bead enters every fitted point of the ensemble MSD. A longer fixed threshold
    (trackpy's walkthrough uses 25 on a 300-frame movie) keeps, on a short movie of beads
    that diffuse in and out of focus, only the beads that stay in focus long, i.e. the slow
    ones, and biases D low (``benchmarks/track_focus.py``).

    Parameters
    ----------
    fit_lags : int
        Lags of the MSD fit (frames).
    n_frames : int, optional
        Frames in the movie: the fit cannot use lags beyond ``n_frames - 1``, so the length
        is at most ``n_frames``.

    Returns
    -------
    int
        ``min(fit_lags, n_frames - 1) + 1``, at least 3 (two lags, the fewest a
        ``MSD = 4 D τ + c`` fit needs).
    """
    lags = int(fit_lags)
    if n_frames is not None:
        lags = min(lags, int(n_frames) - 1)
    return max(lags + 1, 3)
