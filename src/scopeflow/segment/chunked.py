"""Chunked, chunk-size-invariant instance segmentation of one field of view.

Any :class:`~scopeflow.segment.base.Predictor` runs here tile by tile, and the labels do
not depend on the chunk size: they are *identical* (same ids, not just the same cells)
for chunk 512, 1024 or the whole image.

How
---
1. ``predictor.prepare(image)`` sees the whole image once (global statistics).
2. ``predictor.predict(image)`` computes the maps of the whole image once. A predictor
   that works in windows (the U-Net) cuts them on a grid that depends only on the image
   shape and gives each window ``context`` pixels of halo, so the maps do not depend on
   the chunk size (and no pixel is predicted twice per chunk).
3. The image is cut into a grid of square *cores* of ``chunk`` pixels (the last row and
   column may be smaller). Each core is extended by a *halo* of ``object_size +
   decode_context`` pixels (see :func:`halo_px`), rounded up to a multiple of 16, and
   clipped at the image border.
4. ``decode`` turns the maps of the extended core into instance ``labels`` and compact
   ``seeds``. Every instance that covers a core pixel is named after its seed: the
   global linear index ``y * width + x`` of the seed's first pixel in raster order, plus
   one. An instance overlapping a core lies within ``object_size`` of it and is decided
   by the maps at most ``decode_context`` beyond, so the neighbouring core that also
   sees this instance decodes it identically and gives it the same name.
5. ``predictor.verify()``, if the predictor has it, must pass (e.g. the U-Net's check of
   its inference engine against torch, which runs while the chunks decode;
   :func:`segment_to_zarr`, whose store keeps finished cores, verifies before decoding).
6. Sorting the distinct names gives the final ids 1..N, in raster order of the seeds.

Pixels of instances without a seed, or whose seed starts farther than ``object_size``
from the core (both break the predictor contract), are left as background.

Units: pixels; arrays are (y, x) with the origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import dask
import numpy as np

from scopeflow.segment.base import Predictor
from scopeflow.segment.label_target import (ZARR_ATTR, Plane, aligned, open_target, set_record,
                                            write_block)

__all__ = [
    "ALIGN",
    "chunk_cores",
    "halo_px",
    "labels_complete",
    "predict_maps",
    "segment_chunk",
    "segment_image",
    "segment_to_zarr",
]

#: Tile origins, halos and chunk sizes are multiples of this (the U-Net stride).
ALIGN = 16

#: Largest seed name relabelled through a lookup table (4 bytes per entry: 1 GiB).
_MAX_LUT = 2**28

_SYNC_SCHEDULERS = {"sync", "synchronous", "single-threaded"}


def halo_px(predictor: Predictor) -> int:
    """Halo (pixels, each side) of a core's decoding window.

    Parameters
    ----------
    predictor : Predictor
        Provides ``object_size`` and ``decode_context`` (pixels; predictors without
        ``decode_context`` get their ``context``, the conservative bound).

    Returns
    -------
    int
        ``object_size + decode_context`` rounded up to a multiple of :data:`ALIGN` (16):
        an instance overlapping the core lies within ``object_size`` of it, and its
        decoding depends on maps at most ``decode_context`` beyond it. The maps are
        computed once for the whole image, so the network's receptive field needs no halo
        here.
    """
    reach = getattr(predictor, "decode_context", None)
    need = int(predictor.object_size) + int(predictor.context if reach is None else reach)
    if need < 0:
        raise ValueError(f"predictor object_size + decode_context must be >= 0, got {need}")
    return int(math.ceil(need / ALIGN) * ALIGN)


def _check_chunk(chunk: int | None) -> None:
    if chunk is None:
        return
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)):
        raise ValueError(f"chunk must be a positive multiple of {ALIGN} or None, got {chunk!r}")
    if chunk <= 0 or chunk % ALIGN:
        raise ValueError(
            f"chunk must be a positive multiple of {ALIGN} (U-Net stride) or None for the "
            f"whole image, got {chunk}"
        )


def chunk_cores(shape: tuple[int, int], chunk: int | None) -> list[tuple[slice, slice]]:
    """Cores of the chunk grid, in raster order.

    Parameters
    ----------
    shape : (int, int)
        Image shape (y, x), pixels.
    chunk : int or None
        Core side, pixels (multiple of 16); None = one core covering the whole image.

    Returns
    -------
    list of (slice, slice)
        ``(y_slice, x_slice)`` of each core; the last row/column may be smaller.
    """
    _check_chunk(chunk)
    h, w = int(shape[0]), int(shape[1])
    if chunk is None:
        return [(slice(0, h), slice(0, w))]
    return [
        (slice(y, min(y + chunk, h)), slice(x, min(x + chunk, w)))
        for y in range(0, h, chunk)
        for x in range(0, w, chunk)
    ]


def _as_2d_float(image: Any) -> np.ndarray:
    """Load a numpy/dask/zarr image (y, x) into memory as float32, without rescaling."""
    if hasattr(image, "compute") and not isinstance(image, np.ndarray):  # dask
        arr = np.asarray(image.compute())
    elif isinstance(image, np.ndarray):
        arr = image
    else:  # zarr arrays and other array-likes
        arr = np.asarray(image[...])
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D (y, x) image, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _id_dtype(shape: tuple[int, int]) -> np.dtype:
    """Smallest unsigned dtype holding every seed name (linear index + 1)."""
    return np.dtype(np.uint32) if shape[0] * shape[1] < 2**32 else np.dtype(np.uint64)


def segment_chunk(
    maps: np.ndarray,
    predictor: Predictor,
    core: tuple[slice, slice],
    halo: int,
) -> np.ndarray:
    """Decode one core from the whole image's maps and name its instances by their seeds.

    Parameters
    ----------
    maps : np.ndarray of float32, shape (C, H, W)
        ``predictor.predict`` of the whole (prepared) image.
    predictor : Predictor
        The predictor whose ``decode`` is used.
    core : (slice, slice)
        Core ``(y_slice, x_slice)`` with unit steps.
    halo : int
        Halo, pixels each side (see :func:`halo_px`); clipped at the image border.

    Returns
    -------
    np.ndarray of uint32 (uint64 for images of 2**32 pixels or more), core shape
        0 = background, else 1 + global linear index (``y * W + x``) of the first pixel,
        in raster order, of the instance's seed.
    """
    h, w = maps.shape[-2:]
    y0, y1, x0, x1 = core[0].start, core[0].stop, core[1].start, core[1].stop
    ty0, ty1 = max(0, y0 - halo), min(h, y1 + halo)
    tx0, tx1 = max(0, x0 - halo), min(w, x1 + halo)
    window = maps[:, ty0:ty1, tx0:tx1]
    labels, seeds = predictor.decode(window)
    labels = np.asarray(labels)
    seeds = np.asarray(seeds)
    if labels.shape != window.shape[1:] or seeds.shape != window.shape[1:]:
        raise ValueError(
            f"{type(predictor).__name__}.decode returned shapes {labels.shape}, {seeds.shape} "
            f"for maps of shape {window.shape}"
        )
    core_labels = labels[y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]
    dtype = _id_dtype((h, w))
    out = np.zeros(core_labels.shape, dtype=dtype)
    flat = seeds.ravel()
    where = np.flatnonzero(flat > 0)
    if where.size == 0 or not np.any(core_labels > 0):
        return out
    vals = flat[where].astype(np.int64, copy=False)
    top = int(vals.max())
    if top <= 4 * flat.size + 1024:  # earliest pixel of each seed in raster order
        first = np.full(top + 1, flat.size, dtype=np.int64)
        np.minimum.at(first, vals, where)
        ids = np.flatnonzero(first < flat.size)
        first = first[ids]
    else:  # sparse, very large ids
        ids, pos = np.unique(vals, return_index=True)
        first = where[pos]
    py, px = np.divmod(first, seeds.shape[1])
    gy = py + ty0
    gx = px + tx0
    reach = int(predictor.object_size)
    trusted = (gy >= y0 - reach) & (gy < y1 + reach) & (gx >= x0 - reach) & (gx < x1 + reach)
    names = gy.astype(np.uint64) * np.uint64(w) + gx.astype(np.uint64) + np.uint64(1)
    ids, names = ids[trusted].astype(np.int64), names[trusted]
    if ids.size == 0:
        return out
    top = int(core_labels.max())
    if top <= 4 * core_labels.size + 1024:
        lut = np.zeros(top + 1, dtype=dtype)
        inside = ids <= top
        lut[ids[inside]] = names[inside]
        return lut[core_labels]
    pos = np.clip(np.searchsorted(ids, core_labels), 0, ids.size - 1)
    hit = (ids[pos] == core_labels) & (core_labels > 0)
    out[hit] = names[pos[hit]].astype(dtype)
    return out


def _scheduler(num_workers: int | None) -> dict:
    import dask.local
    import dask.threaded

    # local threads (or the synchronous scheduler when configured), given as a function:
    # a scheduler name makes dask import distributed (~0.6 s) to look for a client
    sync = dask.config.get("scheduler", None) in _SYNC_SCHEDULERS
    kw: dict[str, Any] = {"scheduler": dask.local.get_sync if sync else dask.threaded.get}
    if num_workers:
        kw["num_workers"] = int(num_workers)
    return kw


def _run_tasks(fn: Callable, items: list, progress: bool, num_workers: int | None) -> list:
    """Run ``fn(item)`` for every item on dask's local threads; results in item order."""
    tasks = [dask.delayed(fn, pure=False)(it) for it in items]
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return list(dask.compute(*tasks, **_scheduler(num_workers)))
    return list(dask.compute(*tasks, **_scheduler(num_workers)))


