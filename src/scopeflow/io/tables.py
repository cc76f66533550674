"""Typed tables: Parquet with provenance in its metadata, plus a CSV mirror."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def write_table(df: pd.DataFrame, parquet_path: str | Path, provenance: Mapping | None = None) -> None:
    """Write ``df`` to Parquet (provenance under the ``scopeflow`` metadata key) and a CSV mirror.

    Both files are written to temporary names and renamed into place, so an interrupted
    write never leaves a complete-looking table. The CSV mirror sits beside the Parquet file
    with the ``.csv`` suffix.
    """
    parquet_path = Path(parquet_path)
    parquet_path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"scopeflow"] = json.dumps(dict(provenance or {}), sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(meta)
    csv_path = parquet_path.with_suffix(".csv")
    tmp_pq = parquet_path.with_name(parquet_path.name + ".tmp")
    tmp_csv = csv_path.with_name(csv_path.name + ".tmp")
    pq.write_table(table, tmp_pq)
    df.to_csv(tmp_csv, index=False)
    os.replace(tmp_csv, csv_path)
    os.replace(tmp_pq, parquet_path)


def read_table(parquet_path: str | Path) -> pd.DataFrame:
    """Read a scopeflow Parquet table."""
    return pd.read_parquet(parquet_path)


def read_provenance(parquet_path: str | Path) -> dict:
    """The provenance record stored in a scopeflow Parquet table."""
    meta = pq.read_schema(parquet_path).metadata or {}
    raw = meta.get(b"scopeflow")
    return json.loads(raw) if raw else {}
