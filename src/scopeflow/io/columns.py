"""Columns of a Parquet table as numpy arrays, read with pyarrow alone (no pandas).

The report jobs draw a few columns of the sample's tables; pandas (~0.4 CPU-s to import)
would cost them more than their drawing. pyarrow's own conversions (``read_table``,
``to_numpy``) import pandas, so the columns are read with :class:`pyarrow.parquet.ParquetFile`
and viewed from their Arrow buffers.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["Columns", "column_array", "read_columns"]


class Columns:
    """A table as numpy columns: ``t[name]`` (an array), ``len(t)`` (rows), ``t.columns``
    (names), ``t.get(name, default)``, ``t.take(rows)`` (a new table of those rows).

    Enough of a :class:`pandas.DataFrame`'s interface for the report figures
    (:mod:`scopeflow.smear.figures`), which accept either.
    """

    def __init__(self, data: Mapping[str, np.ndarray], n_rows: int | None = None) -> None:
        self._data = {k: np.asarray(v) for k, v in data.items()}
        lengths = {len(v) for v in self._data.values()}
        if len(lengths) > 1 or (n_rows is not None and lengths and lengths != {n_rows}):
            raise ValueError(f"columns of different lengths: {sorted(lengths)} (rows {n_rows})")
        self._n = n_rows if n_rows is not None else (lengths.pop() if lengths else 0)

    @property
    def columns(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> np.ndarray:
        return self._data[name]

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def get(self, name: str, default=None):
        return self._data.get(name, default)

    def take(self, rows) -> Columns:
        rows = np.asarray(rows, dtype=np.intp)
        return Columns({k: v[rows] for k, v in self._data.items()}, len(rows))


def column_array(column) -> np.ndarray:
    """A pyarrow column (ChunkedArray) as a numpy array without pandas.

    Numbers and booleans are views of the Arrow buffers (copied once); with nulls they are
    float with NaN there. Strings (and anything else dictionary-encodable) become an object
    array of Python values, None where null.
    """
    import pyarrow as pa

    kind = column.type
    if pa.types.is_boolean(kind):
        dtype = np.dtype(bool)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        code = "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
        dtype = np.dtype(f"<{code}{kind.bit_width // 8}")
    else:  # strings: the few distinct values, indexed
        encoded = column.dictionary_encode()
        parts = []
        for chunk in encoded.chunks:
            words = np.array([*chunk.dictionary.to_pylist(), None], dtype=object)
            codes = column_array(pa.chunked_array([chunk.indices], chunk.indices.type))
            parts.append(words[np.where(np.isnan(codes), len(words) - 1, codes).astype(np.intp)])
        return np.concatenate(parts) if parts else np.zeros(0, object)

    def bits(buffer, off, n):
        return np.unpackbits(np.frombuffer(buffer, np.uint8), bitorder="little")[off:off + n].astype(bool)

    parts = []
    for chunk in column.chunks:
        n, off = len(chunk), chunk.offset
        validity, data = chunk.buffers()[:2]
        values = (bits(data, off, n) if dtype == bool
                  else np.frombuffer(data, dtype, count=n, offset=off * dtype.itemsize))
        if chunk.null_count:
            values = np.where(bits(validity, off, n), values, np.nan)
        parts.append(values)
    if not parts:
        return np.zeros(0, dtype)
    return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


def read_columns(path: str | Path, names: Sequence[str]) -> Columns:
    """Those of the columns ``names`` that a Parquet table has (in the table's order), as
    :class:`Columns`; raises the ``scopeflow.read`` audit event (a job's start-up clock,
    :mod:`scopeflow._snakemake`)."""
    import pyarrow.parquet as pq

    sys.audit("scopeflow.read", str(path))
    file = pq.ParquetFile(path)
    wanted = set(names)
    table = file.read(columns=[c for c in file.schema_arrow.names if c in wanted])
    return Columns({c: column_array(table.column(c)) for c in table.column_names}, table.num_rows)
