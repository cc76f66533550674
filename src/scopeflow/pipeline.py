"""Stage functions of the smear workflow, on paths: ingest -> image store -> segment -> measure.

Each Snakemake script is a thin call to one of these; they are also usable (and tested)
without Snakemake. Every output is written so that an interrupted stage never leaves a
complete-looking result: tables are renamed into place, and the segmentation record that
marks a store as segmented is written last.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scopeflow.errors import InputImageError, ScopeflowError
from scopeflow.io.atomic import atomic_path, write_text
from scopeflow.io.discover import SMEAR_KINDS, detect_kind, dpc_files, dpc_fovs
from scopeflow.io.images import read_gray

if TYPE_CHECKING:  # a job imports only what its stage uses (start-up time)
    import pandas as pd

log = logging.getLogger("scopeflow")

LEFT = "BF_LED_matrix_left_half"
RIGHT = "BF_LED_matrix_right_half"


def _atomic_json(obj: Mapping, path: str | Path) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def ingest(kind: str, path: str | Path, out_fovs: str | Path, out_flatfield: str | Path,
           **kwargs) -> pd.DataFrame:
    """:func:`ingest_rows` returning the FOV table as a DataFrame (the same rows as ``out_fovs``)."""
    import pandas as pd

    return pd.DataFrame(ingest_rows(kind, path, out_fovs, out_flatfield, **kwargs))


def ingest_rows(
    kind: str,
    path: str | Path,
    out_fovs: str | Path,
    out_flatfield: str | Path,
    *,
    pixel_size_um: float | None = None,
    default_pixel_size_um: float | None = None,
    na: float | None = None,
    wavelength_um: float = 0.525,
    flatfield: bool = True,
    max_flatfield_fovs: int = 64,
    files: Sequence[Sequence] | None = None,
    fluorescence_channel: str | None = None,
    regions: Sequence[str] | None = None,
    zstack: str | int = "best_focus",
    focus_metric: str = "laplacian_var",
    timepoints: Sequence[int] | None = None,
    previous_fovs: str | Path | None = None,
) -> list[dict]:
    """Validate a sample's input, list its FOVs and estimate per-channel flatfields.

    Parameters
    ----------
    kind : {"smear_raw", "smear_dpc"}
        Sample kind.
    path : str or Path
        Octopi/Squid acquisition folder (any save mode, see :mod:`scopeflow.io.squid`), or DPC
        image file, OME-Zarr (NGFF 0.4/0.5 image, plate, collection) or a folder of these; an
        OME-Zarr gives its own pixel size (scale, µm).
    out_fovs : path
        TSV written with one row per FOV (``fov``, ``t``, ``region``, z choice, source images
        or plane references, stage position, shape, bit depth and the camera's true maximum
        ``max_value``, ``pixel_size_um``, ``na``, ``wavelength_um``).
    out_flatfield : path
        ``.npz`` with the coarse flatfields ``left_coarse`` and ``right_coarse``
        (:func:`scopeflow.normalize.coarse_flatfield`), ``shape`` and ``bin_factor``
        (:func:`load_flatfields` expands them), or empty for ``smear_dpc``.
    pixel_size_um : float, optional
        Pixel size from the sample sheet; overrides the acquisition metadata.
    default_pixel_size_um : float, optional
        Used when neither the sheet nor the metadata give a pixel size.
    na, wavelength_um : float
        Optics fallbacks when the metadata do not give them.
    flatfield : bool
        Estimate flatfields (``smear_raw`` only); otherwise unit flatfields.
    max_flatfield_fovs : int
        At most this many evenly spaced FOVs enter each flatfield estimate.
    files : sequence of (name, size, mtime_ns), optional
        The input manifest made when the run was planned
        (:func:`scopeflow.io.readiness.file_manifest`): only the FOVs with images listed there
        are processed (files that arrived later wait for the next run), and the listed files
        must be unchanged.
    fluorescence_channel : str, optional
        Channel suffix of a fluorescence frame (e.g. ``"Fluorescence_405_nm_Ex"``) recorded
        in a ``fluorescence`` column (``smear_raw`` only; see
        :func:`scopeflow.parasites.stage.fluorescence_files`).
    regions : sequence of str, optional
        Only these regions (wells) of the acquisition (``smear_raw``); default all.
    zstack : "best_focus", "all" or int
        Which plane(s) of each FOV's z-stack to analyse
        (:func:`scopeflow.qc.best_focus.select_plane`); the choice and the planes' focus
        scores are recorded in the rows (``n_z``, ``z_selection``, ``z_focus_scores``).
    focus_metric : str
        Focus metric of ``best_focus`` (the ``qc.focus_metric``).
    timepoints : sequence of int, optional
        Only the FOVs of these time points (``smear_raw``; the workflow ingests each time point
        of an acquisition as it completes); the flatfields are estimated from them. Default all.
    previous_fovs : path, optional
        The FOV list of the time points ingested before: ``out_fovs`` lists its rows, then
        these (so the last time point's list is the sample's).

    Returns
    -------
    list of dict
        The rows written to ``out_fovs`` (without pandas: the ingest job does not import it).

    Raises
    ------
    ScopeflowError
        One line naming the file and what to do: unreadable, missing or mismatched images,
        an all-black acquisition, non-finite DPC pixels, a file changed since planning.
    """
    from scopeflow import normalize
    from scopeflow.io.images import to_unit_float
    from scopeflow.io.readiness import verify_files
    from scopeflow.io.squid import read_acquisition
    from scopeflow.qc.best_focus import parse_zstack

    path = Path(path)
    rows = []
    ff = {}
    if kind == "unknown":  # discovery could not tell: say why
        kind = detect_kind(path)
    planned = None if files is None else verify_files(path, files)
    if kind == "smear_raw":
        if planned is None:
            acq = read_acquisition(path, pixel_size_um=pixel_size_um, regions=regions,
                                   timepoints=timepoints)
        else:
            acq = read_acquisition(path, pixel_size_um=pixel_size_um, required_channels=(),
                                   regions=regions, timepoints=timepoints)
            acq.fovs = _planned_fovs(acq, path, files, planned)
        ps = acq.pixel_size_um or default_pixel_size_um
        zstack = parse_zstack(zstack)
        # each plane is read once: validated and focus-scored here, and the evenly spaced subset
        # of the chosen FOVs (bounding time and memory on slides of hundreds of FOVs) binned for
        # the flatfields (scaled as load_pair does: the flatfields have mean 1 anyway)
        stacks = {(f.t, f.region, f.i, f.j) for f in acq.fovs}
        n_chosen = len(acq.fovs) if zstack == "all" else len(stacks)
        step = max(1, n_chosen // max_flatfield_fovs)
        binned: dict[str, list[np.ndarray]] = {"left": [], "right": []}
        factor = None
        first_shape = []

        def keep(n: int, left: np.ndarray, right: np.ndarray) -> None:
            nonlocal factor
            first_shape[:] = first_shape or [left.shape]
            if flatfield and n % step == 0 and left.shape == first_shape[0]:
                factor = factor or normalize.flatfield_bin_factor(left.shape)
                binned["left"].append(normalize.bin_image(to_unit_float(left), factor))
                binned["right"].append(normalize.bin_image(to_unit_float(right), factor))

        rows, chosen, lit = _raw_rows(acq, zstack, focus_metric, keep)
        acq.fovs = chosen
        for row in rows:
            row["objective"] = acq.objective
        shapes = {(r["height"], r["width"]) for r in rows}
        if len(shapes) > 1:
            raise InputImageError(
                f"{path}: FOVs have different sizes {sorted(shapes)}; split the acquisition "
                "into samples with one image size each"
            )
        if not lit:
            raise InputImageError(
                f"{path}: every image is black (all pixels 0 in all {len(acq.fovs)} FOVs); the "
                "illumination or camera failed, re-acquire the slide or remove the sample"
            )
        if fluorescence_channel:  # every FOV or none; a wrong frame stops here, naming it
            from scopeflow.parasites.stage import scan_fluorescence

            fl, fl_top = scan_fluorescence(acq.fovs, fluorescence_channel, next(iter(shapes)),
                                           getattr(acq, "bit_depth", None))
            for row, f in zip(rows, fl, strict=True):
                row["fluorescence"] = f
                if fl_top is not None:  # the camera's full scale (12-bit in 16: 4095)
                    row["fluorescence_max"] = fl_top
        if flatfield and acq.fovs:
            # the coarse (binned, smoothed) flatfields: the dpc jobs expand them once each
            shape = next(iter(shapes))
            try:
                ff = {f"{side}_coarse": normalize.coarse_flatfield(binned[side], shape, factor)
                      for side in ("left", "right")}
                for side in ("left", "right"):  # a flatfield without signal fails here, not in dpc
                    normalize.flatfield_mean(ff[f"{side}_coarse"], shape, factor)
            except ValueError as exc:
                raise InputImageError(
                    f"{path}: cannot estimate the flatfield ({exc}); check the images, or set "
                    "dpc.flatfield: false"
                ) from None
            ff["shape"] = np.asarray(shape, np.int64)
            ff["bin_factor"] = np.asarray(factor, np.int64)
        na_used = acq.na or na
    elif kind == "smear_dpc":
        ps = pixel_size_um or default_pixel_size_um
        found = dpc_files(path)
        if planned is not None:
            found = [f for f in found if f in planned or (f.is_dir() and any(f in q.parents for q in planned))]
            if not found:
                raise InputImageError(f"{path}: none of its images was complete when the run was planned; rerun")
        ngff_ps = set()
        for name, f in dpc_fovs(path, found):
            img = read_dpc_image(f)
            if Path(f).is_dir():  # an NGFF image group: its own pixel size
                from scopeflow.io import ngff_image

                ngff_ps.add(ngff_image.pixel_size_um(ngff_image.open_image(f)))
            bad = int(img.size - np.count_nonzero(np.isfinite(img)))
            if bad:
                raise InputImageError(
                    f"{f}: {bad} pixels are NaN or infinite; export the DPC image with every pixel "
                    "finite (e.g. 0.5, no gradient, where there is no data)"
                )
            rows.append(
                {"fov": name, "t": 0, "i": np.nan, "j": np.nan, "k": np.nan,
                 "x_mm": np.nan, "y_mm": np.nan, "z_um": np.nan,
                 "image": str(f), "height": img.shape[0], "width": img.shape[1]}
            )
        if not pixel_size_um and len(ngff_ps) == 1 and None not in ngff_ps:
            ps = ngff_ps.pop()  # the OME-Zarr's own scale, unless the sheet says otherwise
        na_used = na
    else:
        raise ScopeflowError(f"{path}: unknown sample kind {kind!r}; use one of {', '.join(SMEAR_KINDS)}")
    if ps is None:
        raise ScopeflowError(
            f"{path}: pixel size unknown (not in the acquisition metadata); give pixel_size_um "
            "in the sample sheet or optics.pixel_size_um in the config"
        )
    for row in rows:
        row["pixel_size_um"] = float(ps)
        row["na"] = float(na_used) if na_used else np.nan
        row["wavelength_um"] = float(wavelength_um)
    if previous_fovs is not None:
        rows = read_fov_table(previous_fovs) + rows
    with atomic_path(out_fovs) as tmp, atomic_path(out_flatfield) as tmp_ff:
        _write_fov_table(rows, tmp)
        np.savez(tmp_ff, **ff)  # a few kB: the coarse flatfields, not full-resolution images
    log.info("%s: %d FOVs, pixel size %.4f um", path, len(rows), ps)
    return rows


def read_dpc_image(path: str | Path) -> np.ndarray:
    """A precomputed DPC field of view as float32 (y, x): an image file, or an NGFF image
    group (its ``dpc`` channel, or its only one), read by :mod:`scopeflow.io.ngff_image`."""
    p = Path(path)
    if p.is_dir():
        from scopeflow.io import ngff_image

        return ngff_image.read_dpc(p)
    return read_gray(p)


def _read_pair(fov) -> tuple[np.ndarray, np.ndarray]:
    """Left and right planes of a FOV as stored (files or container planes; RGB: green)."""
    from scopeflow.io.squid import read_source

    left, right = read_source(fov.files[LEFT]), read_source(fov.files[RIGHT])
    if left.shape != right.shape:
        raise InputImageError(
            f"{fov.files[RIGHT]}: shape {right.shape} differs from {fov.files[LEFT]} "
            f"{left.shape}; left and right images of a FOV must have the same size"
        )
    return left, right


def _raw_rows(acq, zstack: str | int, focus_metric: str, keep=None) -> tuple[list[dict], list, bool]:
    """FOV rows of an acquisition after the z choice, the chosen FOVs, and whether any pixel
    is lit (not 0).

    Reads every plane once (a truncated or mismatched file fails here; the next plane is read
    while the current one is scored), scores the planes of each stack with
    :func:`~scopeflow.qc.best_focus.plane_focus`, picks the plane(s) with
    :func:`~scopeflow.qc.best_focus.select_plane` and finds the camera's true maximum (bit depth
    from the metadata, alignment from the data, :func:`~scopeflow.io.squid.meta.true_max`).
    ``keep(n, left, right)`` is called with the raw planes of the n-th chosen FOV.
    Only the best plane so far of a stack is held in memory.
    """
    from scopeflow.io.squid.meta import true_max
    from scopeflow.qc.best_focus import plane_focus, select_plane

    fovs = sorted(acq.fovs, key=lambda f: (f.t, f.region, f.i, f.j, f.k))
    stack_of = lambda f: (f.t, f.region, f.i, f.j)  # noqa: E731
    sizes: dict[tuple, int] = {}
    for f in fovs:
        sizes[stack_of(f)] = sizes.get(stack_of(f), 0) + 1
    how = "all" if zstack == "all" else ("best_focus" if zstack == "best_focus" else "index")
    rows, chosen = [], []
    state = {"vmax": 0, "bits_or": 0, "dtype": None, "lit": False}
    pending: list = []  # candidate planes of the current stack: (fov, left, right)
    scores: list[float] = []

    def choose(fov, left, right) -> None:
        if keep is not None:
            keep(len(chosen), left, right)
        chosen.append(fov)
        n_z = sizes[stack_of(fov)]
        rows.append({
            "fov": fov.name, "t": fov.t, "region": fov.region, "i": fov.i, "j": fov.j,
            "k": fov.k, "n_z": n_z, "z_selection": how if n_z > 1 else "single",
            "z_focus_scores": "", "x_mm": fov.x_mm, "y_mm": fov.y_mm, "z_um": fov.z_um,
            "left": str(fov.files[LEFT]), "right": str(fov.files[RIGHT]),
            "height": left.shape[0], "width": left.shape[1],
        })

    def close_stack(key) -> None:
        """Pick the plane of the finished stack ``key`` (unless every plane is a FOV) and
        record the stack's focus scores on its rows."""
        if key is None:
            return
        if zstack != "all":
            if not pending:  # the z index is not in this stack: one-line error
                select_plane(sorted(f.k for f in fovs if stack_of(f) == key), None, zstack)
            choose(*pending[0])
        text = ";".join(f"{v:.6g}" for v in scores) if sizes[key] > 1 else ""
        for row in reversed(rows):
            if (row["t"], row["region"], row["i"], row["j"]) != key:
                break
            row["z_focus_scores"] = text
        pending.clear()
        scores.clear()

    small = lambda pair: pair[0].size <= OVERLAP_MAX_PIXELS  # noqa: E731
    current = None
    n = 0
    for pair in _prefetch(_read_pair, fovs, ahead=small):
        fov = fovs[n]
        n += 1
        left, right = pair
        pair = None
        key = stack_of(fov)
        if key != current:
            close_stack(current)
            current = key
        state["dtype"] = left.dtype
        state["lit"] = state["lit"] or bool(np.any(left) or np.any(right))
        if np.issubdtype(left.dtype, np.integer):
            state["vmax"] = max(state["vmax"], int(left.max()), int(right.max()))
            for img in (left, right):
                state["bits_or"] |= int(np.bitwise_or.reduce(img, axis=None))
        score = plane_focus(left, right, focus_metric) if sizes[key] > 1 else float("nan")
        scores.append(score)
        if zstack == "all":
            choose(fov, left, right)
        elif zstack == "best_focus":
            best = max((v for v in scores[:-1] if np.isfinite(v)), default=-np.inf)
            if not pending or (np.isfinite(score) and score > best):  # ties: the lowest k
                pending[:] = [(fov, left, right)]
        elif fov.k == zstack:
            pending[:] = [(fov, left, right)]
        del left, right
    close_stack(current)
    top = true_max(state["dtype"], acq.bit_depth, state["vmax"], state["bits_or"]) if rows else 1
    bits = (top >> ((top & -top).bit_length() - 1)).bit_length() if top > 1 else 1
    for r in rows:
        r["bit_depth"], r["max_value"] = bits, top
    return rows, chosen, state["lit"]