def predict_maps(image: Any, predictor: Predictor) -> np.ndarray:
    """The predictor's maps of a whole image: ``prepare`` on it, then ``predict``.

    Parameters
    ----------
    image : array_like, shape (y, x)
        numpy, dask or zarr array, loaded as float32 without rescaling.
    predictor : Predictor
        See :mod:`scopeflow.segment.base`.

    Returns
    -------
    np.ndarray of float32, shape (C, y, x)
        What :func:`segment_to_zarr` decodes (its ``maps`` argument): computing them
        apart lets a caller run the predictor on the next image while this one decodes.

    Raises
    ------
    ValueError
        If the predictor returns maps of another shape.
    """
    img = _as_2d_float(image)
    predictor.prepare(img)
    maps = np.asarray(predictor.predict(img), dtype=np.float32)
    if maps.ndim != 3 or maps.shape[1:] != img.shape:
        raise ValueError(
            f"{type(predictor).__name__}.predict returned maps of shape {maps.shape} for an "
            f"image of shape {img.shape}; expected (C, {img.shape[0]}, {img.shape[1]})"
        )
    return maps


def _first_pass(
    img: np.ndarray,
    predictor: Predictor,
    chunk: int | None,
    write: Callable[[tuple[slice, slice], np.ndarray], None],
    progress: bool,
    num_workers: int | None,
    done: Callable[[int], np.ndarray | None] | None = None,
    verify_before_writing: bool = False,
    maps: np.ndarray | None = None,
) -> np.ndarray:
    """Segment every core, hand its seed names to ``write``; return sorted distinct names.

    ``done(i)``, if given, returns the distinct names of core ``i`` when it was finished by an
    earlier run (the core is then not recomputed), else None. ``predictor.verify()`` (if any)
    runs after decoding, or, with ``verify_before_writing`` (``write`` persists cores that a
    later run trusts), before the first core is decoded. ``maps``: :func:`predict_maps` of
    ``img``, when already computed.
    """
    cores = chunk_cores(img.shape, chunk)
    previous = [done(i) if done is not None else None for i in range(len(cores))]
    todo = [i for i, names in enumerate(previous) if names is None]
    if todo and maps is None:
        maps = predict_maps(img, predictor)
    check = getattr(predictor, "verify", None) if todo else None
    if check is not None and verify_before_writing:
        check()
    halo = 0 if chunk is None else halo_px(predictor)

    def one(i):
        if previous[i] is not None:
            return previous[i]
        names = segment_chunk(maps, predictor, cores[i], halo)
        write(i, cores[i], names)
        return _distinct_names(names)

    found = _run_tasks(one, list(range(len(cores))), progress, num_workers)
    if check is not None and not verify_before_writing:
        check()
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.uint64)


