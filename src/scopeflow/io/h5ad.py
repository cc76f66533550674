"""The per-cell table as AnnData (``cells.h5ad``) for single-cell tooling (scanpy, squidpy).

Written with h5py in AnnData's documented on-disk format (HDF5, ``encoding-type`` /
``encoding-version`` attributes on every element), so reading it needs ``anndata`` but
writing it does not (anndata pins pandas < 3 on Python 3.11). The Parquet and CSV tables stay
the primary outputs; this is a view of the same rows.

Layout:

- ``obs``: the cell table, one row per cell, index ``"<fov>:<cell_id>"``; text columns as
  string arrays, numbers and booleans as arrays, nullable integers as AnnData's
  ``nullable-integer``.
- ``X``: absent (no feature matrix; every measurement is an ``obs`` column), ``var`` empty.
- ``obsm["spatial"]``: the centroid ``(x_um, y_um)`` in micrometres within its FOV (x first,
  as squidpy and scanpy's spatial plots expect; origin at the centre of pixel (0, 0)).
- ``uns["scopeflow"]``: the provenance (nested mappings as groups; values that AnnData cannot
  store natively, such as ``None`` or lists of mappings, as JSON strings), and
  ``uns["scopeflow_json"]``: the whole provenance as one JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scopeflow.io.atomic import atomic_path

SPATIAL_COLUMNS = ("x_um", "y_um")


def _attrs(obj, kind: str, version: str = "0.2.0") -> None:
    obj.attrs["encoding-type"] = kind
    obj.attrs["encoding-version"] = version


def _strings(group, name: str, values) -> None:
    import h5py

    data = np.array(["" if v is None or v is pd.NA else str(v) for v in values], dtype=object)
    ds = group.create_dataset(name, data=data, dtype=h5py.string_dtype("utf-8"))
    _attrs(ds, "string-array")


def _column(group, name: str, col: pd.Series) -> None:
    if pd.api.types.is_bool_dtype(col) and not col.hasnans:
        _attrs(group.create_dataset(name, data=col.to_numpy(bool)), "array")
    elif pd.api.types.is_integer_dtype(col):
        if col.hasnans:  # pandas nullable integer with missing values
            g = group.create_group(name)
            g.create_dataset("values", data=col.fillna(0).to_numpy(np.int64))
            g.create_dataset("mask", data=col.isna().to_numpy(bool))
            _attrs(g, "nullable-integer", "0.1.0")
        else:
            _attrs(group.create_dataset(name, data=col.to_numpy(col.dtype.numpy_dtype
                                                               if hasattr(col.dtype, "numpy_dtype")
                                                               else col.dtype)), "array")
    elif pd.api.types.is_float_dtype(col):
        _attrs(group.create_dataset(name, data=col.to_numpy(np.float64, na_value=np.nan)), "array")
    else:
        _strings(group, name, col.tolist())


def _dataframe(parent, name: str, df: pd.DataFrame, index: list[str]) -> None:
    g = parent.create_group(name)
    _attrs(g, "dataframe")
    g.attrs["_index"] = "_index"
    g.attrs["column-order"] = np.array(list(df.columns), dtype=object) if len(df.columns) else np.array([], dtype="S1")
    _strings(g, "_index", index)
    for c in df.columns:
        _column(g, c, df[c])


def _uns(group, value) -> None:
    """A JSON-like mapping as AnnData ``dict`` / scalar / array elements."""
    import h5py

    for key, v in value.items():
        key = str(key)
        if isinstance(v, Mapping):
            g = group.create_group(key)
            _attrs(g, "dict", "0.1.0")
            _uns(g, v)
        elif isinstance(v, str):
            ds = group.create_dataset(key, data=v, dtype=h5py.string_dtype("utf-8"))
            _attrs(ds, "string")
        elif isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
            _attrs(group.create_dataset(key, data=v), "numeric-scalar")
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
            _strings(group, key, v)
        elif (isinstance(v, (list, tuple)) and v
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            _attrs(group.create_dataset(key, data=np.asarray(v)), "array")
        else:  # None, empty or mixed lists, lists of mappings: as JSON text
            ds = group.create_dataset(key, data=json.dumps(v, default=str),
                                      dtype=h5py.string_dtype("utf-8"))
            _attrs(ds, "string")


def write_cells_h5ad(cells: pd.DataFrame, path: str | Path, provenance: Mapping | None = None) -> Path:
    """Write the per-cell table as an AnnData ``.h5ad`` (see the module docstring).

    Parameters
    ----------
    cells : DataFrame
        The cell table (``fov``, ``cell_id``, ``x_um``, ``y_um`` ... one row per cell).
    path : str or Path
        Output ``.h5ad``; written under a temporary name and renamed into place.
    provenance : mapping, optional
        JSON-serialisable provenance, stored in ``uns``.

    Returns
    -------
    Path
        ``path``.
    """
    try:
        import h5py
    except ImportError as exc:
        from scopeflow.errors import ScopeflowError

        raise ScopeflowError(f"{path}: writing AnnData (tables.anndata: true) needs h5py; "
                             'pip install "scopeflow[anndata]" or set tables.anndata: false') from exc

    path = Path(path)
    missing = [c for c in ("fov", "cell_id", *SPATIAL_COLUMNS) if c not in cells.columns]
    if missing:
        raise ValueError(f"{path}: the cell table lacks column(s) {missing}")
    cells = cells.reset_index(drop=True)
    index = [f"{f}:{c}" for f, c in zip(cells["fov"], cells["cell_id"])]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _attrs(f, "anndata", "0.1.0")
        _dataframe(f, "obs", cells, index)
        _dataframe(f, "var", pd.DataFrame(), [])
        for name in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            _attrs(f.create_group(name), "dict", "0.1.0")
        spatial = cells[list(SPATIAL_COLUMNS)].to_numpy(np.float64)
        _attrs(f["obsm"].create_dataset("spatial", data=spatial), "array")
        prov = dict(provenance or {})
        g = f["uns"].create_group("scopeflow")
        _attrs(g, "dict", "0.1.0")
        _uns(g, prov)
        ds = f["uns"].create_dataset("scopeflow_json", data=json.dumps(prov, sort_keys=True, default=str),
                                     dtype=h5py.string_dtype("utf-8"))
        _attrs(ds, "string")
    return path
