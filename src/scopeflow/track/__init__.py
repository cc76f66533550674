"""Bead tracking: detection + cross-correlation/MLE localisation, linking, MSD, diffusion.

One concept per module (as trackpy splits find/refine/linking/motion); imports point from
the stages down to the science:

stages
    The workflow's stage functions on paths (:func:`~scopeflow.track.stages.locate_movie`,
    :func:`~scopeflow.track.stages.track_movie`) and the CLI's (:func:`cli_locate`,
    :func:`cli_track`); table columns.
movie, figures, demo
    Movies on disk (frames, calibration, the OME-Zarr store, :func:`read_frames`); the report
    figure; the simulated demo movie.
params
    :class:`LocateParams`, :class:`LinkParams`: the options, one default each.
localize
    The localiser's driver: :func:`locate`, :func:`locate_stack` (bead model from pilot
    frames, then every frame on a thread pool).
frame
    One frame: candidates, cross-correlation, MLE fit, quality filter, per-localisation
    uncertainty.
peaks
    Candidates: matched filter (or a network map), local maxima, crops.
refine
    Upsampled-DFT cross-correlation with the bead template (subpixel start positions).
fit
    Poisson MLE fits (pixel-integrated Gaussian or shifted template), neighbour models.
templates
    Gaussian and ring bead models; templates estimated from the data.
detect, appearance, mass
    ``profile="auto"``: bead classes (polarity, size, profile) from the data, trackpy's mass.
_fast
    Compiled (numba) kernels of the localiser, numpy fallback.
beadnet
    BeadNet, the bead-centre probability map: training on simulations, detection scores.
link
    trackpy linking, stub filtering.
motion
    Drift, MSD per particle and ensemble, D and exponent, the expected error of D.
analysis
    The trackpy walkthrough recipe (link, stubs, drift, MSD, D) and the sample summary.
compare
    Linked tracks against simulated truth.
units
    Column names in px/frames when a movie has no calibration.

The linking function is ``scopeflow.track.link.link`` (not re-exported here, so that
``scopeflow.track.link`` stays the module).
"""

from __future__ import annotations

from scopeflow.track.analysis import track_pipeline
from scopeflow.track.link import filter_stubs
from scopeflow.track.localize import locate, locate_stack
from scopeflow.track.motion import (
    DiffusionFit,
    compute_drift,
    ensemble_msd,
    fit_diffusion,
    msd_per_particle,
    subtract_drift,
)
from scopeflow.track.movie import read_frames
from scopeflow.track.params import LinkParams, LocateParams
from scopeflow.track.stages import cli_locate, cli_track

__all__ = [
    "DiffusionFit",
    "LinkParams",
    "LocateParams",
    "cli_locate",
    "cli_track",
    "compute_drift",
    "ensemble_msd",
    "filter_stubs",
    "fit_diffusion",
    "locate",
    "locate_stack",
    "msd_per_particle",
    "read_frames",
    "subtract_drift",
    "track_pipeline",
]