def _planned_fovs(acq, path: Path, files, planned: set[Path]) -> list:
    """The acquisition's FOVs with images in the manifest; each must have left and right there."""
    from scopeflow.io.discover import manifest_fovs

    fovs = manifest_fovs(acq.fovs, path, files)
    late = len(acq.fovs) - len(fovs)
    if late:
        log.info("%s: %d FOVs arrived after the run was planned; the next run processes them", path, late)
    if not fovs:
        raise InputImageError(
            f"{path}: no image of this acquisition was listed when the run was planned; rerun"
        )
    folders = {d for q in planned for d in q.parents}  # a Zarr array: its chunk files are listed

    def listed(src) -> bool:
        q = Path(getattr(src, "path", src))  # a plane reference lists its container
        return q in planned or q in folders

    for fov in fovs:
        for channel, words in ((LEFT, "left-half"), (RIGHT, "right-half")):
            f = fov.files.get(channel)
            if f is None or not listed(f):
                raise InputImageError(
                    f"{fov.expected_file(channel)}: missing {words} image for FOV {fov.i}_{fov.j}_{fov.k} "
                    f"(t={fov.t}); copy it, or re-export the acquisition with both {LEFT} and {RIGHT} "
                    f"channels (found: {', '.join(sorted(fov.files))})"
                )
    return fovs


