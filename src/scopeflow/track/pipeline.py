"""Stage functions of the bead-tracking workflow, on paths: movie -> frame store -> tables.

``ingest_movie`` (frames -> OME-Zarr (t, y, x)) -> ``locate_movie`` (localisations) ->
``track_movie`` (tracks, per-particle diffusion, ensemble MSD, per-sample summary) ->
``tracks_figure`` (report PNG). Each Snakemake script in ``scripts/`` is a thin call to one of
these; they are also usable (and tested) without Snakemake. Every output is written to a
temporary name and renamed into place, so an interrupted stage never leaves a
complete-looking result.

Coordinates: (y, x) in pixels with the origin at the centre of pixel (0, 0) (as trackpy);
lengths in the tables are micrometres (``*_um``), times seconds (``*_s``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scopeflow.errors import InputImageError, ScopeflowError
from scopeflow.io import tables
from scopeflow.io.atomic import atomic_path, replace, temp_path
from scopeflow.io.discover import BEADS_MARKER, read_beads_marker
from scopeflow.io.images import IMAGE_SUFFIXES, read_image, to_plane

log = logging.getLogger("scopeflow")

__all__ = [
    "LOC_COLUMNS",
    "TRACK_COLUMNS",
    "DIFFUSION_COLUMNS",
    "MSD_COLUMNS",
    "SAMPLE_COLUMNS",
    "frame_files",
    "iter_frames",
    "movie_calibration",
    "ingest_movie",
    "read_movie",
    "locate_movie",
    "track_movie",
    "tracks_figure",
    "make_demo_movie",
]

#: Localisations table (one row per bead per frame).
LOC_COLUMNS = ["sample", "frame", "y_px", "x_px", "photons", "background", "ep_px", "sigma_px",
               "score", "snr", "chi2"]
#: Tracks table: measured positions; drift-corrected = measured − drift.
TRACK_COLUMNS = ["sample", "particle", "frame", "y_px", "x_px", "y_um", "x_um", "t_s",
                 "photons", "background", "ep_px", "sigma_px", "score", "snr", "chi2",
                 "drift_y_px", "drift_x_px"]
#: Per-particle diffusion (MSD of each track through the origin, first ``fit_lags`` lags).
DIFFUSION_COLUMNS = ["sample", "particle", "n_frames", "D_um2_s", "exponent", "A_um2_s",
                     "offset_um2", "n_lags"]
#: Ensemble MSD (all displacements of all tracks pooled), drift-corrected.
MSD_COLUMNS = ["sample", "lag", "lag_s", "msd_um2", "msd_y_um2", "msd_x_um2", "n_disp"]
#: Per-sample summary row.
SAMPLE_COLUMNS = ["sample", "n_frames", "n_localizations", "n_tracks", "median_track_length",
                  "pixel_size_um", "fps", "D_um2_s", "exponent", "A_um2_s", "msd_offset_um2",
                  "fit_lags", "D_particle_median_um2_s", "D_particle_iqr_um2_s", "median_ep_px",
                  "drift_y_px", "drift_x_px", "detector"]


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


def movie_calibration(
    path: str | Path,
    pixel_size_um: float | None = None,
    fps: float | None = None,
    *,
    default_pixel_size_um: float | None = None,
    default_fps: float | None = None,
    hint: Mapping[str, str] | None = None,
) -> dict:
    """Pixel size and frame rate of a movie: sample sheet, else ``scopeflow_beads.json``, else
    the config fallbacks.

    ``hint`` maps ``pixel_size_um`` / ``fps`` to how the user gives the value where it is
    missing (default: the sample sheet, the marker file or the ``track`` config section).

    Returns
    -------
    dict
        ``pixel_size_um``, ``fps`` and, for each, where it came from (``*_from``: ``sheet``,
        ``metadata`` or ``config``).

    Raises
    ------
    ScopeflowError
        If either is unknown or not positive, saying where to give it.
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
        From the sample sheet (override the metadata); see :func:`movie_calibration`.
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
        :data:`scopeflow.track.link.MIN_MSD_FRAMES`, as its movies go on to an MSD fit.

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
                            default_fps=default_fps)
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
        "pixel_size_um": ps, "fps": f, "frame_interval_s": 1.0 / f,
        "pixel_size_um_from": cal["pixel_size_um_from"], "fps_from": cal["fps_from"],
        "n_frames": n_frames, "shape": [n_frames, *first[1]], "dtype": str(first[2]),
        "source": str(path), "sources": sources,
        "axes": "tyx (origin at the centre of pixel (0, 0))",
    }
    ngff_write.finish_movie(tmp, name=sample or Path(path).name, fps=f, pixel_size_um=ps,
                          window=(lo, hi), attrs=attrs)
    replace(tmp, out_zarr)
    log.info("%s: %d frames of %dx%d %s, %.4g µm/px (%s), %.4g fps (%s), %.1f s", path, n_frames,
             first[1][0], first[1][1], first[2], ps, cal["pixel_size_um_from"], f, cal["fps_from"],
             time.perf_counter() - t0)
    return attrs


