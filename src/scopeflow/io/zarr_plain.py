"""Read regions of plain Zarr v3 arrays from their JSON metadata and chunk files, without
zarr-python.

A *plain* array is what scopeflow writes (:mod:`scopeflow.io.ngff_write`): a regular chunk
grid, the default chunk key encoding, no storage transformers, and the codecs ``bytes``
(little-endian) optionally followed by ``zstd``. Its chunks are read one file each and
decoded with pyarrow's zstd (the library every table job imports anyway), straight into the
region's array: the figure jobs read a FOV or a crop of one without importing zarr (~0.3
CPU-s) and without its per-read machinery. Anything else (sharding, other codecs, big-endian
data, a metadata file that cannot be read) is not plain: :func:`read_region` returns None and
the caller reads the array through zarr.
"""

from __future__ import annotations

import json
import math
import sys
from itertools import product
from pathlib import Path

import numpy as np

__all__ = ["plain_array", "read_region"]

#: Zarr v3 data types read here (numpy dtype strings, little-endian).
_DTYPES = {"bool": "|b1", "int8": "|i1", "uint8": "|u1", "int16": "<i2", "uint16": "<u2", "int32": "<i4",
           "uint32": "<u4", "int64": "<i8", "uint64": "<u8", "float32": "<f4", "float64": "<f8"}


def plain_array(array_dir: str | Path) -> dict | None:
    """The layout of a plain Zarr v3 array, or None when it is not plain (see the module).

    Returns
    -------
    dict or None
        ``shape``, ``chunks`` (tuples of int), ``dtype`` (numpy), ``fill`` (the fill value)
        and ``zstd`` (bool: chunks are zstd frames).
    """
    try:
        meta = json.loads((Path(array_dir) / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array" or meta.get("storage_transformers"):
        return None
    grid, keys = meta.get("chunk_grid", {}), meta.get("chunk_key_encoding", {"name": "default"})
    if (grid.get("name") != "regular" or keys.get("name") != "default"
            or keys.get("configuration", {}).get("separator", "/") != "/" or meta.get("data_type") not in _DTYPES):
        return None  # ("." separated keys, c.0.0, are left to zarr)
    dtype = np.dtype(_DTYPES[meta["data_type"]])
    codecs = [c.get("name") for c in meta.get("codecs", [])]
    endian = (meta.get("codecs") or [{}])[0].get("configuration", {}).get("endian", "little")
    if codecs not in (["bytes"], ["bytes", "zstd"]) or (endian != "little" and dtype.itemsize > 1):
        return None
    fill = meta.get("fill_value", 0)
    if isinstance(fill, str):  # "NaN", "Infinity", "-Infinity" of float arrays
        if dtype.kind != "f" or fill not in ("NaN", "Infinity", "-Infinity"):
            return None
        fill = float(fill.replace("Infinity", "inf"))
    elif not isinstance(fill, (bool, int, float)):
        return None
    shape = tuple(int(n) for n in meta["shape"])
    chunks = tuple(int(n) for n in grid["configuration"]["chunk_shape"])
    if len(chunks) != len(shape):
        return None
    return {"shape": shape, "chunks": chunks, "dtype": dtype, "fill": fill, "zstd": codecs[-1] == "zstd"}


def _zstd(nbytes: int, with_pyarrow: bool):
    """A zstd frame decoder for chunks of ``nbytes``: pyarrow's where the job has imported
    pyarrow (the table jobs), else numcodecs' (zarr's own, which the image jobs import
    anyway): no job imports a library for it alone."""
    if with_pyarrow:
        import pyarrow as pa

        return lambda data: pa.decompress(data, decompressed_size=nbytes, codec="zstd")
    from numcodecs.zstd import Zstd

    return Zstd().decode


def _bounds(item, size: int) -> tuple[int, int, bool] | None:
    """(start, stop, keep the axis) of an index item along an axis of ``size``; None for
    what numpy would read differently here (steps, negative or out-of-range integers)."""
    if isinstance(item, slice):
        if item.step not in (None, 1):
            return None
        start, stop, _ = item.indices(size)
        return start, max(start, stop), True
    if isinstance(item, (int, np.integer)) and 0 <= int(item) < size:
        return int(item), int(item) + 1, False
    return None


def read_region(array_dir: str | Path, index: tuple) -> np.ndarray | None:
    """``array[index]`` of a plain Zarr v3 array (one int or step-1 slice per axis), reading
    only the chunks the region touches; chunks that were never written read as the fill
    value. None when the array is not plain or the index is of another kind: read it through
    zarr then.

    Parameters
    ----------
    array_dir : str or Path
        The array's folder (holding its ``zarr.json``).
    index : tuple of int or slice
        One item per axis; integers drop their axis, as in numpy.

    Returns
    -------
    ndarray or None
    """
    layout = plain_array(array_dir)
    if layout is None or len(index) != len(layout["shape"]):
        return None
    bounds = [_bounds(item, n) for item, n in zip(index, layout["shape"])]
    if any(b is None for b in bounds):
        return None
    chunks, dtype = layout["chunks"], layout["dtype"]
    out = np.full([stop - start for start, stop, _ in bounds], layout["fill"], dtype=dtype)
    ranges = [range(start // c, -(-stop // c)) if stop > start else range(0)
              for (start, stop, _), c in zip(bounds, chunks)]
    nbytes = math.prod(chunks) * dtype.itemsize
    root = Path(array_dir) / "c"
    decompress = _zstd(nbytes, "pyarrow" in sys.modules) if layout["zstd"] else None
    for key in product(*ranges):
        try:
            data = root.joinpath(*(str(k) for k in key)).read_bytes()
        except FileNotFoundError:
            continue  # never written: the fill value
        chunk = np.frombuffer(decompress(data) if decompress else data, dtype=dtype).reshape(chunks)
        src, dst = [], []
        for k, c, (start, stop, _) in zip(key, chunks, bounds):
            lo, hi = max(start, k * c), min(stop, (k + 1) * c)
            src.append(slice(lo - k * c, hi - k * c))
            dst.append(slice(lo - start, hi - start))
        out[tuple(dst)] = chunk[tuple(src)]
    return out[tuple(slice(None) if keep else 0 for _, _, keep in bounds)]
