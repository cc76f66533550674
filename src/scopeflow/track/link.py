"""Linking localisations into trajectories (trackpy) and dropping short ones.

Linking is trackpy's (``trackpy.link``, Crocker–Grier nearest-neighbour with memory and
adaptive search); :func:`filter_stubs` keeps trajectories present in at least a given
number of frames, as ``trackpy.filter_stubs``. Drift, MSD and diffusion coefficients are in
:mod:`scopeflow.track.motion`; the whole recipe in :mod:`scopeflow.track.analysis`.

Positions are in pixels (y, x; origin at the centre of pixel (0, 0)).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from scopeflow.track.params import LinkParams

__all__ = ["filter_stubs", "link"]


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


def filter_stubs(tracks: pd.DataFrame, threshold: int = LinkParams.min_length) -> pd.DataFrame:
    """Keep trajectories present in at least ``threshold`` frames (``trackpy.filter_stubs``)."""
    if len(tracks) == 0:
        return tracks.copy()
    n = tracks.groupby("particle")["frame"].transform("size")
    return tracks.loc[n >= threshold].reset_index(drop=True)