def _tsv_text(value) -> str:
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return ""
    return str(value)


def _write_fov_table(rows: Sequence[Mapping], path: str | Path) -> None:
    """Write FOV rows as a TSV (NaN as empty), as ``pandas.DataFrame.to_csv`` wrote it."""
    import csv

    columns = list(dict.fromkeys(k for row in rows for k in row)) or [
        "fov", "pixel_size_um", "na", "wavelength_um"]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_tsv_text(row.get(c, float("nan"))) for c in columns])


#: Columns of the FOV list that hold text (file names); the others are numbers.
_TEXT_COLUMNS = {"fov", "left", "right", "image", "fluorescence", "region", "z_selection",
                 "z_focus_scores", "objective"}


def _tsv_value(column: str, text: str):
    if column in _TEXT_COLUMNS:
        return text
    if text == "" or text.lower() == "nan":
        return float("nan")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:  # a column of text (file names) a later stage added
        return text


def read_fov_table(fovs_tsv: str | Path) -> list[dict]:
    """The rows of an ingest's ``fovs.tsv`` as dicts (numbers as int or float, NaN when
    empty; ``fov`` and file columns as text), without pandas."""
    import csv

    with open(fovs_tsv, newline="") as fh:
        return [{k: _tsv_value(k, v) for k, v in row.items()} for row in csv.DictReader(fh, delimiter="\t")]


