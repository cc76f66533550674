"""Bead detection and subpixel localisation of a movie: the driver :func:`locate_stack`.

Per movie: choose the bead model (``profile``), estimate it from pilot frames (Gaussian σ
by free-σ fits, :func:`scopeflow.track.frame.estimate_sigma`; or a template from the data,
:func:`scopeflow.track.templates.estimate_template`; or, with ``profile="auto"``, the bead
classes of :mod:`scopeflow.track.appearance`), then localise every frame
(:mod:`scopeflow.track.frame`: candidates of :mod:`scopeflow.track.peaks`, upsampled
cross-correlation of :mod:`scopeflow.track.refine`, Poisson MLE of
:mod:`scopeflow.track.fit`) on a thread pool, and collect one table.

Templates come from a model profile (Gaussian with σ estimated from the data by a pilot
fit with free σ) or from the data themselves (crops of the detected beads aligned by their
subpixel positions with Fourier shifts, averaged, symmetrised over the 8 rotations/flips,
re-localised and re-averaged).

Coordinates are (y, x) in pixels with the origin at the centre of pixel (0, 0), as trackpy.
Intensities are ``(ADU - offset) / gain`` (photons when gain and offset are right).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pandas as pd

from scopeflow.track.frame import (
    _auto_polarity,
    _Detector,
    _localize_frame,
    _radius_for,
    _to_photons,
    estimate_sigma,
)
from scopeflow.track.params import LocateParams
from scopeflow.track.templates import estimate_template, gaussian_template, ring_template

__all__ = ["LOC_COLUMNS", "locate", "locate_stack", "network_detector"]


#: Columns of a localisation table (pixels, origin at the centre of pixel (0, 0)).
LOC_COLUMNS = [
    "frame", "y", "x", "photons", "background", "ep_px", "sigma_px", "score", "snr", "chi2",
]


def _resolve_model(model):
    if model is None:
        return None
    if isinstance(model, str):
        from scopeflow.models.beadnet import BeadNet

        return BeadNet.load() if model in ("beadnet", "default", "shipped") else BeadNet.load(model)
    return model


def locate_stack(
    stack: np.ndarray | Iterable[np.ndarray],
    model=None,
    params: LocateParams | None = None,
    *,
    progress: bool = False,
    first_frame: int = 0,
    workers: int | None = None,
    **changes,
) -> pd.DataFrame:
    """Detect and localise beads in every frame of a movie.

    Parameters
    ----------
    stack : ndarray (t, y, x) or (y, x), or iterable of 2-D frames
        Raw frames (counts/ADU; any real dtype). Use the green channel of RGB frames.
    model : None, "beadnet", path, or callable
        Candidate detector. None: matched filter with the bead template; "beadnet": the
        shipped U-Net bead-centre map (:class:`scopeflow.models.beadnet.BeadNet`; with
        ``profile="auto"`` it runs on the frame reduced to the beads' scale and the movie's
        bead classes place its candidates, :func:`network_detector`); a path to other
        weights; or any callable mapping a frame to a probability map (y, x).
    params : LocateParams, optional
        The localiser's options (bead model, thresholds, camera, fit; see
        :class:`~scopeflow.track.params.LocateParams`). None: the defaults.
    progress : bool
        Show a tqdm progress bar.
    first_frame : int
        Frame number of the first frame.
    workers : int, optional
        Frames localised in parallel by a thread pool (matched filter; the compiled kernels
        release the GIL). None: the CPU cores available to the process. 1: one frame at a
        time. The result does not depend on it.
    **changes
        Fields of :class:`~scopeflow.track.params.LocateParams` to change, by name (e.g.
        ``profile="gaussian"``, ``sigma_px=1.5``, ``diameter_px=11``).

    Returns
    -------
    pandas.DataFrame
        Columns ``frame, y, x, photons, background, ep_px, sigma_px, score, snr, chi2``: y, x in
        px with the origin at the centre of pixel (0, 0); photons = integrated |signal|
        above (or below, dark beads) the background; background in photons/px; ep_px the
        estimated localisation error per axis (px); score = detection probability or SNR;
        snr = fitted amplitude / its standard error; chi2 = reduced chi-square of the fit.
        ``attrs`` hold the σ, radius, profile and template used ("auto": also ``classes``,
        one dict per bead class with its σ, radius, polarity, mode and template, and
        ``diameter_px``, twice the radius of the first class).

    Raises
    ------
    TypeError
        A change that is not a field of :class:`~scopeflow.track.params.LocateParams`.
    ValueError
        An unknown ``profile`` or ``refine``, ``diameter_px`` not above 1 px, or a stack that
        is not (t, y, x) or (y, x).

    Notes
    -----
    Throughput: all candidates of a frame are cropped, cross-correlated and fitted by
    compiled kernels (numba; numpy fallback) without a Python loop over beads, and frames run
    in parallel on ``workers`` threads. ``benchmarks/track_speed.py`` compares the frames/s
    with ``trackpy.locate`` on the same frames.
    """
    p = (params or LocateParams()).with_changes(**changes)
    if isinstance(stack, np.ndarray):
        frames = stack[None] if stack.ndim == 2 else stack
        if frames.ndim != 3:
            raise ValueError(f"stack must be (t, y, x) or (y, x), got shape {stack.shape}")
        frames_list = frames
    else:
        frames_list = [np.asarray(f) for f in stack]
    n_frames = len(frames_list)
    net = _resolve_model(model)
    if p.profile == "auto" and n_frames and hasattr(net, "candidates") and p.template is None:
        return _locate_auto(frames_list, n_frames, p, progress, first_frame, workers, net)
    if p.profile == "auto" and (net is not None or p.template is not None):
        p = p.with_changes(profile="gaussian")
    if p.profile == "auto" and n_frames:
        return _locate_auto(frames_list, n_frames, p, progress, first_frame, workers)
    if p.profile == "auto":
        p = p.with_changes(profile="gaussian")
    sigma0 = float(p.sigma_px) if p.sigma_px else 1.5
    n_pilot = min(n_frames, max(p.pilot_frames, 1))

    def pilot_frames_iter():  # lazy: frames are converted only while the pilot needs them
        return (_to_photons(frames_list[i], p) for i in range(n_pilot))

    polarity = 1.0
    if net is None and n_frames:
        if p.invert is None:
            polarity = _auto_polarity(_to_photons(frames_list[0], p), sigma0)
        else:
            polarity = -1.0 if p.invert else 1.0
    mode = "gaussian" if p.profile == "gaussian" and p.template is None else "template"
    sigma = sigma0
    if mode == "gaussian" and p.sigma_px is None and n_frames:
        det = _Detector(net, p, sigma0, None)
        sigma = estimate_sigma(pilot_frames_iter(), det, p, polarity, sigma0)
        if net is None and abs(sigma - sigma0) > 0.2 * sigma0:
            det = _Detector(net, p, sigma, None)
            sigma = estimate_sigma(pilot_frames_iter(), det, p, polarity, sigma)
    radius = int(p.radius_px) if p.radius_px else _radius_for(sigma, mode)
    if mode == "gaussian":
        tpl = gaussian_template(sigma, radius)
        det = _Detector(net, p, sigma, None)
    else:
        if p.template is not None:
            tpl = np.asarray(p.template, dtype=np.float64)
            radius = tpl.shape[0] // 2
        else:
            # start: ring model or Gaussian, then data-driven template
            if p.profile == "ring":
                start = ring_template(sigma, radius)
                if p.invert:
                    start = -start
            else:
                start = gaussian_template(sigma, radius) * polarity
            det0 = _Detector(net, p, sigma, start)
            pilot, pos, n_found = [], [], 0
            for img in pilot_frames_iter():
                pilot.append(img)
                pos.append(det0.detect(img, 1.0)[0].astype(np.float64))
                n_found += len(pos[-1])
                if n_found >= 2000:
                    break
            try:
                tpl = estimate_template(pilot, pos, radius, iterations=3, initial=start,
                                        upsample=p.upsample)
            except ValueError:  # no bead found in the pilot frames: keep the model
                tpl = start / np.abs(start).sum()
        det = _Detector(net, p, sigma, tpl if net is None else None)
        polarity = 1.0  # the template carries the sign
    def one_frame(i: int) -> dict[str, np.ndarray]:
        img = _to_photons(frames_list[i], p)
        cand, sc = det.detect(img, polarity)
        out = _localize_frame(img, cand, sc, p, radius, sigma, tpl, mode)
        out["frame"] = np.full(len(out["y"]), i + first_frame, dtype=np.int64)
        return out

    t0 = time.perf_counter()
    # frames in parallel: the compiled kernels release the GIL (the network detector runs
    # serially: torch has its own intra-op threads)
    parts = _run_frames(one_frame, n_frames, workers, progress, parallel=net is None)
    if parts:
        df = pd.DataFrame({c: np.concatenate([o[c] for o in parts]) for c in LOC_COLUMNS})
    else:
        df = pd.DataFrame({c: np.zeros(0, np.int64 if c == "frame" else np.float64)
                           for c in LOC_COLUMNS})
    df.attrs.update(
        sigma_px=float(sigma), radius_px=int(radius), profile=mode,
        detector="matched_filter" if net is None else getattr(net, "name", "network"),
        polarity=float(polarity), seconds=time.perf_counter() - t0,
        template=tpl.tolist(),
    )
    return df


def _n_workers(workers: int | None) -> int:
    """Thread count of the frame pool: ``workers``, or the cores available to the process."""
    if workers is not None:
        return max(1, int(workers))
    try:
        import os

        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        import os

        return max(1, os.cpu_count() or 1)


def _run_frames(one_frame, n_frames, workers, progress, parallel=True):
    """Apply ``one_frame`` to every frame (thread pool when ``workers`` > 1)."""
    n_workers = _n_workers(workers)
    if n_workers > 1 and parallel and n_frames > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=min(n_workers, n_frames))
        it = pool.map(one_frame, range(n_frames))
    else:
        pool = None
        it = map(one_frame, range(n_frames))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="locate", unit="frame", total=n_frames)
    try:
        return list(it)
    finally:
        if pool is not None:
            pool.shutdown()


def network_detector(net, threshold: float = 0.5):
    """``detector(img, classes)`` of :func:`~scopeflow.track.appearance.locate_auto` from a
    network with a ``candidates(img, diameter_px, threshold)`` method (BeadNet): candidates
    on the frame reduced to the beads' scale, set by the geometric mean of the smallest and
    largest class diameters (mixed sizes: neither the small beads shrink below ~3 px nor the
    large ones exceed the network's training sizes)."""

    def detect(img: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
        ds = [2.0 * c.radius_px for c in classes]
        d = float(np.sqrt(min(ds) * max(ds))) if ds else None
        return net.candidates(img, d, threshold)

    return detect


def _locate_auto(frames_list, n_frames, p, progress, first_frame, workers,
                 net=None) -> pd.DataFrame:
    """``profile="auto"`` (see :mod:`scopeflow.track.appearance`); ``net``: BeadNet finds the
    candidates, the classes' templates place them."""
    from scopeflow.track.appearance import classes_to_records, locate_auto

    polarity = None if p.invert is None else (-1.0 if p.invert else 1.0)
    t0 = time.perf_counter()
    classes, one = locate_auto(frames_list, n_frames, p, lambda f: _to_photons(f, p),
                               diameter_px=p.diameter_px, polarity=polarity,
                               match_factor=p.match_factor, minmass=p.minmass,
                               classes=p.classes,
                               detector=None if net is None else network_detector(
                                   net, p.prob_threshold))
    if not classes:  # nothing blob-like in the pilot frames: the Gaussian path
        return locate_stack(frames_list, net, p.with_changes(profile="gaussian"),
                            progress=progress, first_frame=first_frame, workers=workers)

    def one_frame(i: int) -> dict[str, np.ndarray]:
        out = one(i)
        out["frame"] = np.full(len(out["y"]), i + first_frame, dtype=np.int64)
        return out

    # ONNX Runtime sessions may run frames in parallel; torch has its own intra-op threads
    parallel = net is None or getattr(net, "backend", None) == "onnx"
    parts = _run_frames(one_frame, n_frames, workers, progress, parallel=parallel)
    cols = [*LOC_COLUMNS, "mass"] if p.minmass is not None else list(LOC_COLUMNS)
    df = pd.DataFrame({c: np.concatenate([o[c] for o in parts]) for c in cols})
    first = classes[0]
    df.attrs.update(
        sigma_px=float(first.sigma_fit), radius_px=int(first.crop_radius),
        profile="auto:" + "+".join(c.mode for c in classes),
        detector="matched_filter" if net is None else getattr(net, "name", "network"),
        polarity=float(first.polarity), seconds=time.perf_counter() - t0,
        template=np.asarray(first.template).tolist(),
        diameter_px=float(2 * first.radius_px),
        classes=classes_to_records(classes),
    )
    return df


def locate(image: np.ndarray, model=None, params: LocateParams | None = None,
           **kwargs) -> pd.DataFrame:
    """Detect and localise beads in one frame (see :func:`locate_stack` for options).

    Parameters
    ----------
    image : ndarray (y, x)
        One frame.
    model : None, "beadnet", path, or callable
        Candidate detector.
    params : LocateParams, optional
        The localiser's options (None: the defaults).
    **kwargs
        Options of :func:`locate_stack` (``workers`` ...) and fields of
        :class:`~scopeflow.track.params.LocateParams` to change.

    Returns
    -------
    pandas.DataFrame
        Columns ``frame, y, x, photons, background, ep_px, sigma_px, score, chi2`` (frame 0).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"locate expects a 2-D frame, got shape {img.shape}; use locate_stack")
    return locate_stack(img[None], model, params, **kwargs)