def _distinct_names(block: np.ndarray) -> np.ndarray:
    """Sorted distinct non-zero values of a label block.

    Labels come in runs along rows, so only the first value of each run is a candidate:
    ``np.unique`` sorts a few thousand values instead of the whole block.
    """
    flat = block.ravel()
    if flat.size == 0:
        return flat[:0]
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    values = np.concatenate((flat[:1], flat[starts]))
    return np.unique(values[values > 0])


def _ranks(sorted_names: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping seed names to 1..N by their rank in ``sorted_names`` (0 stays 0), as uint32.

    Every name given to it must be 0 or in ``sorted_names``. The lookup table (names are
    linear pixel indices + 1, so it is faster than a search) is built once, here.
    """
    if sorted_names.size and int(sorted_names[-1]) <= _MAX_LUT:
        lut = np.zeros(int(sorted_names[-1]) + 1, dtype=np.uint32)
        lut[sorted_names.astype(np.int64)] = np.arange(1, sorted_names.size + 1, dtype=np.uint32)
        return lut.take

    def search(names: np.ndarray) -> np.ndarray:
        out = np.zeros(names.shape, dtype=np.uint32)
        nz = names > 0
        if nz.any():
            out[nz] = (np.searchsorted(sorted_names, names[nz]) + 1).astype(np.uint32)
        return out

    return search


def segment_image(
    image: Any,
    predictor: Predictor,
    chunk: int | None = 1024,
    *,
    progress: bool = False,
    num_workers: int | None = None,
) -> np.ndarray:
    """Segment a 2-D image into instance labels, chunk by chunk.

    Parameters
    ----------
    image : array_like, shape (y, x)
        numpy, dask or zarr array. It is loaded into memory once as float32, *without*
        rescaling (give the predictor the units it expects, e.g. DPC in [0, 1]): the
        predictor's ``prepare`` needs the whole image, and a field of view (up to ~4096²,
        64 MiB as float32) fits in memory.
    predictor : Predictor
        See :mod:`scopeflow.segment.base`. Its ``predict``/``decode`` must be safe to call
        from several threads after ``prepare``.
    chunk : int or None
        Core side in pixels, a multiple of 16; None = the whole image as one tile. The
        result does not depend on it.
    progress : bool
        Show a dask progress bar.
    num_workers : int, optional
        Threads; default: dask's configuration (``dask.config.set(num_workers=...)``)
        or the number of cores.

    Returns
    -------
    np.ndarray of uint32, shape (y, x)
        0 = background, cells 1..N numbered in raster order of their seeds' first pixel.

    Raises
    ------
    ValueError
        If ``chunk`` is not a positive multiple of 16 or None, the image is not 2-D, or
        the image has 2**32 or more cells.

    Notes
    -----
    Peak memory: the float32 image, its float32 maps (C × 4 bytes per pixel), what the
    predictor needs for one forward window, a seed-name image (uint32, or uint64 beyond
    2**32 pixels) and the uint32 result.
    """
    _check_chunk(chunk)
    img = _as_2d_float(image)
    if img.size == 0:
        return np.zeros(img.shape, dtype=np.uint32)
    names = np.zeros(img.shape, dtype=_id_dtype(img.shape))

    def write(_, core, block):
        names[core] = block  # cores are disjoint: no lock needed

    sorted_names = _first_pass(img, predictor, chunk, write, progress, num_workers)
    if sorted_names.size >= 2**32:
        raise ValueError(f"{sorted_names.size} instances do not fit uint32 labels")
    rank = _ranks(sorted_names.astype(names.dtype))
    labels = np.empty(img.shape, dtype=np.uint32)

    def relabel(core):
        labels[core] = rank(names[core])

    _run_tasks(relabel, chunk_cores(img.shape, chunk), False, num_workers)
    return labels


def _setup(predictor: Predictor, chunk: int | None, resume_key: str | None) -> dict:
    """What a label array's record must hold for its labels to be reused."""
    return {
        "chunk": chunk,
        "halo": 0 if chunk is None else halo_px(predictor),
        "predictor": getattr(predictor, "name", type(predictor).__name__),
        "resume_key": resume_key,
    }