def shard_fovs(fovs_tsv: str | Path, shard: int, fovs_per_job: int, timepoint: int | None = None) -> list[str]:
    """FOV names of shard ``shard`` (0-based): consecutive blocks of ``fovs_per_job`` FOVs (of
    time point ``timepoint`` only, when given)."""
    names = [r["fov"] for r in read_fov_table(fovs_tsv) if timepoint is None or r["t"] == timepoint]
    return names[shard * fovs_per_job:(shard + 1) * fovs_per_job]


def create_store(
    fovs_tsv: str | Path, out_zarr: str | Path, provenance: Mapping | None = None, *,
    record: str | Path | None = None, extend: bool = False,
) -> dict:
    """Create the sample's empty OME-Zarr plate: one well per stage-grid position.

    Octopi FOVs are placed by their grid indices (row ``i``, column ``j``); FOVs without
    them (DPC files) fill a near-square grid in name order (:func:`ome_zarr.plate_layout`).
    ``record`` (JSON: the store and each FOV's group path), when given, is written last.
    ``extend``: keep the FOVs already stored (a time point added to a processed acquisition,
    see :func:`scopeflow.io.ome_zarr.create_sample_store`).
    """
    from scopeflow.io import ome_zarr

    rows = read_fov_table(fovs_tsv)
    names = [r["fov"] for r in rows]
    ij = [(r.get("i"), r.get("j")) for r in rows]
    positions = None
    if all(isinstance(v, (int, float)) and np.isfinite(v) for pair in ij for v in pair):
        positions = {n: (int(i), int(j)) for n, (i, j) in zip(names, ij)}
    ome_zarr.create_sample_store(out_zarr, names, provenance or {}, positions=positions, extend=extend)
    info = {"store": str(out_zarr), "fovs": {n: ome_zarr.fov_path(out_zarr, n) for n in names}}
    if record is not None:
        _atomic_json(info, record)
    return info


