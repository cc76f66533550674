"""DPC stage of a smear sample, on paths: the sample's OME-Zarr store is created, each FOV's
DPC (and quantitative phase) written into it, and the store flagged complete once segmented.

Every record that marks work as done is written last.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from scopeflow.errors import InputImageError, ScopeflowError
from scopeflow.smear.fov_table import RAW_ATTRS, read_fov_table
from scopeflow.smear.stage_common import OVERLAP_MAX_PIXELS, atomic_json, prefetch
from scopeflow.smear.stage_ingest import read_dpc_image

log = logging.getLogger("scopeflow")


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
    ome_zarr.create_sample_store(out_zarr, names, provenance or {}, positions=positions,
                                 extend=extend)
    paths = ome_zarr.fov_paths(out_zarr)
    info = {"store": str(out_zarr), "fovs": {n: paths[n] for n in names}}
    if record is not None:
        atomic_json(info, record)
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


#: FOVs of at most this many pixels have their flatfields expanded once per job (4 bytes per
#: pixel per side, 72 MB at 3000²): expanding them block by block for every FOV cost ~0.2 s
#: per FOV of 3000², a fifth of the dpc job; larger FOVs keep the block-by-block expansion.
FLATFIELD_CACHE_PIXELS = 10 * 2**20


def load_flatfields(flatfield_npz: str | Path) -> dict:
    """The ``left`` / ``right`` flatfields (float32, mean 1) of an ingest's ``.npz``, sliced by rows.

    Coarse flatfields (``<side>_coarse``, ``shape``, ``bin_factor``, as :func:`ingest`
    writes them) become :class:`scopeflow.smear.flatfield.FlatfieldRows`: ``ff[r0:r1]`` is
    those rows of the full-resolution flatfield, expanded when asked for (``ff[:]`` all of
    it), so a job never holds the full-size arrays; files with full-resolution ``left`` /
    ``right`` arrays give them as they are. Empty for a sample without flatfields.

    FOVs of at most :data:`FLATFIELD_CACHE_PIXELS` get the full-resolution arrays, expanded
    once here (the same values) instead of again for every FOV of the job.
    """
    from scopeflow.smear import flatfield

    with np.load(flatfield_npz) as z:
        data = {k: z[k] for k in z.files}
    out = {}
    for side in ("left", "right"):
        if side in data:
            out[side] = np.asarray(data[side], np.float32)
        elif f"{side}_coarse" in data:
            shape = tuple(int(v) for v in data["shape"])
            cached = shape[0] * shape[1] <= FLATFIELD_CACHE_PIXELS
            out[side] = (flatfield.expand_flatfield if cached else flatfield.FlatfieldRows)(
                data[f"{side}_coarse"], shape, int(data["bin_factor"]))
    return out


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
    from scopeflow.smear import dpc as dpc_mod
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
        for images in prefetch(_read_fov_inputs, rows, ahead=small):
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
    atomic_json(record, out_record)
    return record
