"""The labelled and out-of-distribution parasite crops of ``octopi_malaria_spots`` (shared data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scopeflow.models.training import SHARED_DATA

__all__ = ["SPOTS", "load_spots"]

SPOTS = "octopi_malaria_spots"


def load_spots(data: str | Path = SHARED_DATA) -> dict[str, np.ndarray]:
    """Labelled and OOD crops of ``octopi_malaria_spots``.

    Parameters
    ----------
    data : str or Path
        Shared data root holding ``octopi_malaria_spots/``.

    Returns
    -------
    dict
        ``x`` (N, 4, 31, 31) uint8 (positives first), ``y`` (N,) int64 (1 = parasite),
        ``ood`` (M, 4, 31, 31) uint8.
    """
    root = Path(data) / SPOTS
    names = ("conformal_set_pos.npy", "conformal_set_neg.npy", "ood_images.npy")
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root / missing[0]} not found: set --data (or "
                                f"SCOPEFLOW_SHARED_DATA) to the folder holding {SPOTS}/")
    pos, neg, ood = (np.load(root / n) for n in names)
    x = np.concatenate([pos, neg]).astype(np.uint8)
    y = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    return {"x": x, "y": y, "ood": ood.astype(np.uint8)}