def _previous_run(arr: Any, predictor: Predictor, chunk: int | None,
                  resume_key: str | None) -> tuple[dict, dict, bool]:
    """The array's progress record, the record these settings need (:func:`_setup`), and
    whether the record was left by a run with the same settings (never without a key)."""
    previous = dict(arr.attrs.get(ZARR_ATTR, {}))
    setup = _setup(predictor, chunk, resume_key)
    same = resume_key is not None and all(previous.get(k) == v for k, v in setup.items())
    return previous, setup, same


def labels_complete(arr: Any, predictor: Predictor, chunk: int | None,
                    resume_key: str | None) -> bool:
    """Whether :func:`segment_to_zarr` finished the target array ``arr`` with these settings
    (``predictor``, ``chunk``, ``resume_key`` as given to it; without a key nothing is reused)."""
    previous, _, same = _previous_run(arr, predictor, chunk, resume_key)
    return same and previous.get("state") == "complete"


def segment_to_zarr(
    image: Any,
    predictor: Predictor,
    store_or_array: Any,
    chunk: int | None = 1024,
    *,
    progress: bool = False,
    num_workers: int | None = None,
    resume_key: str | None = None,
    in_memory: bool = False,
    maps: np.ndarray | None = None,
):
    """Segment a 2-D image and stream the uint32 labels into a zarr array, resumably.

    Same labels as :func:`segment_image` (identical ids for any ``chunk``), but the label
    image is never held in memory: pass 1 writes each core's seed names (1 + linear
    index of the seed, which fits uint32 below 2**32 pixels) straight into the target
    array and keeps only the sorted distinct names; pass 2 rewrites each chunk with the
    ranks 1..N.

    Parameters
    ----------
    image : array_like, shape (y, x)
        numpy, dask or zarr array, loaded into memory once as float32 without rescaling
        (the predictor's ``prepare`` needs all of it).
    predictor : Predictor
        See :mod:`scopeflow.segment.base`; thread-safe after ``prepare``.
    store_or_array : zarr.Array or zarr store / path
        Target. An existing ``zarr.Array`` must have the image's shape and dtype uint32
        or uint64; anything else is opened with ``zarr.open_array(..., mode="w")`` as a
        uint32 array chunked ``(chunk, chunk)`` (1024 for ``chunk=None``).
    chunk : int or None
        Core side in pixels, a multiple of 16, or None for one tile.
    progress : bool
        Show dask progress bars (one per pass).
    num_workers : int, optional
        Threads (default: dask's configuration).
    resume_key : str, optional
        Identifies the predictor and its parameters (e.g. method, settings, model sha256).
        When given and the array's record holds the same key, chunk and halo from an
        interrupted earlier run, the cores that run finished are not recomputed, and a
        relabelling pass that was cut short continues. Otherwise the array is rewritten.
    in_memory : bool
        Keep the seed names in memory (4 bytes/px) and write the final labels once (no
        per-core writes and rewrite); a run killed before the end starts the image over.
    maps : np.ndarray, optional
        :func:`predict_maps` of this image with this predictor, when the caller computed
        them already (e.g. while the previous image was decoded and written); by default
        they are computed here (not at all when the array is complete, see
        :func:`labels_complete`).

    Returns
    -------
    zarr.Array
        The target array, holding labels 0 (background) and 1..N (for a ``(1, y, x)``
        array, the labels are in plane 0).

    Notes
    -----
    Memory: the float32 image and its maps (C × 4 bytes per pixel), one forward window
    of the predictor, and a few chunks (one extended core per thread). Pass-1
    writes are lock-free when ``chunk`` is a multiple of the array's chunk shape and
    serialized otherwise; pass 2 walks the array's own chunk (or shard) grid. The
    array's attribute ``scopeflow_segmentation`` records the state
    (``"seed_names"`` during pass 1, ``"relabelling"``, then ``"complete"`` with
    ``n_labels``), the chunk, halo and predictor name.
    """
    _check_chunk(chunk)
    img = _as_2d_float(image)
    arr = open_target(store_or_array, img.shape, chunk)
    if img.size >= 2**32 and arr.dtype.itemsize < 8:
        raise ValueError("images with 2**32 pixels or more need a uint64 target array")
    lock = None if aligned(arr, chunk) else threading.Lock()
    record_lock = threading.Lock()
    previous, setup, same_run = _previous_run(arr, predictor, chunk, resume_key)
    if same_run and previous.get("state") == "complete":
        return arr.arr if isinstance(arr, Plane) else arr
    same_run = same_run and not in_memory  # in memory, only a complete image is kept
    finished = set(previous.get("done_cores", [])) if same_run else set()
    relabelled = set(previous.get("relabelled_blocks", [])) if same_run else set()
    if not same_run or previous.get("state") != "relabelling":
        relabelled = set()
        set_record(arr, state="seed_names", done_cores=sorted(finished), relabelled_blocks=[], **setup)
    cores = chunk_cores(img.shape, chunk)

    def done(i):
        if i not in finished:
            return None
        block = np.asarray(arr[cores[i]]).astype(np.uint64)
        return _distinct_names(block)

    names = np.zeros(img.shape, dtype=arr.dtype) if in_memory else None

    def write(i, core, block):
        block = block.astype(arr.dtype, copy=False)
        if names is not None:
            names[core] = block  # cores are disjoint
            return
        if lock is None:
            arr[core] = block
        else:
            with lock:
                arr[core] = block
        with record_lock:  # only after the block is stored: a kill never marks a core done early
            finished.add(i)
            set_record(arr, done_cores=sorted(finished))

    if same_run and previous.get("state") == "relabelling":
        sorted_names = np.asarray(previous["sorted_names"], dtype=np.uint64)
    else:
        # the store keeps finished cores for a resumed run: the predictor's check comes first
        sorted_names = _first_pass(img, predictor, chunk, write, progress, num_workers, done,
                                   verify_before_writing=True, maps=maps)
        del maps
        if sorted_names.size >= 2**32:
            raise ValueError(f"{sorted_names.size} instances do not fit uint32 labels")
        if names is None:  # what a resumed relabelling pass needs
            set_record(arr, state="relabelling", n_labels=int(sorted_names.size),
                       sorted_names=[int(v) for v in sorted_names])
    rank = _ranks(sorted_names.astype(arr.dtype))
    if names is not None:  # one write of the final labels
        arr[:, :] = rank(names).astype(arr.dtype, copy=False)
        set_record(arr, state="complete", n_labels=int(sorted_names.size), sorted_names=[],
                   done_cores=[], relabelled_blocks=[])
        return arr.arr if isinstance(arr, Plane) else arr

    cy, cx = write_block(arr)  # pass 2 follows the array's own chunks/shards: no lock
    grid = [
        (slice(y, min(y + cy, img.shape[0])), slice(x, min(x + cx, img.shape[1])))
        for y in range(0, img.shape[0], cy)
        for x in range(0, img.shape[1], cx)
    ]

    def relabel(item):
        i, block_slices = item
        if i in relabelled:
            return
        block = np.asarray(arr[block_slices])
        arr[block_slices] = rank(block).astype(arr.dtype, copy=False)
        with record_lock:
            relabelled.add(i)
            set_record(arr, relabelled_blocks=sorted(relabelled))

    _run_tasks(relabel, list(enumerate(grid)), progress, num_workers)
    set_record(arr, state="complete", sorted_names=[], done_cores=[], relabelled_blocks=[])
    return arr.arr if isinstance(arr, Plane) else arr