def read_movie(zarr_path: str | Path):
    """The frames (lazy zarr array (t, y, x)) and ``scopeflow`` attributes of a movie store."""
    import zarr

    root = zarr.open_group(str(zarr_path), mode="r", zarr_format=3)
    return root["0"], dict(root.attrs.get("scopeflow", {}))


def _movie_record(attrs: Mapping) -> dict:
    return {k: attrs.get(k) for k in ("pixel_size_um", "fps", "n_frames", "shape", "dtype",
                                      "source", "pixel_size_um_from", "fps_from")}


def locate_movie(
    zarr_path: str | Path,
    out_parquet: str | Path,
    *,
    sample: str,
    model: str | None = "none",
    threads: int = 1,
    block: int = 256,
    provenance: Mapping | None = None,
    **opts,
) -> pd.DataFrame:
    """Detect and localise the beads of every frame of a movie store; write the table.

    Frames are processed in blocks of ``block`` frames (bounded memory). The bead model (σ or
    template, polarity) is estimated on the first block and then held fixed, so the result
    is the same as one :func:`~scopeflow.track.localize.locate_stack` call on the whole movie
    whenever ``block`` ≥ ``pilot_frames``.

    Parameters
    ----------
    zarr_path : str or Path
        Store written by :func:`ingest_movie`.
    out_parquet : str or Path
        Localisations (:data:`LOC_COLUMNS`), Parquet + CSV mirror, provenance in the metadata
        (detector, model sha256, σ, options, and the movie's calibration under ``movie``).
    sample : str
        Sample name (first column).
    model : {"none", "beadnet", None} or path
        Candidate detector: None/"none" for the matched filter (default), or the shipped
        BeadNet (or other weights).
    threads : int
        Threads: frames localised in parallel (matched filter), torch threads of BeadNet.
    block : int
        Frames per block.
    provenance : mapping, optional
        Run provenance (scopeflow version, config hash ...) to extend.
    **opts
        Options of :func:`~scopeflow.track.localize.locate_stack` (``profile``, ``sigma_px``,
        ``snr_threshold``, ``prob_threshold``, ``min_snr`` ...).
    """
    from scopeflow.track.localize import locate_stack

    frames, attrs = read_movie(zarr_path)
    opts = {k: v for k, v in opts.items() if v is not None}
    net = None
    if model not in (None, "none", "matched_filter"):
        from scopeflow.models.beadnet import BeadNet

        net = BeadNet.load(None if model in ("beadnet", "default", "shipped") else model,
                           threads=max(1, int(threads)))
    n = int(frames.shape[0])
    block = max(int(block), int(opts.get("pilot_frames", 50)), 1)
    parts, first_attrs = [], {}
    t0 = time.perf_counter()
    for start in range(0, n, block):
        chunk = np.asarray(frames[start:start + block])
        locs = locate_stack(chunk, net, first_frame=start, workers=max(1, int(threads)), **opts)
        if start == 0 and str(locs.attrs.get("profile", "")).startswith("auto"):
            first_attrs = dict(locs.attrs)  # hold the bead classes of the first block fixed
            opts["classes"] = first_attrs["classes"]
        elif start == 0:  # hold the bead model of the first block fixed
            first_attrs = dict(locs.attrs)
            opts["sigma_px"] = first_attrs["sigma_px"]
            opts["radius_px"] = first_attrs["radius_px"]
            if first_attrs["profile"] == "template":
                opts["profile"] = "template"
                opts["template"] = np.asarray(first_attrs["template"])
            if net is None and opts.get("invert") is None:
                opts["invert"] = bool(first_attrs["polarity"] < 0)
        parts.append(locs)
        log.info("locate: frames %d-%d of %d, %d beads/frame, %.1f s", start,
                 min(start + block, n) - 1, n, len(locs) // max(len(chunk), 1),
                 time.perf_counter() - t0)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["frame", "y", "x", "photons", "background", "ep_px", "sigma_px", "score", "snr",
                 "chi2"])
    df = df.rename(columns={"y": "y_px", "x": "x_px"})
    df.insert(0, "sample", sample)
    df = df[LOC_COLUMNS]
    df["frame"] = df["frame"].astype(np.int64)
    prov = dict(provenance or {})
    sha = getattr(net, "sha256", None)
    if sha:
        prov.setdefault("models", {})
        prov["models"] = {**prov["models"], "beadnet": sha}
    prov["movie"] = _movie_record(attrs)
    prov["locate"] = {
        "detector": first_attrs.get("detector", "matched_filter" if net is None else "beadnet"),
        "model_sha256": sha,
        "profile": first_attrs.get("profile"),
        "psf_sigma_px": first_attrs.get("sigma_px"),
        "radius_px": first_attrs.get("radius_px"),
        "polarity": first_attrs.get("polarity"),
        "options": {k: v for k, v in opts.items() if k not in ("template", "classes")},
        "bead_classes": [{k: v for k, v in c.items() if k != "template"}
                         for c in first_attrs.get("classes", [])],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    tables.write_table(df, out_parquet, prov)
    log.info("%s: %d localisations in %d frames (%s), %.1f s", sample, len(df), n,
             prov["locate"]["detector"], time.perf_counter() - t0)
    return df


def track_movie(
    locs_parquet: str | Path,
    out_tracks: str | Path,
    out_diffusion: str | Path,
    out_msd: str | Path,
    out_sample: str | Path,
    *,
    sample: str,
    search_range_px: float = 5.0,
    memory: int = 3,
    adaptive_stop_px: float | None = None,
    min_length: int = 25,
    drift: bool = True,
    max_lag: int = 100,
    fit_lags: int = 10,
    provenance: Mapping | None = None,
) -> dict:
    """Link localisations into tracks and measure MSD and diffusion; write four tables.

    The recipe of the trackpy walkthrough (:func:`scopeflow.track.link.track_pipeline`):
    link (``search_range_px``, ``memory``, optional adaptive search) -> keep tracks of at
    least ``min_length`` frames -> subtract the ensemble drift (``drift``) -> ensemble and
    per-particle MSD up to ``max_lag`` frames -> ``MSD = 4 D τ + c`` on the first
    ``fit_lags`` lags.

    Parameters
    ----------
    locs_parquet : str or Path
        From :func:`locate_movie` (its provenance gives the pixel size, fps and frame count).
    out_tracks, out_diffusion, out_msd, out_sample : str or Path
        Parquet tables (+ CSV mirrors) with :data:`TRACK_COLUMNS`, :data:`DIFFUSION_COLUMNS`,
        :data:`MSD_COLUMNS` and :data:`SAMPLE_COLUMNS`. The sample summary is written last.
    sample : str
        Sample name (first column of every table).

    Returns
    -------
    dict
        The summary row.
    """
    from scopeflow.track.link import track_pipeline

    t0 = time.perf_counter()
    prov = tables.read_provenance(locs_parquet)
    movie = prov.get("movie") or {}
    ps, fps = movie.get("pixel_size_um"), movie.get("fps")
    if not ps or not fps:
        raise ScopeflowError(f"{locs_parquet}: no pixel size / fps in its provenance; rerun the "
                             "locate step (scopeflow.track.pipeline.locate_movie)")
    from scopeflow.track.link import require_msd_frames

    require_msd_frames(movie.get("n_frames"), (prov.get("inputs") or [sample])[0])
    locs = tables.read_table(locs_parquet)
    locs = locs.drop(columns=["sample"]).rename(columns={"y_px": "y", "x_px": "x"})
    params = {"search_range_px": search_range_px, "memory": memory,
              "adaptive_stop_px": adaptive_stop_px, "min_length": min_length, "drift": drift,
              "max_lag": max_lag, "fit_lags": fit_lags}
    res = track_pipeline(
        locs, float(ps), float(fps), search_range=search_range_px, memory=memory,
        adaptive_stop=adaptive_stop_px, min_length=min_length, drift=drift, max_lag=max_lag,
        fit_lags=fit_lags, n_frames=movie.get("n_frames"),
    )
    tr = res["tracks"].rename(columns={"y": "y_px", "x": "x_px"})
    tr.insert(0, "sample", sample)
    tr["t_s"] = tr["frame"].to_numpy(float) / float(fps)
    tr = tr.reindex(columns=TRACK_COLUMNS)
    tr["particle"] = tr["particle"].astype(np.int64)
    tr["frame"] = tr["frame"].astype(np.int64)
    for c in TRACK_COLUMNS[3:]:
        tr[c] = tr[c].astype(np.float64)
    per = res["diffusion"].copy()
    per.insert(0, "sample", sample)
    per = per.reindex(columns=DIFFUSION_COLUMNS)
    ens = res["ensemble"].copy()
    ens.insert(0, "sample", sample)
    ens = ens.reindex(columns=MSD_COLUMNS)
    for df, ints in ((per, ("particle", "n_frames", "n_lags")), (ens, ("lag", "n_disp"))):
        for c in df.columns[1:]:
            df[c] = df[c].astype(np.int64 if c in ints else np.float64)
    summary = {"sample": sample, **res["summary"],
               "detector": (prov.get("locate") or {}).get("detector")}
    row = pd.DataFrame([{c: summary.get(c, np.nan) for c in SAMPLE_COLUMNS}])
    for c in ("n_frames", "n_localizations", "n_tracks", "fit_lags"):
        row[c] = row[c].astype(np.int64)
    for c in SAMPLE_COLUMNS[1:-1]:
        if c not in ("n_frames", "n_localizations", "n_tracks", "fit_lags"):
            row[c] = row[c].astype(np.float64)
    if res["summary"]["n_tracks"] == 0:
        log.warning("%s: no track of at least %d frames (movie has %s frames); lower "
                    "track.min_length or check the localisations", sample, min_length,
                    movie.get("n_frames"))
    run = dict(provenance or {})
    prov = {**prov, **run, "models": {**prov.get("models", {}), **run.get("models", {})},
            "track": params}
    tables.write_table(tr, out_tracks, prov)
    tables.write_table(per, out_diffusion, prov)
    tables.write_table(ens, out_msd, prov)
    tables.write_table(row, out_sample, prov)  # last
    log.info("%s: %d tracks, D = %.4g µm²/s, exponent %.3f, %.1f s", sample,
             summary["n_tracks"], summary["D_um2_s"], summary["exponent"],
             time.perf_counter() - t0)
    return summary


def tracks_figure(
    zarr_path: str | Path,
    tracks_parquet: str | Path,
    msd_parquet: str | Path,
    diffusion_parquet: str | Path,
    sample_parquet: str | Path,
    out_png: str | Path,
    *,
    sample: str,
    max_tracks: int = 2000,
) -> None:
    """Report figure: trajectories over the first frame, ensemble MSD (log-log) with the fit,
    and the per-particle D histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, attrs = read_movie(zarr_path)
    tr = tables.read_table(tracks_parquet)
    ens = tables.read_table(msd_parquet)
    per = tables.read_table(diffusion_parquet)
    s = tables.read_table(sample_parquet).iloc[0]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1.5, 1, 1]})
    ax = axes[0]
    if frames.shape[0]:
        img = np.asarray(frames[0], dtype=np.float32)
        lo, hi = np.percentile(img, [0.5, 99.5])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ids = tr["particle"].unique()[:max_tracks]
    cmap = plt.get_cmap("tab20")
    for k, (_, g) in enumerate(tr[tr["particle"].isin(ids)].groupby("particle", sort=False)):
        ax.plot(g["x_px"], g["y_px"], "-", lw=0.9, color=cmap(k % 20))
    ax.set_title(f"{len(ids)} tracks over frame 0 ({attrs.get('pixel_size_um', float('nan')):.3g}"
                 " µm/px)")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax = axes[1]
    if len(ens):
        ax.loglog(ens["lag_s"], ens["msd_um2"], "o", ms=3, color="0.2", label="ensemble MSD")
        t = ens["lag_s"].to_numpy()
        if np.isfinite(s["D_um2_s"]):
            ax.loglog(t, 4 * s["D_um2_s"] * t + s["msd_offset_um2"], "-", color="C3",
                      label=f"4Dτ + c, D = {s['D_um2_s']:.3g} µm²/s")
            ax.loglog(t, s["A_um2_s"] * t ** s["exponent"], "--", color="C0",
                      label=f"Aτ^n, n = {s['exponent']:.2f}")
        if np.isfinite(s["fps"]) and s["fit_lags"] > 0:
            ax.axvspan(t[0], s["fit_lags"] / s["fps"], color="C3", alpha=0.08, label="fitted lags")
        ax.legend(fontsize=8)
    ax.set_xlabel("lag τ (s)")
    ax.set_ylabel("MSD (µm²)")
    ax.set_title(f"ensemble MSD (drift-corrected), fit on {int(s['fit_lags'])} lags")
    ax = axes[2]
    d = per["D_um2_s"].to_numpy(float)
    d = d[np.isfinite(d) & (d > 0)]
    if len(d):
        ax.hist(d, bins=min(50, max(5, len(d) // 5)), color="0.3")
        ax.axvline(s["D_um2_s"], color="C3", label="ensemble D")
        ax.legend(fontsize=8)
    ax.set_xlabel("D per particle (µm²/s)")
    ax.set_title(f"per-particle D, n = {len(d)}")
    fig.suptitle(f"sample {sample}: {int(s['n_frames'])} frames at {s['fps']:.3g} fps, "
                 f"{int(s['n_tracks'])} tracks, D = {s['D_um2_s']:.4g} µm²/s "
                 f"({s['detector']})")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def make_demo_movie(
    out_dir: str | Path,
    *,
    n_frames: int = 40,
    size: int = 256,
    n_beads: int = 60,
    D_um2_s: float = 0.4,
    pixel_size_um: float = 0.35,
    fps: float = 24.0,
    seed: int = 0,
) -> Path:
    """Write a simulated bead movie with known D: a folder of 16-bit TIFF frames, the
    ``scopeflow_beads.json`` marker (pixel size, fps, simulation parameters) and ``truth.csv``
    (``frame, particle, y, x, photons``; px).

    Fluorescent Gaussian beads (σ 1.5 px, 500–3000 photons, background 20) diffusing in 2-D
    and entering/leaving the field of view (:func:`scopeflow.simulate.beads.simulate_movie`).
    The folder is written under a temporary name and renamed into place.
    """
    import tifffile

    from scopeflow.simulate.beads import simulate_movie

    out = Path(out_dir)
    params = {"n_frames": n_frames, "shape": [size, size], "n_beads": n_beads,
              "D_um2_s": D_um2_s, "pixel_size_um": pixel_size_um, "fps": fps,
              "profile": "gaussian", "sigma_px": 1.5, "photons": [500.0, 3000.0],
              "background": 20.0, "seed": seed}
    movie, truth = simulate_movie(n_frames, (size, size), n_beads, D_um2_s, pixel_size_um, fps,
                                  sigma_px=1.5, photons=(500.0, 3000.0), background=20.0,
                                  seed=seed)
    tmp = temp_path(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    width = max(4, len(str(n_frames - 1)))
    for t, frame in enumerate(movie):
        tifffile.imwrite(tmp / f"frame_{t:0{width}d}.tif", frame)
    truth.to_csv(tmp / "truth.csv", index=False)
    meta = {"pixel_size_um": pixel_size_um, "fps": fps,
            "description": "scopeflow simulated bead movie (scopeflow.track.pipeline."
                           "make_demo_movie); truth.csv holds the true positions (px)",
            "simulation": params}
    (tmp / BEADS_MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    replace(tmp, out)
    return out
