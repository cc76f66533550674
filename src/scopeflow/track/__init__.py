"""Bead tracking: detection + cross-correlation/MLE localisation, linking, MSD, diffusion.

Modules
-------
localize
    Candidates (matched filter by default, or a network map), upsampled-DFT cross-correlation,
    Poisson MLE refinement, per-localisation uncertainty: :func:`locate`, :func:`locate_stack`.
_fast
    Compiled (numba) kernels of the localiser, numpy fallback.
beadnet
    The M2U-Net bead-centre map: training on simulations, shipped weights with sha256 check.
link
    trackpy linking, stub filtering, drift, MSD per particle and ensemble, D and exponent.

Entry points for the ``scopeflow`` CLI: :func:`cli_locate`, :func:`cli_track`.

The linking function is ``scopeflow.track.link.link`` (not re-exported here, so that
``scopeflow.track.link`` stays the module).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from scopeflow.errors import InputImageError
from scopeflow.io.atomic import atomic_path, write_text
from scopeflow.track.link import (
    DiffusionFit,
    compute_drift,
    ensemble_msd,
    filter_stubs,
    fit_diffusion,
    msd_per_particle,
    subtract_drift,
    track_pipeline,
)
from scopeflow.track.localize import locate, locate_stack

__all__ = [
    "DiffusionFit",
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


def read_frames(path_or_stack) -> np.ndarray:
    """Read a movie as raw frames (t, y, x), keeping the stored dtype.

    Parameters
    ----------
    path_or_stack : str, Path or ndarray
        A single image file, a folder of frame images (natural name order: frame_2 before
        frame_10), a (multi-page) TIFF, or an array (y, x), (t, y, x), (y, x, c) or
        (t, y, x, c). RGB/RGBA frames give their green channel (as the trackpy walkthrough
        and Octopi do).

    Returns
    -------
    ndarray (t, y, x)

    Raises
    ------
    InputImageError
        Missing path, empty folder, unreadable or non-2-D images (naming the file).
    """
    from scopeflow.io.images import IMAGE_SUFFIXES, read_image, read_stack, to_frames

    if isinstance(path_or_stack, np.ndarray):
        return to_frames(path_or_stack)
    path = Path(path_or_stack)
    if path.is_dir():
        from scopeflow.track.pipeline import _natural_key  # frame_2 before frame_10

        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                       key=_natural_key)
        if not files:
            raise InputImageError(f"{path}: no frame images ({', '.join(IMAGE_SUFFIXES)}) in "
                                  "this folder; point to the folder that holds the frames")
        frames = [read_image(f, unit=False) for f in files]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise InputImageError(f"{path}: frames have different shapes {sorted(shapes)}; "
                                  "all frames of a movie must have the same size")
        return np.stack(frames)
    if not path.is_file():
        raise InputImageError(f"{path}: movie not found; give a frame folder, a TIFF or an image")
    if path.suffix.lower() in (".tif", ".tiff"):
        return read_stack(path)
    return read_image(path, unit=False)[None]


def cli_locate(path_or_stack, out_csv, **opts) -> pd.DataFrame:
    """Localise beads in an image, a frame folder, a multi-page TIFF or an array; write CSV.

    Parameters
    ----------
    path_or_stack : str, Path or ndarray
        See :func:`read_frames`.
    out_csv : str or Path
        Output CSV (``frame, y, x, photons, background, ep_px, sigma_px, score, chi2``; px,
        origin at the centre of pixel (0, 0)). Parent folders are created; the file is
        written to a temporary name and renamed, so it never exists half-written.
    **opts
        Options of :func:`scopeflow.track.localize.locate_stack`; ``model`` defaults to
        None (the matched filter; ``model="beadnet"`` for the shipped network).

    Returns
    -------
    pandas.DataFrame
        The localisations.
    """
    frames = read_frames(path_or_stack)
    model = opts.pop("model", None)
    locs = locate_stack(frames, model, **opts)
    _write_csv(locs, out_csv)
    return locs


def cli_track(frames, out_csv, pixel_size_um: float | None, fps: float | None, **opts) -> dict:
    """Localise, link and analyse a bead movie; write tracks, MSD, diffusion and a summary.

    Parameters
    ----------
    frames : str, Path or ndarray
        Movie (see :func:`read_frames`).
    out_csv : str or Path
        Tracks CSV: ``particle, frame, y, x, y_um, x_um`` + localisation columns and
        ``drift_y_px, drift_x_px`` (measured positions; drift-corrected = measured − drift).
        Beside it: ``<stem>_msd.csv`` (ensemble MSD: ``lag, lag_s, msd_um2, ...``),
        ``<stem>_diffusion.csv`` (per particle ``D_um2_s, exponent, ...``) and
        ``<stem>_summary.json``.
    pixel_size_um : float or None
        µm per px; None: lengths in px (columns named ``*_px``, ``*_px2``; ``y_um, x_um``
        dropped), as trackpy without ``mpp``.
    fps : float or None
        Frames per second; None: times in frames (``lag_frame``, ``D_px2_frame`` ...).
    **opts
        Linking/analysis options of :func:`scopeflow.track.link.track_pipeline`
        (``search_range`` px (5), ``memory`` (3), ``adaptive_stop``, ``min_length`` (25),
        ``drift`` (True), ``max_lag`` (100), ``fit_lags`` (10)); every other option goes to
        :func:`locate_stack` (``model`` defaults to None, the matched filter).

    Returns
    -------
    dict
        The :func:`track_pipeline` result plus ``locs``; ``summary`` is also written as JSON.
    """
    link_keys = ("search_range", "memory", "adaptive_stop", "min_length", "drift", "max_lag",
                 "fit_lags")
    lopts = {k: opts.pop(k) for k in link_keys if k in opts}
    from scopeflow.track.units import rename_units

    movie = read_frames(frames)
    from scopeflow.track.link import require_msd_frames

    require_msd_frames(len(movie), frames if isinstance(frames, (str, Path)) else "movie")
    model = opts.pop("model", None)
    locs = locate_stack(movie, model, **opts)
    known = (pixel_size_um is not None, fps is not None)
    res = track_pipeline(locs, pixel_size_um or 1.0, fps or 1.0, n_frames=len(movie), **lopts)
    for key in ("tracks", "ensemble", "diffusion", "msd"):
        res[key] = rename_units(res[key], *known)
    res["summary"] = rename_units(res["summary"], *known)
    res["locs"] = locs
    out_csv = Path(out_csv)
    stem = out_csv.with_suffix("")
    _write_csv(res["ensemble"], f"{stem}_msd.csv")
    _write_csv(res["diffusion"], f"{stem}_diffusion.csv")
    summary = dict(res["summary"])
    summary.update(detector=locs.attrs.get("detector"), profile=locs.attrs.get("profile"),
                   sigma_px=locs.attrs.get("sigma_px"),
                   bead_diameter_px=locs.attrs.get("diameter_px"),
                   bead_classes=[{k: v for k, v in c.items() if k != "template"}
                                 for c in locs.attrs.get("classes", [])])
    write_text(f"{stem}_summary.json", json.dumps(summary, indent=2, default=float))
    _write_csv(res["tracks"], out_csv)  # last: its presence means everything was written
    return res


def _write_csv(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
