"""Forward models that make synthetic acquisitions with known truth (tests, demo)."""

from scopeflow.simulate.acquisition import simulate_acquisition
from scopeflow.simulate.smear import (
    image_halves,
    rbc_phantom,
    rbc_thickness,
    simulate_fov,
    source_points,
)

__all__ = [
    "image_halves",
    "rbc_phantom",
    "rbc_thickness",
    "simulate_acquisition",
    "simulate_fov",
    "source_points",
]