def finish_store(zarr_path: str | Path, segmentation_records: Sequence[str | Path],
                 out_flag: str | Path) -> dict:
    """Flag a sample store complete: every FOV has its image and its ``labels/cells``.

    Writes ``out_flag`` (``<sample>.ome.zarr.done``, JSON: FOVs, labelled FOVs, cells, NGFF
    version) beside the store, last.

    Raises
    ------
    ScopeflowError
        If a FOV's image or labels are missing (naming it).
    """
    from scopeflow.io import ome_zarr

    n_cells = sum(sum(json.loads(Path(r).read_text())["fovs"].values()) for r in segmentation_records)
    try:
        check = ome_zarr.store_complete(zarr_path)
    except ValueError as exc:
        raise ScopeflowError(str(exc)) from exc
    if check["labels"] != check["fovs"]:
        raise ScopeflowError(f"{zarr_path}: {check['fovs'] - check['labels']} FOV(s) have no "
                             "labels/cells; rerun the segment jobs")
    record = ome_zarr.mark_complete(zarr_path, out_flag, {"n_cells": n_cells})
    log.info("%s: complete, %d FOVs, %d cells", zarr_path, record["fovs"], n_cells)
    return record


def _prefetch(fn, items: Sequence, ahead=True):
    """Yield ``fn(item)`` for each item in order; the next item's call runs in a background
    thread while the caller works on the current one (one item in flight) when ``ahead``
    (a bool, or a predicate of the current result: large FOVs are not read ahead, bounding
    memory).

    Exceptions are raised when their item is reached, so earlier items are handled first.
    """
    items = list(items)
    if not items:
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="scopeflow-read") as pool:
        future = pool.submit(fn, items[0])
        for k in range(len(items)):
            box = [future.result()]
            future = None  # the future holds its result too
            if k + 1 < len(items) and (ahead(box[0]) if callable(ahead) else ahead):
                future = pool.submit(fn, items[k + 1])
            try:
                # the caller holds the only reference: it frees the item when done with it
                yield box.pop()
            except BaseException:
                if future is not None:
                    future.cancel()
                raise
            if k + 1 < len(items) and future is None:
                future = pool.submit(fn, items[k + 1])


def load_flatfields(flatfield_npz: str | Path) -> dict[str, np.ndarray]:
    """The full-resolution ``left`` / ``right`` flatfields (float32, mean 1) of an ingest's ``.npz``.

    Coarse flatfields (``<side>_coarse``, ``shape``, ``bin_factor``, as :func:`ingest`
    writes them) are expanded with :func:`scopeflow.normalize.expand_flatfield`; files with
    full-resolution ``left`` / ``right`` arrays are read as they are. Empty for a sample
    without flatfields.
    """
    from scopeflow import normalize

    with np.load(flatfield_npz) as z:
        data = {k: z[k] for k in z.files}
    out = {}
    for side in ("left", "right"):
        if side in data:
            out[side] = np.asarray(data[side], np.float32)
        elif f"{side}_coarse" in data:
            shape = tuple(int(v) for v in data["shape"])
            out[side] = normalize.expand_flatfield(data[f"{side}_coarse"], shape, int(data["bin_factor"]))
    return out


#: FOVs of at most this many pixels are read ahead and written to the store in the
#: background while the next one is computed; larger ones one at a time (bounding a job's
#: memory to about one FOV's arrays).
OVERLAP_MAX_PIXELS = 16 * 2**20


def _read_plane(path: str | Path) -> np.ndarray:
    """A 2-D image as stored (RGB: green), like :func:`~scopeflow.io.images.read_gray` unscaled;
    a plane reference (``<container>::<kind>:<indices>``) reads that plane of its container."""
    from scopeflow.io.images import read_image
    from scopeflow.io.squid.planes import SEP, read_source

    if SEP in str(path):
        return read_source(path)
    return read_image(path, "green", unit=False)


def _read_fov_inputs(row: Mapping) -> tuple:
    """The images a dpc job reads for one FOV row: (left, right) or (DPC,)."""
    if isinstance(row.get("left"), str):
        left = _read_plane(row["left"])  # as stored (uint8): 1 byte per pixel while read ahead
        right = _read_plane(row["right"])
        if left.shape != right.shape:
            raise InputImageError(
                f"{row['right']}: shape {right.shape} differs from {row['left']} {left.shape}; "
                "left and right images of a FOV must have the same size"
            )
        return left, right
    return (read_dpc_image(row["image"]),)  # an image file or an NGFF image group


#: FOV list columns copied into each FOV's store attributes and from there into the FOV table.
RAW_ATTRS = ("t", "region", "i", "j", "k", "n_z", "z_selection", "z_focus_scores", "x_mm", "y_mm",
             "z_um", "bit_depth", "objective")


