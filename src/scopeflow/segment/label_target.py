"""The zarr label array that :func:`~scopeflow.segment.chunked.segment_to_zarr` streams into.

A target array is (y, x), or an NGFF label image's ``(1, y, x)`` level seen as (y, x)
(:class:`Plane`); its attribute :data:`ZARR_ATTR` records the progress of a segmentation
(state, finished cores, chunk, halo, resume key), so an interrupted run can resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ZARR_ATTR", "Plane", "aligned", "open_target", "set_record", "write_block"]

#: Attribute key of the progress record that :func:`~scopeflow.segment.chunked.segment_to_zarr`
#: keeps on the array.
ZARR_ATTR = "scopeflow_segmentation"


class Plane:
    """A (1, y, x) zarr array seen as (y, x): NGFF label images keep the image's channel axis."""

    def __init__(self, arr):
        self.arr = arr
        self.shape = tuple(arr.shape[1:])
        self.dtype = arr.dtype
        self.chunks = tuple(arr.chunks[1:])
        shards = getattr(arr, "shards", None)
        self.shards = tuple(shards[1:]) if shards else None
        self.attrs = arr.attrs

    def __getitem__(self, key):
        return self.arr[(0, *key)]

    def __setitem__(self, key, value):
        self.arr[(0, *key)] = value


def open_target(store_or_array: Any, shape: tuple[int, int], chunk: int | None):
    """The target of :func:`~scopeflow.segment.chunked.segment_to_zarr` as a (y, x) array.

    A ``(1, y, x)`` zarr array is seen through :class:`Plane`; a (y, x) uint32/uint64 array
    of the image's shape is used as it is; anything else is opened with
    ``zarr.open_array(..., mode="w")`` as uint32 chunked ``(chunk, chunk)`` (1024 for None).
    """
    import zarr

    if isinstance(store_or_array, zarr.Array) and store_or_array.ndim == 3 and store_or_array.shape[0] == 1:
        store_or_array = Plane(store_or_array)
    if isinstance(store_or_array, (zarr.Array, Plane)):
        arr = store_or_array
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"zarr array shape {arr.shape} differs from the image shape {shape}")
        if not np.issubdtype(arr.dtype, np.unsignedinteger) or arr.dtype.itemsize < 4:
            raise ValueError(f"zarr array dtype must be uint32 or uint64, got {arr.dtype}")
        return arr
    side = chunk or 1024
    chunks = (min(side, max(shape[0], 1)), min(side, max(shape[1], 1)))
    return zarr.open_array(
        store_or_array, mode="w", shape=shape, chunks=chunks, dtype="uint32", fill_value=0
    )


def write_block(arr) -> tuple[int, int]:
    """The unit a zarr write rewrites as a whole: the shard if sharded, else the chunk."""
    shards = getattr(arr, "shards", None)
    return tuple(int(c) for c in (shards or arr.chunks))


def aligned(arr, chunk: int | None) -> bool:
    """True when every core covers whole write blocks (concurrent writes never share one)."""
    if chunk is None:
        return True
    return all(chunk % c == 0 for c in write_block(arr))


def set_record(arr, **fields) -> None:
    """Update the progress record (attribute :data:`ZARR_ATTR`) of a label array."""
    rec = dict(arr.attrs.get(ZARR_ATTR, {}))
    rec.update(fields)
    arr.attrs[ZARR_ATTR] = rec
