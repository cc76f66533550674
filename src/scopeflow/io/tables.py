"""Typed tables: Parquet with provenance in its metadata, plus a CSV mirror."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from scopeflow.io.atomic import atomic_path

if TYPE_CHECKING:  # pandas is imported where used: a job writing Arrow tables starts without it
    import pandas as pd

#: pandas dtype name -> (Arrow type, the ``pandas_type`` and ``numpy_type`` pandas records for it)
_PANDAS_DTYPES = {
    "str": (pa.large_string(), "object", "str"),
    "object": (pa.null(), "empty", "object"),  # a column of nothing but missing values
    "int64": (pa.int64(), "int64", "int64"),
    "Int64": (pa.int64(), "int64", "Int64"),
    "float64": (pa.float64(), "float64", "float64"),
    "bool": (pa.bool_(), "bool", "bool"),
    "boolean": (pa.bool_(), "bool", "boolean"),
}


def typed_table(columns: Mapping[str, tuple[str, Sequence]]) -> pa.Table:
    """An Arrow table of ``{name: (pandas dtype, values)}``, built without pandas, whose
    pandas metadata restores those dtypes on :func:`read_table` (nullable ``Int64`` and
    ``boolean`` included); ``None`` is a missing value.

    Supported dtypes: ``str``, ``int64``, ``Int64``, ``float64``, ``bool``, ``boolean`` and
    ``object`` (missing values only), written as :meth:`pyarrow.Table.from_pandas` writes them.
    The arrays are assembled from their buffers: ``pyarrow.array`` imports pandas.
    """
    from importlib.metadata import PackageNotFoundError, version

    arrays, fields = [], []
    for name, (dtype, values) in columns.items():
        if dtype not in _PANDAS_DTYPES:
            raise ValueError(f"column {name!r}: dtype {dtype!r} is not one of {sorted(_PANDAS_DTYPES)}")
        arrow_type, pandas_type, numpy_type = _PANDAS_DTYPES[dtype]
        arrays.append(_arrow_array(arrow_type, list(values)))
        fields.append({"name": name, "field_name": name, "pandas_type": pandas_type,
                       "numpy_type": numpy_type, "metadata": None})
    meta = {"index_columns": [], "column_indexes": [], "columns": fields,
            "creator": {"library": "pyarrow", "version": pa.__version__}}
    try:
        meta["pandas_version"] = version("pandas")
    except PackageNotFoundError:
        pass
    return pa.table(arrays, names=list(columns)).replace_schema_metadata(
        {b"pandas": json.dumps(meta).encode()})


def _arrow_array(arrow_type: pa.DataType, values: list) -> pa.Array:
    """An Arrow array of ``values`` (``None`` missing) from numpy buffers."""
    import numpy as np

    n = len(values)
    if arrow_type == pa.null():
        return pa.nulls(n)
    valid = np.array([v is not None for v in values], bool)
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    if arrow_type == pa.large_string():
        data = [str(v).encode() if v is not None else b"" for v in values]
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in data], dtype=np.int64)]).astype(np.int64)
        buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    elif arrow_type == pa.bool_():
        bits = np.packbits(np.array([bool(v) if v is not None else False for v in values], bool),
                           bitorder="little")
        buffers = [validity, pa.py_buffer(bits)]
    else:
        data = np.array([v if v is not None else 0 for v in values], arrow_type.to_pandas_dtype())
        buffers = [validity, pa.py_buffer(data)]
    return pa.Array.from_buffers(arrow_type, n, buffers, null_count=int(n - valid.sum()))


def write_table(df: pd.DataFrame, parquet_path: str | Path, provenance: Mapping | None = None) -> None:
    """Write ``df`` to Parquet (provenance under the ``scopeflow`` metadata key) and a CSV
    mirror, as :func:`write_arrow` does."""
    write_arrow(pa.Table.from_pandas(df, preserve_index=False), parquet_path, provenance)


def write_arrow(table: pa.Table, parquet_path: str | Path, provenance: Mapping | None = None) -> None:
    """Write an Arrow table to Parquet (provenance under the ``scopeflow`` metadata key) and a
    CSV mirror.

    Both files are written to temporary names and renamed into place, so an interrupted
    write never leaves a complete-looking table. The CSV mirror sits beside the Parquet file
    with the ``.csv`` suffix; it is written by pyarrow from the same Arrow table (≈10x
    faster than ``DataFrame.to_csv``): floats in their shortest round-trip form (whole
    numbers without ``.0``), booleans as ``True`` / ``False``, missing values empty.
    """
    parquet_path = Path(parquet_path)
    meta = dict(table.schema.metadata or {})
    meta[b"scopeflow"] = json.dumps(dict(provenance or {}), sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(meta)
    csv_path = parquet_path.with_suffix(".csv")
    # dictionary encoding for text only: numbers gain nothing from it and pyarrow's attempt
    # (its default, on every column) took 3/4 of a cell table's write
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_dictionary(f.type)]
    with atomic_path(parquet_path) as tmp_pq, atomic_path(csv_path) as tmp_csv:
        if table.num_rows < 10000:
            pq.write_table(table, tmp_pq, use_dictionary=text)
            _write_csv(table, tmp_csv)
        else:  # both writers release the GIL: the CSV is written beside the Parquet file
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1, thread_name_prefix="scopeflow-csv") as pool:
                csv_done = pool.submit(_write_csv, table, tmp_csv)
                pq.write_table(table, tmp_pq, use_dictionary=text)
                csv_done.result()
    # the CSV is renamed into place first, the Parquet file (the workflow's output) last


def _write_csv(table: pa.Table, path: Path) -> None:
    """CSV of an Arrow table: booleans spelled as pandas does, text quoted only where it must."""
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    cols = []
    for field, col in zip(table.schema, table.columns):
        if pa.types.is_boolean(field.type):  # (pc.if_else with text would import pandas)
            col = pc.utf8_capitalize(col.cast(pa.string()))
        elif pa.types.is_dictionary(field.type):
            col = col.cast(field.type.value_type)
        cols.append(col)
    plain = pa.table(cols, names=table.column_names)
    try:
        pcsv.write_csv(plain, path, pcsv.WriteOptions(quoting_style="none", quoting_header="none"))
    except pa.ArrowInvalid:  # a delimiter, quote or line break in a value: quote text
        pcsv.write_csv(plain, path, pcsv.WriteOptions(quoting_style="needed", quoting_header="none"))


def read_table(parquet_path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a scopeflow Parquet table (only ``columns`` when given).

    Raises the audit event ``scopeflow.read`` (pyarrow opens the file in C++, which raises
    no ``open`` event; a job's start-up clock, :mod:`scopeflow._snakemake`, listens for both).
    """
    import pandas as pd

    sys.audit("scopeflow.read", str(parquet_path))
    return pd.read_parquet(parquet_path, columns=columns)


def read_provenance(parquet_path: str | Path) -> dict:
    """The provenance record stored in a scopeflow Parquet table."""
    meta = pq.read_schema(parquet_path).metadata or {}
    raw = meta.get(b"scopeflow")
    return json.loads(raw) if raw else {}