def write_images(
    fovs_tsv: str | Path,
    flatfield_npz: str | Path,
    zarr_path: str | Path,
    out_record: str | Path,
    *,
    fovs: Sequence[str] | None = None,
    phase: bool = True,
    phase_reg: float = 3e-3,
    na_illum: float | None = None,
    chunk: int = 1024,
    threads: int = 1,
) -> dict:
    """Compute DPC (and quantitative phase) of FOVs and write them into the sample store.

    For ``smear_raw`` rows: flatfield-correct left/right, DPC = 0.5 + (L - R)/(L + R) as
    Octopi computes it, then Tikhonov phase. For ``smear_dpc`` rows the image is the DPC.
    Rows with a ``fluorescence`` file add its planes as channels ``fluorescence_r``,
    ``fluorescence_g``, ``fluorescence_b`` (float32 in [0, 1]: divided by ``fluorescence_max``).
    ``out_record`` (JSON: FOVs written, seconds) is written last.

    The next FOV's images are read while the current one is computed, and a FOV of at
    most :data:`OVERLAP_MAX_PIXELS` is written while the next is computed.

    Parameters
    ----------
    fovs : sequence of str, optional
        The FOVs to process (a shard); default all.
    threads : int
        Threads of the phase solve's FFTs.
    """
    from scopeflow import dpc as dpc_mod
    from scopeflow.io import ome_zarr

    rows = read_fov_table(fovs_tsv)
    if fovs is not None:
        wanted = set(fovs)
        rows = [r for r in rows if r["fov"] in wanted]
    ff = load_flatfields(flatfield_npz) if any(isinstance(r.get("left"), str) for r in rows) else {}
    t0 = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="scopeflow-write") as writer:
        pending = None
        small = lambda images: images[0].size <= OVERLAP_MAX_PIXELS  # noqa: E731
        # (no zip/enumerate: their reused tuples would keep the last images alive)
        k = 0
        for images in _prefetch(_read_fov_inputs, rows, ahead=small):
            row = rows[k]
            k += 1
            ps = float(row["pixel_size_um"])
            saturated = None
            if len(images) == 2:
                top = row.get("max_value")
                if isinstance(top, (int, float)) and np.isfinite(top):  # the camera's true maximum
                    saturated = float(np.mean((images[0] >= top) | (images[1] >= top)))
                dpc = dpc_mod.dpc_octopi(images[0], images[1], ff.get("left"), ff.get("right"))
            else:
                dpc = images[0].astype(np.float32, copy=False)
            images = None
            channels = {"dpc": dpc}
            na = row.get("na")
            if phase and na is not None and np.isfinite(na):
                channels["phase"] = dpc_mod.phase_from_dpc(
                    dpc, pixel_size_um=ps, wavelength_um=float(row["wavelength_um"]), na=float(na),
                    na_illum=na_illum, reg=phase_reg, workers=threads,
                )
            if isinstance(row.get("fluorescence"), str) and row["fluorescence"]:
                from scopeflow.parasites.stage import fluorescence_channels

                channels.update(fluorescence_channels(row["fluorescence"], dpc.shape,
                                                      row.get("fluorescence_max")))
            attrs = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                     for k, v in row.items() if k in RAW_ATTRS}
            if saturated is not None:
                attrs["saturated_fraction_raw"] = saturated
            attrs["source"] = [row[k] for k in ("left", "right", "image", "fluorescence")
                               if isinstance(row.get(k), str) and row[k]]
            if pending is not None:
                pending.result()  # one write in flight at a time
            pending = writer.submit(ome_zarr.write_image, zarr_path, row["fov"], channels, ps,
                                    chunk=chunk, attrs=attrs)
            if dpc.size > OVERLAP_MAX_PIXELS:
                pending.result()
                pending = None
            del dpc, channels
            log.info("%s: DPC%s computed", row["fov"], " + phase" if phase and na is not None
                     and np.isfinite(na) else "")
        if pending is not None:
            pending.result()
    record = {"fovs": [r["fov"] for r in rows], "seconds": round(time.perf_counter() - t0, 3)}
    _atomic_json(record, out_record)
    return record


def segment_store(
    zarr_path: str | Path,
    out_record: str | Path,
    *,
    fovs: Sequence[str] | None = None,
    method: str = "classical",
    chunk: int | None = 1024,
    predictor_kwargs: Mapping | None = None,
    threads: int = 1,
) -> dict:
    """Segment the ``dpc`` channel of FOVs of a sample store into ``labels/cells``.

    The JSON record ``out_record`` (method, parameters, model checksum, cells per FOV, time)
    is written last: it is the marker that these FOVs' labels are complete.
    """
    import dask

    from scopeflow.io import ome_zarr
    from scopeflow.segment import make_predictor
    from scopeflow.segment.chunked import ZARR_ATTR, segment_to_zarr

    kwargs = dict(predictor_kwargs or {})
    record = {"method": method, "chunk": chunk, "params": kwargs, "fovs": {}}
    names = list(fovs) if fovs is not None else ome_zarr.fov_names(zarr_path)
    t0 = time.perf_counter()
    predictors: dict[float, Any] = {}  # one per pixel size: a model loads once per job
    with dask.config.set(scheduler="threads", num_workers=max(1, int(threads))):
        for fov in names:
            ps = float(ome_zarr.fov_attrs(zarr_path, fov)["pixel_size_um"])
            if ps not in predictors:
                predictors[ps] = make_predictor(method, pixel_size_um=ps, **kwargs)
            predictor = predictors[ps]
            attrs = {"method": method, "chunk": chunk, "params": kwargs}
            sha = getattr(predictor, "sha256", None)
            if sha:
                attrs["model_sha256"] = record["model_sha256"] = sha
            # the key names everything the labels depend on: a rerun after a kill with the
            # same key resumes from the chunks already in the store
            key = json.dumps({k: v for k, v in attrs.items() if k != "params"} | {
                "params": {k: v for k, v in kwargs.items() if k not in ("threads", "device")},
                "pixel_size_um": ps}, sort_keys=True)
            target = ome_zarr.labels_array(zarr_path, fov, "cells", attrs=attrs)
            dpc = ome_zarr.read_channel(zarr_path, fov, "dpc")
            segment_to_zarr(dpc, predictor, target, chunk=chunk, resume_key=key)
            ome_zarr.finish_labels(zarr_path, fov, "cells")
            n = int(target.attrs[ZARR_ATTR]["n_labels"])  # recorded by segment_to_zarr
            record["fovs"][fov] = n
            log.info("%s: %d cells", fov, n)
    record["seconds"] = round(time.perf_counter() - t0, 3)
    _atomic_json(record, out_record)
    return record


