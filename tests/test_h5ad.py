"""cells.h5ad: the cell table in AnnData's on-disk format (tables.anndata: true)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scopeflow.io.h5ad import write_cells_h5ad


@pytest.fixture
def cells():
    return pd.DataFrame({
        "sample": pd.array(["s", "s", "s"], dtype="string"),
        "fov": ["0-0_0_0", "0-0_0_0", "0-0_1_0"],
        "cell_id": np.array([1, 2, 1], np.uint32),
        "y_um": [1.5, 2.5, 3.5],
        "x_um": [10.0, 20.0, 30.0],
        "area_um2": [40.0, np.nan, 42.5],
        "touches_border": [False, True, False],
        "k": pd.array([0, None, 2], dtype="Int64"),
        "qc_reason": ["", "border", ""],
    })


PROV = {"scopeflow_version": "0.1.0", "segmentation": {"method": "unet", "chunk": 1024,
                                                        "params": {"threads": 2}},
        "inputs": ["a.tif", "b.tif"], "qc": {"min_axis_ratio": None}, "fovs": [{"fov": "x"}]}


def test_h5ad_follows_the_anndata_layout(cells, tmp_path):
    import h5py

    path = write_cells_h5ad(cells, tmp_path / "cells.h5ad", PROV)
    with h5py.File(path, "r") as f:
        assert f.attrs["encoding-type"] == "anndata" and f.attrs["encoding-version"] == "0.1.0"
        obs = f["obs"]
        assert obs.attrs["encoding-type"] == "dataframe"
        assert list(obs.attrs["column-order"]) == list(cells.columns)
        assert [s.decode() for s in obs["_index"][:]] == ["0-0_0_0:1", "0-0_0_0:2", "0-0_1_0:1"]
        np.testing.assert_array_equal(obs["area_um2"][:], cells["area_um2"].to_numpy())
        assert obs["touches_border"][:].tolist() == [False, True, False]
        assert obs["k"].attrs["encoding-type"] == "nullable-integer"
        assert obs["k"]["mask"][:].tolist() == [False, True, False]
        assert obs["qc_reason"].attrs["encoding-type"] == "string-array"
        np.testing.assert_array_equal(f["obsm"]["spatial"][:], [[10.0, 1.5], [20.0, 2.5], [30.0, 3.5]])
        assert f["var"]["_index"].shape == (0,)
        uns = f["uns"]["scopeflow"]
        assert uns["segmentation"]["params"]["threads"][()] == 2
        assert [s.decode() for s in uns["inputs"][:]] == ["a.tif", "b.tif"]
        assert json.loads(uns["fovs"][()]) == [{"fov": "x"}]
        assert json.loads(f["uns"]["scopeflow_json"][()]) == PROV


def test_h5ad_reads_back_with_anndata(cells, tmp_path):
    ad = pytest.importorskip("anndata", reason="anndata not installed (it pins pandas < 3 on Python 3.11)")
    a = ad.read_h5ad(write_cells_h5ad(cells, tmp_path / "cells.h5ad", PROV))
    assert a.n_obs == 3 and a.n_vars == 0
    pd.testing.assert_frame_equal(a.obs.reset_index(drop=True), cells, check_dtype=False)
    np.testing.assert_array_equal(a.obsm["spatial"][:, 0], cells["x_um"])
    assert a.uns["scopeflow"]["segmentation"]["method"] == "unet"


def test_h5ad_needs_the_centroid_columns(cells, tmp_path):
    with pytest.raises(ValueError, match="x_um"):
        write_cells_h5ad(cells.drop(columns="x_um"), tmp_path / "c.h5ad")
    assert not (tmp_path / "c.h5ad").exists()
