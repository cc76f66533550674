"""Linked tracks against simulated truth: breaks, merges and coverage."""

from __future__ import annotations

import pandas as pd

from scopeflow.track.beadnet import match_points

__all__ = ["compare_tracks"]


def compare_tracks(tracks: pd.DataFrame, truth: pd.DataFrame, max_dist: float = 1.0) -> dict:
    """Track quality against simulated truth.

    Every localisation is matched one-to-one (per frame, within ``max_dist`` px) to a true
    bead. A true trajectory covered by k different linked ids counts ``k - 1`` breaks;
    a linked id covering several true particles counts as a merge for each extra one.

    Returns
    -------
    dict
        ``n_true_tracks``, ``n_tracks``, ``broken`` (Σ k − 1), ``merged``, ``matched_frac``,
        ``found_true_tracks`` (true trajectories with at least one matched localisation) and
        ``fragments_per_track`` (mean k over them; 1 = never broken).
    """
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
                "merged": 0, "matched_frac": 0.0, "found_true_tracks": 0,
                "fragments_per_track": 0.0}
    pr = pd.concat(pairs, ignore_index=True)
    frags = pr.groupby("true")["linked"].nunique()
    broken = int((frags - 1).sum())
    merged = int((pr.groupby("linked")["true"].nunique() - 1).sum())
    return {
        "n_true_tracks": int(truth["particle"].nunique()),
        "n_tracks": int(tracks["particle"].nunique()),
        "broken": broken,
        "merged": merged,
        "matched_frac": float(len(pr) / max(len(tracks), 1)),
        "found_true_tracks": int(len(frags)),
        "fragments_per_track": float(frags.mean()) if len(frags) else 0.0,
    }
