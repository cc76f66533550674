"""Bead movies on disk: frame files, calibration, the OME-Zarr movie store.

A movie is a folder of frame images (natural name order: ``frame_2`` before ``frame_10``),
a (multi-page) TIFF, or an array. :func:`iter_frames` reads it one frame at a time and
:func:`read_frames` all at once (images through :mod:`scopeflow.io.images`: RGB frames give
their green channel); :func:`movie_calibration` finds the pixel size and frame rate;
:func:`ingest_movie` copies the frames into an OME-Zarr image (t, y, x) through the one NGFF
writer (:mod:`scopeflow.io.ngff_write`), and :func:`read_movie` opens it.

Coordinates: (y, x) in pixels with the origin at the centre of pixel (0, 0) (as trackpy).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from scopeflow.io.discover import BEADS_MARKER, read_beads_marker
from scopeflow.errors import InputImageError, ScopeflowError
from scopeflow.io.atomic import replace, temp_path
from scopeflow.io.images import IMAGE_SUFFIXES, read_image, read_stack, to_frames, to_plane

log = logging.getLogger("scopeflow")

__all__ = [
    "frame_files",
    "ingest_movie",
    "iter_frames",
    "calibration_note",
    "movie_calibration",
    "read_frames",
    "read_movie",
]


def _natural_key(path: Path):
    """Sort key: digit runs compare as numbers (frame_2 before frame_10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def frame_files(path: str | Path) -> list[Path]:
    """The image files of a movie: the file itself, or a folder's images in natural order.

    Raises
    ------
    InputImageError
        Missing path, or a folder without images (naming it).
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise InputImageError(f"{p}: bead movie not found; fix the sample's path")
    files = sorted((f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                    and not f.name.startswith(".")), key=_natural_key)
    if not files:
        raise InputImageError(
            f"{p}: no frame images ({', '.join(IMAGE_SUFFIXES)}) in this folder; point the "
            "sample at the folder that holds the frames or at a multi-page TIFF"
        )
    return files


def _plane(arr: np.ndarray, source: Path) -> np.ndarray:
    """One 2-D frame: RGB/RGBA -> green, grey+alpha -> grey (:func:`scopeflow.io.images.to_plane`)."""
    return to_plane(arr, "green", str(source), todo="export a single-channel time series")


def iter_frames(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(source, frame)`` for every frame of a movie, one at a time (bounded memory).

    Parameters
    ----------
    path : str or Path
        A folder of frame images (PNG/TIFF/BMP/JPEG, natural name order; every page of a
        multi-page TIFF in it counts) or one (multi-page) TIFF or image file.

    Yields
    ------
    source : str
        File (``file.tif#page`` for pages after the first of a multi-page TIFF).
    frame : ndarray (y, x)
        The frame as stored (dtype kept); RGB/RGBA frames give their green channel.

    Raises
    ------
    InputImageError
        Unreadable or non-2-D frames, naming the file.
    """
    for f in frame_files(path):
        if f.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            try:
                with tifffile.TiffFile(f) as tf:
                    n_pages = len(tf.pages)
                    images = int((tf.imagej_metadata or {}).get("images", 1) or 1)
                    if n_pages == 1 and images > 1:  # ImageJ > 4 GB: one IFD for all frames
                        stack = tf.series[0].asarray().reshape(images, *tf.pages[0].shape)
                        for k in range(images):
                            yield (str(f) if k == 0 else f"{f}#{k}"), _plane(stack[k], f)
                        continue
                    for k in range(n_pages):
                        page = tf.pages[k]
                        yield (str(f) if k == 0 else f"{f}#{k}"), _plane(page.asarray(), f)
            except InputImageError:
                raise
            except Exception as exc:  # noqa: BLE001 - every decoder error means the same here
                msg = str(exc).splitlines()[0] if str(exc) else "corrupt"
                raise InputImageError(
                    f"{f}: cannot read TIFF ({type(exc).__name__}: {msg}); the file is truncated "
                    "or not an image: re-copy or re-export it"
                ) from exc
        else:
            yield str(f), read_image(f, "green", unit=False, todo="export a single-channel time series")


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
    if isinstance(path_or_stack, np.ndarray):
        return to_frames(path_or_stack)
    path = Path(path_or_stack)
    if path.is_dir():
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


def movie_calibration(
    path: str | Path,
    pixel_size_um: float | None = None,
    fps: float | None = None,
    *,
    default_pixel_size_um: float | None = None,
    default_fps: float | None = None,
    hint: Mapping[str, str] | None = None,
    required: bool = True,
) -> dict:
    """Pixel size and frame rate of a movie: sample sheet, else ``scopeflow_beads.json``, else
    the config fallbacks.

    ``hint`` maps ``pixel_size_um`` / ``fps`` to how the user gives the value where it is
    missing (default: the sample sheet, the marker file or the ``track`` config section).
    With ``required=False`` a value given nowhere is None (``*_from``: ``none``): the movie is
    then analysed in pixels and/or frames (:mod:`scopeflow.track.units`).

    Returns
    -------
    dict
        ``pixel_size_um``, ``fps`` and, for each, where it came from (``*_from``: ``sheet``,
        ``metadata``, ``config`` or ``none``).

    Raises
    ------
    ScopeflowError
        If either is not positive, or unknown while ``required``, saying where to give it.
    """
    meta = read_beads_marker(path)
    out = {}
    for key, given, default, what in (
        ("pixel_size_um", pixel_size_um, default_pixel_size_um, "pixel size (µm/px)"),
        ("fps", fps, default_fps, "frame rate (frames/s)"),
    ):
        value, origin = None, None
        for v, o in ((given, "sheet"), (meta.get(key), "metadata"), (default, "config")):
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                value, origin = v, o
                break
        if value is None and not required:
            out[key], out[f"{key}_from"] = None, "none"
            continue
        if value is None:
            how = (hint or {}).get(key) or (f"{key} in the sample sheet, in {BEADS_MARKER} "
                                           f"beside the frames, or track.{key} in the config")
            raise ScopeflowError(f"{path}: {what} unknown; give {how}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = float("nan")
        if not value > 0:
            raise ScopeflowError(f"{path}: {key} = {value!r} ({origin}) must be a positive number")
        out[key] = value
        out[f"{key}_from"] = origin
    return out


def ingest_movie(
    path: str | Path,
    out_zarr: str | Path,
    *,
    pixel_size_um: float | None = None,
    fps: float | None = None,
    default_pixel_size_um: float | None = None,
    default_fps: float | None = None,
    provenance: Mapping | None = None,
    sample: str | None = None,
    chunk: int = 1024,
    min_frames: int = 1,
) -> dict:
    """Validate a bead movie and copy its frames into an OME-Zarr image (t, y, x).

    Frames are read one at a time and written as one chunk row per frame, so memory does not
    grow with the movie's length.

    Parameters
    ----------
    path : str or Path
        Frame folder or (multi-page) TIFF (see :func:`iter_frames`).
    out_zarr : str or Path
        Store to create (NGFF 0.5 image, Zarr v3, one level; axes t (s), y, x (µm)). It is
        written under a temporary name and renamed into place when complete.
    pixel_size_um, fps : float, optional
        From the sample sheet (override the metadata); see :func:`movie_calibration`. Given
        nowhere (sheet, marker file, config): stored as None, with one note in the log; the
        tracks are then measured in px and/or frames.
    default_pixel_size_um, default_fps : float, optional
        Config fallbacks.
    provenance : mapping, optional
        Stored under the ``scopeflow`` attribute with the calibration and the frame sources.
    sample : str, optional
        Image name.
    chunk : int
        Chunk edge (y, x) in pixels.
    min_frames : int
        Fewest frames accepted; the workflow passes
        :data:`scopeflow.track.motion.MIN_MSD_FRAMES`, as its movies go on to an MSD fit.

    Returns
    -------
    dict
        The ``scopeflow`` attributes (``pixel_size_um, fps, n_frames, shape, dtype, sources``
        ...).

    Raises
    ------
    InputImageError
        Empty folder, unreadable frame, or frames of different size or type (naming the file).
    """
    from scopeflow.io import ngff_write

    cal = movie_calibration(path, pixel_size_um, fps, default_pixel_size_um=default_pixel_size_um,
                            default_fps=default_fps, required=False)
    note = calibration_note(cal)
    if note:
        log.info("%s: %s", path, note)
    out_zarr = Path(out_zarr)
    out_zarr.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out_zarr)
    if tmp.exists():
        shutil.rmtree(tmp)
    t0 = time.perf_counter()
    arr = None
    sources: list[str] = []
    first = None
    n_cap = 64
    for n, (src, frame) in enumerate(iter_frames(path)):
        if arr is None:
            first = (src, frame.shape, frame.dtype)
            arr = ngff_write.create_movie(tmp, (n_cap, *frame.shape), frame.dtype, chunk=chunk)
            lo, hi = (float(v) for v in np.percentile(frame, [0.5, 99.5]))
        elif frame.shape != first[1]:
            raise InputImageError(
                f"{src}: frame of shape {frame.shape} differs from {first[1]} of {first[0]}; "
                "all frames of a movie must have the same size"
            )
        elif frame.dtype != first[2]:
            raise InputImageError(
                f"{src}: frame type {frame.dtype} differs from {first[2]} of {first[0]}; "
                "export all frames with the same bit depth"
            )
        if n >= arr.shape[0]:
            n_cap *= 2
            arr.resize((n_cap, *first[1]))
        arr[n] = frame
        sources.append(src)
        if (n + 1) % 500 == 0:
            log.info("%s: %d frames read", path, n + 1)
    if arr is None:
        raise InputImageError(f"{path}: no frames in this movie; point the sample at a folder "
                              "of frames or a multi-page TIFF")
    n_frames = len(sources)
    if n_frames < min_frames:  # checked before the store is renamed into place
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputImageError(
            f"{path}: {n_frames} frame(s); an MSD and diffusion coefficient need at least "
            f"{min_frames} frames (two lags); give a longer movie"
        )
    arr.resize((n_frames, *first[1]))
    ps, f = cal["pixel_size_um"], cal["fps"]
    attrs = {
        **dict(provenance or {}),
        "kind": "beads",
        "pixel_size_um": ps, "fps": f, "frame_interval_s": 1.0 / f if f else None,
        "pixel_size_um_from": cal["pixel_size_um_from"], "fps_from": cal["fps_from"],
        "n_frames": n_frames, "shape": [n_frames, *first[1]], "dtype": str(first[2]),
        "source": str(path), "sources": sources,
        "axes": "tyx (origin at the centre of pixel (0, 0))",
    }
    ngff_write.finish_movie(tmp, name=sample or Path(path).name, fps=f, pixel_size_um=ps,
                          window=(lo, hi), attrs=attrs)
    replace(tmp, out_zarr)
    log.info("%s: %d frames of %dx%d %s, %s µm/px (%s), %s fps (%s), %.1f s", path, n_frames,
             first[1][0], first[1][1], first[2], f"{ps:.4g}" if ps else "no", cal["pixel_size_um_from"],
             f"{f:.4g}" if f else "no", cal["fps_from"], time.perf_counter() - t0)
    return attrs


def calibration_note(cal: Mapping) -> str:
    """One line saying which calibration is missing and the units used instead ('' if none)."""
    ps, f = cal.get("pixel_size_um"), cal.get("fps")
    if ps and f:
        return ""
    missing = " and ".join(w for w, v in (("pixel size", ps), ("frame rate", f)) if not v)
    return (f"note: no {missing} given (sample sheet pixel_size_um/fps, {BEADS_MARKER} or "
            f"track.pixel_size_um/fps): lengths in {'um' if ps else 'px'}, times in "
            f"{'s' if f else 'frames'} (columns named so)")


def read_movie(zarr_path: str | Path):
    """The frames (lazy zarr array (t, y, x)) and ``scopeflow`` attributes of a movie store."""
    import zarr

    root = zarr.open_group(str(zarr_path), mode="r", zarr_format=3)
    return root["0"], dict(root.attrs.get("scopeflow", {}))


def _movie_record(attrs: Mapping) -> dict:
    return {k: attrs.get(k) for k in ("pixel_size_um", "fps", "n_frames", "shape", "dtype",
                                      "source", "pixel_size_um_from", "fps_from")}
