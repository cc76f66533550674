"""Ingest stage of a smear sample: validate its input, list its FOVs (z choice included) and
estimate the per-channel flatfields; writes ``fovs.tsv`` and the flatfield ``.npz``.

Outputs are written to a temporary name and renamed into place, so an interrupted job never
leaves a complete-looking result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scopeflow.errors import InputImageError, ScopeflowError
from scopeflow.io.atomic import atomic_path
from scopeflow.io.discover import SMEAR_KINDS, detect_kind, dpc_files, dpc_fovs
from scopeflow.io.images import read_gray
from scopeflow.smear.fov_table import LEFT, RIGHT, read_fov_table, write_fov_table
from scopeflow.smear.qc.focus import DEFAULT_FOCUS_METRIC
from scopeflow.smear.stage_common import OVERLAP_MAX_PIXELS, prefetch

if TYPE_CHECKING:  # a job imports only what its stage uses (start-up time)
    import pandas as pd

log = logging.getLogger("scopeflow")


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
    focus_metric: str = DEFAULT_FOCUS_METRIC,
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
        (:func:`scopeflow.smear.flatfield.coarse_flatfield`), ``shape`` and ``bin_factor``
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
        (:func:`scopeflow.smear.qc.best_focus.select_plane`); the choice and the planes' focus
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
    from scopeflow.smear import flatfield
    from scopeflow.io.images import unit_scale
    from scopeflow.io.readiness import verify_files
    from scopeflow.io.squid import read_acquisition
    from scopeflow.smear.qc.best_focus import parse_zstack

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
                factor = factor or flatfield.flatfield_bin_factor(left.shape)
                # binned as stored (exact integer sums), then scaled to [0, 1]
                binned["left"].append(flatfield.bin_image(left, factor, unit_scale(left)))
                binned["right"].append(flatfield.bin_image(right, factor, unit_scale(right)))

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
                ff = {f"{side}_coarse": flatfield.coarse_flatfield(binned[side], shape, factor)
                      for side in ("left", "right")}
                for side in ("left", "right"):  # a flatfield without signal fails here, not in dpc
                    flatfield.flatfield_mean(ff[f"{side}_coarse"], shape, factor)
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
        write_fov_table(rows, tmp)
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
    :func:`~scopeflow.smear.qc.best_focus.plane_focus`, picks the plane(s) with
    :func:`~scopeflow.smear.qc.best_focus.select_plane` and finds the camera's true maximum (bit depth
    from the metadata, alignment from the data, :func:`~scopeflow.io.squid.meta.true_max`).
    ``keep(n, left, right)`` is called with the raw planes of the n-th chosen FOV.
    Only the best plane so far of a stack is held in memory.
    """
    from scopeflow.io.squid.meta import true_max
    from scopeflow.smear.qc.best_focus import plane_focus, select_plane

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
    for pair in prefetch(_read_pair, fovs, ahead=small):
        fov = fovs[n]
        n += 1
        left, right = pair
        pair = None
        key = stack_of(fov)
        if key != current:
            close_stack(current)
            current = key
        state["dtype"] = left.dtype
        if np.issubdtype(left.dtype, np.unsignedinteger):  # lit: a pixel above 0
            top = max(int(left.max()), int(right.max()))
            state["vmax"] = max(state["vmax"], top)
            state["lit"] = state["lit"] or top > 0
            for img in (left, right):
                state["bits_or"] |= int(np.bitwise_or.reduce(img, axis=None))
        else:
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