def measure_store(
    zarr_path: str | Path,
    segmentation_json: str | Path,
    out_cells: str | Path,
    out_fovs: str | Path,
    *,
    sample: str,
    fovs: Sequence[str] | None = None,
    classifier: bool = False,
    focus_metrics: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure every cell of segmented FOVs; write the cell and FOV tables (of a shard).

    The FOV rows get the tiled focus metrics ``focus_metrics`` of :mod:`scopeflow.qc.focus`
    (``focus_<name>``; default only :data:`~scopeflow.qc.focus.DEFAULT_FOCUS_METRIC`, the
    others NaN). The Laplacian of the DPC is computed once per FOV, for the cells' focus
    and the FOV's ``focus``. The next FOV is read while the current one is measured.
    With ``classifier`` the cells get ``p_good`` from the learned quality classifier
    (:func:`scopeflow.qc.cell_classifier.predict_good`, which needs the pixels, hence here
    and not at merge time).
    """
    import pandas as pd

    from scopeflow import measure
    from scopeflow.filters import laplace
    from scopeflow.io import ome_zarr, tables
    from scopeflow.qc.focus import DEFAULT_FOCUS_METRIC, tiled_focus_metrics

    metrics = [DEFAULT_FOCUS_METRIC] if focus_metrics is None else list(focus_metrics)
    predict_good = _quality_classifier() if classifier else None
    seg = json.loads(Path(segmentation_json).read_text())
    cell_tables, fov_rows = [], []

    def read(fov):
        attrs = ome_zarr.fov_attrs(zarr_path, fov)
        dpc = np.asarray(ome_zarr.read_channel(zarr_path, fov, "dpc"))
        phase = (np.asarray(ome_zarr.read_channel(zarr_path, fov, "phase"))
                 if "phase" in attrs["channels"] else None)
        return attrs, dpc, phase, ome_zarr.read_labels(zarr_path, fov)

    names = list(fovs) if fovs is not None else ome_zarr.fov_names(zarr_path)
    small = lambda fov_data: fov_data[1].size <= OVERLAP_MAX_PIXELS  # noqa: E731
    k = 0
    for attrs, dpc, phase, labels in _prefetch(read, names, ahead=small):
        fov = names[k]
        k += 1
        ps = float(attrs["pixel_size_um"])
        lap = laplace(dpc)
        cells = measure.measure_cells(labels, dpc, phase, ps, sample=sample, fov=fov, lap=lap)
        if predict_good is not None:
            cells["p_good"] = _p_good(predict_good, dpc, labels, cells["cell_id"].to_numpy(), fov)
        cell_tables.append(cells)
        extra = {k: attrs.get(k) for k in (*RAW_ATTRS, "saturated_fraction_raw")}
        extra.update(tiled_focus_metrics(dpc, names=metrics))
        fov_rows.append(
            measure.summarize_fov(cells, sample=sample, fov=fov, shape=labels.shape,
                                  pixel_size_um=ps, focus=measure.fov_focus(dpc, lap), extra=extra)
        )
        del dpc, phase, labels, lap
    if not cell_tables:  # an empty shard (the FOV count changed since planning)
        cell_tables = [measure.measure_cells(np.zeros((1, 1), np.uint32), np.zeros((1, 1)), None, 1.0)]
        if predict_good is not None:
            cell_tables[0]["p_good"] = np.zeros(0, np.float64)
    cells = pd.concat(cell_tables, ignore_index=True)
    fov_table = pd.DataFrame(fov_rows, columns=list(measure.FOV_COLUMNS))
    for col in ("t", "i", "j", "k", "n_z", "bit_depth"):
        fov_table[col] = pd.to_numeric(fov_table[col]).astype("Int64")
    for col in ("x_mm", "y_mm", "z_um", "saturated_fraction_raw"):
        fov_table[col] = pd.to_numeric(fov_table[col]).astype("float64")
    for col in ("region", "z_selection", "z_focus_scores", "objective"):
        fov_table[col] = fov_table[col].fillna("").astype(str)
    prov = {"segmentation": {k: seg.get(k) for k in ("method", "chunk", "params", "model_sha256")}}
    tables.write_table(fov_table, out_fovs, prov)
    tables.write_table(cells, out_cells, prov)
    return cells, fov_table


def _quality_classifier():
    """``predict_good`` of the learned cell-quality classifier, or a one-line error.

    Integration point of :mod:`scopeflow.qc.cell_classifier` (``qc.classifier: true``).
    """
    try:
        from scopeflow.qc.cell_classifier import predict_good
    except ImportError as exc:
        raise ScopeflowError(
            f"config key qc.classifier: the cell-quality classifier is not available ({exc}); "
            "set qc.classifier: false"
        ) from exc
    return predict_good


def _p_good(predict_good, dpc: np.ndarray, labels: np.ndarray, cell_ids: np.ndarray, fov: str) -> np.ndarray:
    """Probability that each cell is good; a missing or unreadable model is a one-line error."""
    if len(cell_ids) == 0:
        return np.zeros(0, np.float64)
    try:
        p = np.asarray(predict_good(np.asarray(dpc, np.float32), np.asarray(labels, np.uint32), cell_ids),
                       dtype=np.float64)
    except (OSError, RuntimeError) as exc:
        raise ScopeflowError(f"config key qc.classifier: classifier failed on FOV {fov}: {exc}") from exc
    if p.shape != (len(cell_ids),):
        raise ScopeflowError(
            f"config key qc.classifier: classifier returned {p.shape} values for {len(cell_ids)} cells (FOV {fov})"
        )
    return p


def merge_tables(
    cell_parts: Sequence[str | Path],
    fov_parts: Sequence[str | Path],
    zarr_path: str | Path,
    out_cells: str | Path,
    out_fovs: str | Path,
    out_sample: str | Path,
    *,
    sample: str,
    provenance: Mapping | None = None,
    qc: Mapping | None = None,
    out_qc: str | Path | None = None,
) -> pd.DataFrame:
    """Concatenate a sample's shard tables into its cell and FOV tables, apply QC, summarise.

    QC needs sample-wide medians, so it runs here and not per shard: per-FOV verdicts
    (:func:`scopeflow.qc.gates.fov_verdicts`), per-cell flags
    (:func:`scopeflow.qc.flags.flag_cells`), the sample gate
    (:func:`scopeflow.qc.gates.sample_gate`, also written to ``out_qc`` as JSON). The
    sample's median statistics use the ``qc_pass`` cells.

    Provenance = the run's record, the store's record and the segmentation record of the
    shards (method, parameters, model sha256).
    """
    import pandas as pd

    from scopeflow import measure
    from scopeflow.io import ome_zarr, tables
    from scopeflow.qc.flags import flag_cells
    from scopeflow.qc.gates import fov_verdicts, sample_gate
    from scopeflow.qc.params import qc_params

    params = qc_params(qc)
    cells = pd.concat([tables.read_table(p) for p in cell_parts], ignore_index=True)
    fovs = pd.concat([tables.read_table(p) for p in fov_parts], ignore_index=True)
    stored, measured = ome_zarr.fov_names(zarr_path), sorted(fovs["fov"].astype(str))
    if sorted(stored) != measured:  # never record a series list that disagrees with the images
        missing = sorted(set(stored) ^ set(measured))
        raise ScopeflowError(
            f"{zarr_path}: its series list ({len(stored)} FOVs) differs from the FOVs measured "
            f"({len(measured)}; e.g. {missing[0]}); the input changed during the run, rerun the workflow"
        )
    fovs = fov_verdicts(fovs, params)
    cells = flag_cells(cells, params, fovs=fovs)
    per_fov = cells.groupby(cells["fov"].astype(str))["qc_pass"].sum() if len(cells) else pd.Series(dtype=int)
    fovs["n_cells_qc_pass"] = fovs["fov"].astype(str).map(per_fov).fillna(0).astype("int64")
    gate = sample_gate(fovs, cells, params)
    prov = dict(provenance or {})
    prov["store"] = ome_zarr.store_attrs(zarr_path)
    seg = tables.read_provenance(cell_parts[0]).get("segmentation", {}) if cell_parts else {}
    prov["segmentation"] = seg
    if seg.get("model_sha256"):
        prov.setdefault("models", {})["segmentation"] = seg["model_sha256"]
    prov["qc"] = params
    rows = [measure.summarize_sample(fovs, cells, sample=sample, gate=gate)]
    regions = (fovs["region"].fillna("").astype(str) if "region" in fovs.columns
               else pd.Series(dtype=str))
    for region in sorted(set(regions) - {""}):  # one row per region (a well: a donor, a condition)
        f_r = fovs.loc[regions == region]
        c_r = cells.loc[cells["fov"].astype(str).isin(set(f_r["fov"].astype(str)))]
        rows.append(measure.summarize_sample(f_r, c_r, sample=sample, region=region,
                                             gate=sample_gate(f_r, c_r, params)))
    summary = pd.DataFrame(rows)
    if out_qc is not None:
        _atomic_json(_qc_record(sample, fovs, cells, gate, params), out_qc)
    tables.write_table(fovs, out_fovs, prov)
    tables.write_table(summary, out_sample, prov)
    tables.write_table(cells, out_cells, prov)
    return summary


def _qc_record(sample: str, fovs: pd.DataFrame, cells: pd.DataFrame, gate: Mapping, params: Mapping) -> dict:
    """The sample's ``qc.json``: gate, counts, per-FOV verdicts and the thresholds used."""
    def num(v):
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v

    fov_rows = [
        {"fov": str(r["fov"]), "fov_pass": bool(r["fov_pass"]), "focus_pass": bool(r["focus_pass"]),
         "count_pass": bool(r["count_pass"]), "focus_ratio": num(float(r["focus_ratio"])),
         "n_cells": int(r["n_cells"]), "n_cells_qc_pass": int(r["n_cells_qc_pass"]),
         "reason": str(r["fov_qc_reason"])}
        for r in fovs.to_dict("records")
    ]
    return {
        "sample": sample,
        "qc_gate": gate["qc_gate"],
        "qc_gate_reason": gate["qc_gate_reason"],
        "n_cells": int(len(cells)),
        "n_cells_qc_pass": gate["n_cells_qc_pass"],
        "fraction_qc_pass": num(gate["fraction_qc_pass"]),
        "n_fovs": int(len(fovs)),
        "n_fovs_pass": gate["n_fovs_pass"],
        "reason_counts": gate["reason_counts"],
        "fovs": fov_rows,
        "thresholds": dict(params),
    }


def sample_provenance(config: Mapping, inputs: Sequence[str | Path], **extra) -> dict:
    """Provenance record for a sample's outputs."""
    from scopeflow.provenance import make_provenance

    return make_provenance(config, inputs=inputs, **extra)
