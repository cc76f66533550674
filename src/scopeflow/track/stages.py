"""Stage functions of the bead-tracking workflow and CLI, on paths: movie -> tables.

``ingest_movie`` (:mod:`scopeflow.track.movie`: frames -> OME-Zarr (t, y, x)) ->
``locate_movie`` (localisations) -> ``track_movie`` (tracks, per-particle diffusion,
ensemble MSD, per-sample summary) -> ``tracks_figure`` (:mod:`scopeflow.track.figures`,
report PNG). Each Snakemake script in ``scripts/`` is a thin call to one of these; they are
also usable (and tested) without Snakemake. :func:`cli_locate` and :func:`cli_track` are the
same steps for ``scopeflow locate`` / ``scopeflow track`` on a frame folder or TIFF, writing
CSV. Every output is written to a temporary name and renamed into place, so an interrupted
stage never leaves a complete-looking result.

Coordinates: (y, x) in pixels with the origin at the centre of pixel (0, 0) (as trackpy);
lengths in the tables are micrometres (``*_um``), times seconds (``*_s``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scopeflow.errors import ScopeflowError
from scopeflow.io import tables
from scopeflow.io.atomic import atomic_path, write_text
from scopeflow.track.analysis import track_pipeline
from scopeflow.track.localize import locate_stack
from scopeflow.track.motion import require_msd_frames
from scopeflow.track.movie import _movie_record, calibration_note, read_frames, read_movie
from scopeflow.track.params import LinkParams, LocateParams
from scopeflow.track.units import rename_units, unit_names

log = logging.getLogger("scopeflow")

__all__ = [
    "DIFFUSION_COLUMNS",
    "LOC_COLUMNS",
    "MSD_COLUMNS",
    "SAMPLE_COLUMNS",
    "TRACK_COLUMNS",
    "cli_locate",
    "cli_track",
    "locate_movie",
    "track_movie",
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
SAMPLE_COLUMNS = ["sample", "n_frames", "n_localizations", "n_tracks", "min_length",
                  "median_track_length",
                  "pixel_size_um", "fps", "D_um2_s", "D_se_um2_s", "D_ci_low_um2_s",
                  "D_ci_high_um2_s", "exponent", "A_um2_s", "msd_offset_um2",
                  "fit_lags", "D_particle_median_um2_s", "D_particle_iqr_um2_s", "median_ep_px",
                  "drift_y_px", "drift_x_px", "detector"]


def locate_movie(
    zarr_path: str | Path,
    out_parquet: str | Path,
    *,
    sample: str,
    model: str | None = "none",
    threads: int = 1,
    block: int = 256,
    params: LocateParams | None = None,
    provenance: Mapping | None = None,
    **changes,
) -> pd.DataFrame:
    """Detect and localise the beads of every frame of a movie store; write the table.

    Frames are processed in blocks of ``block`` frames (bounded memory). The bead model (σ or
    template, polarity) is estimated on the first block and then held fixed, so the result
    is the same as one :func:`~scopeflow.track.localize.locate_stack` call on the whole movie
    (blocks hold at least ``pilot_frames`` frames).

    Parameters
    ----------
    zarr_path : str or Path
        Store written by :func:`~scopeflow.track.movie.ingest_movie`.
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
    params : LocateParams, optional
        The localiser's options (:class:`~scopeflow.track.params.LocateParams`; None: the
        defaults).
    provenance : mapping, optional
        Run provenance (scopeflow version, config hash ...) to extend.
    **changes
        Fields of :class:`~scopeflow.track.params.LocateParams` to change, by name
        (``profile``, ``sigma_px``, ``snr_threshold`` ...); None values keep the default.
    """
    frames, attrs = read_movie(zarr_path)
    p = (params or LocateParams()).with_changes(
        **{k: v for k, v in changes.items() if v is not None})
    net = None
    if model not in (None, "none", "matched_filter"):
        from scopeflow.models.beadnet import BeadNet

        net = BeadNet.load(None if model in ("beadnet", "default", "shipped") else model,
                           threads=max(1, int(threads)))
    n = int(frames.shape[0])
    block = max(int(block), int(p.pilot_frames), 1)
    parts, first_attrs = [], {}
    t0 = time.perf_counter()
    for start in range(0, n, block):
        chunk = np.asarray(frames[start:start + block])
        locs = locate_stack(chunk, net, p, first_frame=start, workers=max(1, int(threads)))
        if start == 0 and str(locs.attrs.get("profile", "")).startswith("auto"):
            first_attrs = dict(locs.attrs)  # hold the bead classes of the first block fixed
            p = p.with_changes(classes=first_attrs["classes"])
        elif start == 0:  # hold the bead model of the first block fixed
            first_attrs = dict(locs.attrs)
            fixed = {"sigma_px": first_attrs["sigma_px"], "radius_px": first_attrs["radius_px"]}
            if first_attrs["profile"] == "template":
                fixed.update(profile="template", template=np.asarray(first_attrs["template"]))
            if net is None and p.invert is None:
                fixed["invert"] = bool(first_attrs["polarity"] < 0)
            p = p.with_changes(**fixed)
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
        "options": p.record(),
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
    params: LinkParams | None = None,
    provenance: Mapping | None = None,
    **changes,
) -> dict:
    """Link localisations into tracks and measure MSD and diffusion; write four tables.

    The recipe of the trackpy walkthrough (:func:`scopeflow.track.analysis.track_pipeline`):
    link (``search_range_px``, ``memory``, optional adaptive search) -> keep tracks of at
    least ``min_length`` frames ("auto": the fitted lags + 1) -> subtract the ensemble
    drift (``drift``) -> ensemble and per-particle MSD up to ``max_lag`` frames ->
    ``MSD = 4 D τ + c`` on the first ``fit_lags`` lags.

    Parameters
    ----------
    locs_parquet : str or Path
        From :func:`locate_movie` (its provenance gives the pixel size, fps and frame count).
    out_tracks, out_diffusion, out_msd, out_sample : str or Path
        Parquet tables (+ CSV mirrors) with :data:`TRACK_COLUMNS`, :data:`DIFFUSION_COLUMNS`,
        :data:`MSD_COLUMNS` and :data:`SAMPLE_COLUMNS` (+ ``length_unit, time_unit``). The
        sample summary is written last. A movie without pixel size and/or frame rate
        (``pixel_size_um`` / ``fps`` None in its provenance) is measured in px and/or frames
        and the columns say so, as for ``scopeflow track``
        (:func:`~scopeflow.track.units.rename_units`: ``D_px2_frame``, ``msd_px2``,
        ``lag_frame``, ``t_frame``; ``y_um, x_um`` dropped); one note line in the log.
    sample : str
        Sample name (first column of every table).
    params : LinkParams, optional
        Linking and MSD options (:class:`~scopeflow.track.params.LinkParams`; None: the
        defaults).
    provenance : mapping, optional
        Run provenance (scopeflow version, config hash ...) to extend.
    **changes
        Fields of :class:`~scopeflow.track.params.LinkParams` to change, by name.

    Returns
    -------
    dict
        The summary row.
    """
    t0 = time.perf_counter()
    prov = tables.read_provenance(locs_parquet)
    movie = prov.get("movie") or {}
    if "pixel_size_um" not in movie or "fps" not in movie:
        raise ScopeflowError(f"{locs_parquet}: no pixel size / fps in its provenance; rerun the "
                             "locate step (scopeflow.track.stages.locate_movie)")
    ps, fps = movie["pixel_size_um"], movie["fps"]  # None: unknown, px / frames
    known = (bool(ps), bool(fps))
    note = calibration_note(movie)
    if note:
        log.info("%s: %s", sample, note)
    require_msd_frames(movie.get("n_frames"), (prov.get("inputs") or [sample])[0])
    locs = tables.read_table(locs_parquet)
    locs = locs.drop(columns=["sample"]).rename(columns={"y_px": "y", "x_px": "x"})
    p = (params or LinkParams()).with_changes(**changes)
    res = track_pipeline(locs, float(ps or 1.0), float(fps or 1.0), p,
                         n_frames=movie.get("n_frames"))
    tr = res["tracks"].rename(columns={"y": "y_px", "x": "x_px"})
    tr.insert(0, "sample", sample)
    tr["t_s"] = tr["frame"].to_numpy(float) / float(fps or 1.0)
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
    summary = {"sample": sample, **res["summary"], "pixel_size_um": ps, "fps": fps,
               "detector": (prov.get("locate") or {}).get("detector")}
    row = pd.DataFrame([{c: summary.get(c, np.nan) for c in SAMPLE_COLUMNS}])
    row["pixel_size_um"] = row["pixel_size_um"].astype(np.float64)  # NaN when unknown
    row["fps"] = row["fps"].astype(np.float64)
    ints = ("n_frames", "n_localizations", "n_tracks", "min_length", "fit_lags")
    for c in ints:
        row[c] = row[c].astype(np.int64)
    for c in SAMPLE_COLUMNS[1:-1]:
        if c not in ints:
            row[c] = row[c].astype(np.float64)
    if res["summary"]["n_tracks"] == 0:
        log.warning("%s: no track of at least %d frames (movie has %s frames); lower "
                    "track.min_length or check the localisations", sample,
                    res["summary"]["min_length"], movie.get("n_frames"))
    run = dict(provenance or {})
    prov = {**prov, **run, "models": {**prov.get("models", {}), **run.get("models", {})},
            "track": p.record()}
    lu, tu = unit_names(*known)
    row = rename_units(row, *known)
    row.insert(row.columns.get_loc("fps") + 1, "length_unit", lu)
    row.insert(row.columns.get_loc("length_unit") + 1, "time_unit", tu)
    tables.write_table(rename_units(tr, *known), out_tracks, prov)
    tables.write_table(rename_units(per, *known), out_diffusion, prov)
    tables.write_table(rename_units(ens, *known), out_msd, prov)
    tables.write_table(row, out_sample, prov)  # last
    summary = rename_units(summary, *known)
    log.info("%s: %d tracks, D = %.4g %s²/%s, exponent %.3f, %.1f s", sample,
             summary["n_tracks"], summary[f"D_{lu}2_{tu}"], lu, tu, summary["exponent"],
             time.perf_counter() - t0)
    return summary


def cli_locate(path_or_stack, out_csv, **opts) -> pd.DataFrame:
    """Localise beads in an image, a frame folder, a multi-page TIFF or an array; write CSV.

    Parameters
    ----------
    path_or_stack : str, Path or ndarray
        See :func:`~scopeflow.track.movie.read_frames`.
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
        Movie (see :func:`~scopeflow.track.movie.read_frames`).
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
        Fields of :class:`~scopeflow.track.params.LinkParams` (``search_range_px``,
        ``memory``, ``adaptive_stop_px``, ``min_length``, ``drift``, ``max_lag``,
        ``fit_lags``) go to :func:`scopeflow.track.analysis.track_pipeline`; every other
        option goes to :func:`locate_stack` (``model`` defaults to None, the matched filter).

    Returns
    -------
    dict
        The :func:`track_pipeline` result plus ``locs``; ``summary`` is also written as JSON.
    """
    lopts = {k: opts.pop(k) for k in LinkParams.CONFIG_KEYS if k in opts}
    movie = read_frames(frames)
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
