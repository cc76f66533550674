"""Parameter objects of the bead localiser and linker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LocateParams"]


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
