"""Per-cell QC features, rule-based flags, FOV verdicts, the sample gate, figures, and bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from skimage.draw import disk

from scopeflow import smear as pipeline
from scopeflow.errors import ScopeflowError
from scopeflow.io import ome_zarr, tables
from scopeflow.io.columns import read_columns
from scopeflow.smear import cell_kernels, figures, measure
from scopeflow.smear.qc import cell_features
from scopeflow.smear.qc.flags import flag_cells
from scopeflow.smear.qc.gates import fov_verdicts, sample_gate
from scopeflow.smear.qc.params import QC_DEFAULTS, qc_params

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ features


def test_contacts_count_touching_and_gap_separated_cells():
    lab = np.zeros((60, 120), np.int32)
    lab[10:30, 10:30] = 1
    lab[10:30, 30:50] = 2  # touches 1 directly
    lab[10:30, 51:70] = 3  # 1-px background line from 2
    lab[40:55, 100:115] = 4  # isolated
    n, frac = cell_features.contacts(lab, np.array([1, 2, 3, 4, 9]))
    assert list(n) == [1, 2, 1, 0, 0]
    assert frac[3] == 0 and frac[4] == 0
    assert 0.15 < frac[0] < 0.4 and frac[1] > frac[0]  # 2 touches on two sides


def test_concavity_depth_flags_a_doublet_not_a_disc():
    lab = np.zeros((100, 140), np.int32)
    lab[disk((50, 30), 15)] = 1
    lab[disk((50, 85), 15)] = 2
    lab[disk((50, 110), 15)] = 2  # two overlapping discs = one doublet
    solidity, depth = cell_features.convexity(lab, np.array([1, 2, 7]))
    assert depth[0] <= 1.0 and depth[1] > 3.0 and np.isnan(depth[2])
    assert solidity[0] > 0.95 and solidity[1] < solidity[0] and np.isnan(solidity[2])
    from skimage.measure import regionprops

    assert np.allclose(solidity[:2], [r.solidity for r in regionprops(lab)])  # as skimage


def test_saturated_fraction():
    lab = np.zeros((10, 10), np.int32)
    lab[:5] = 1
    lab[5:] = 2
    img = np.full((10, 10), 0.5)
    img[0, :] = 1.0  # 10 of cell 1's 50 pixels
    assert np.allclose(cell_features.saturated_fraction(img, lab, np.array([1, 2])), [0.2, 0.0])


def test_measure_cells_adds_qc_features_and_local_focus():
    lab = np.zeros((120, 200), np.uint32)
    for k, x in enumerate((30, 80, 130), start=1):
        lab[disk((60, x), 15)] = k
    rng = np.random.default_rng(0)
    dpc = np.full(lab.shape, 0.5, np.float32)
    dpc += (lab > 0) * rng.normal(0, 0.05, lab.shape).astype(np.float32)
    dpc[lab == 3] = 0.6  # a flat, featureless cell: no local structure
    df = measure.measure_cells(lab, dpc, None, 0.5)
    assert set(df.columns) == set(measure.CELL_COLUMNS)
    assert (df["n_neighbours"] == 0).all() and (df["axis_ratio"] > 0.9).all()
    assert df["focus_rel_fov"].iloc[2] < 0.1 < df["focus_rel_fov"].iloc[0]


# ------------------------------------------------------------------ flags


def _cells(n=20, cols=None):
    """A sample of n identical, good cells over 2 FOVs; ``cols`` overrides rows {i: {col: v}}."""
    df = pd.DataFrame({
        "sample": "s", "fov": ["a"] * (n // 2) + ["b"] * (n - n // 2), "cell_id": np.arange(1, n + 1),
        "area_um2": 45.0, "solidity": 0.97, "concavity_rel": 0.04, "touches_border": False,
        "focus_rel_fov": 1.0, "dpc_contrast": 0.1, "saturated_fraction": 0.0, "axis_ratio": 0.9,
    })
    for i, values in (cols or {}).items():
        for c, v in values.items():
            df.loc[i, c] = v
    return df


def test_flags_name_every_failed_check_relative_to_the_sample():
    df = _cells(cols={
        0: {"area_um2": 100.0},  # > 2x median
        1: {"area_um2": 10.0},  # < 0.4x
        2: {"solidity": 0.8},
        3: {"concavity_rel": 0.2},
        4: {"touches_border": True},
        5: {"focus_rel_fov": 0.1},
        6: {"focus_rel_fov": 50.0},
        7: {"dpc_contrast": 0.01},
        8: {"saturated_fraction": 0.5},
        9: {"area_um2": 100.0, "solidity": 0.5, "touches_border": True},
    })
    out = flag_cells(df)
    reasons = out["qc_reason"].tolist()
    assert reasons[:10] == ["size", "size", "clump", "clump", "border", "out_of_focus", "debris",
                            "low_contrast", "saturated", "border;size;clump"]
    assert (out["qc_pass"] == (out["qc_reason"] == "")).all() and out["qc_pass"][10:].all()
    assert np.allclose(out["area_rel_sample"][10:], 1.0)
    # doubling every area changes nothing: thresholds are relative
    df2 = df.assign(area_um2=df["area_um2"] * 2)
    assert flag_cells(df2)["qc_reason"].tolist() == reasons


def test_flag_thresholds_are_configurable():
    df = _cells(cols={0: {"touches_border": True}, 1: {"axis_ratio": 0.3}})
    assert flag_cells(df)["qc_reason"].tolist()[:2] == ["border", ""]
    out = flag_cells(df, {"exclude_border": False, "min_axis_ratio": 0.5})
    assert out["qc_reason"].tolist()[:2] == ["", "shape"]


def test_classifier_reason_uses_p_good_and_needs_the_column():
    df = _cells(n=4)
    df["p_good"] = [0.9, 0.2, np.nan, 0.5]
    out = flag_cells(df, {"classifier": True, "classifier_threshold": 0.5})
    assert out["qc_reason"].tolist() == ["", "classifier", "classifier", ""]
    assert flag_cells(df)["qc_pass"].all()  # classifier off: p_good ignored
    with pytest.raises(ScopeflowError, match="qc.classifier"):
        flag_cells(df.drop(columns="p_good"), {"classifier": True})


def test_unknown_qc_key_is_one_line_error():
    with pytest.raises(ScopeflowError, match="qc.min_soliditi"):
        qc_params({"min_soliditi": 0.5})
    with pytest.raises(ScopeflowError, match="qc.focus_metric"):
        qc_params({"focus_metric": "sharpness"})


def test_qc_defaults_match_schema_and_config():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["qc"]["properties"]
    assert {k: v["default"] for k, v in props.items()} == QC_DEFAULTS
    assert yaml.safe_load((REPO / "config.yaml").read_text())["qc"] == QC_DEFAULTS


def test_qc_params_object_has_every_schema_key_with_its_default():
    from dataclasses import fields

    from scopeflow.smear.qc.params import QCParams

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["qc"]["properties"]
    p = QCParams()
    assert [f.name for f in fields(QCParams)] == list(props)  # same names, same order
    for name, spec in props.items():
        value = getattr(p, name)
        assert (list(value) if isinstance(value, tuple) else value) == spec["default"], name
    custom = QCParams.from_config({"min_solidity": 0.8, "extra_focus_metrics": ["brenner"]})
    assert custom.min_solidity == 0.8 and custom.extra_focus_metrics == ("brenner",)
    assert custom.max_area_ratio == p.max_area_ratio
    assert QCParams.from_config(custom) is custom
    assert qc_params(custom) == {**QC_DEFAULTS, "min_solidity": 0.8, "extra_focus_metrics": ["brenner"]}
    with pytest.raises(ScopeflowError, match="qc.extra_focus_metrics"):
        QCParams(extra_focus_metrics=("sharpness",))


# ------------------------------------------------------------------ FOV verdicts and gate


def _fovs(focus, n_cells, border=None):
    n = len(focus)
    return pd.DataFrame({"fov": [f"f{k}" for k in range(n)], "n_cells": n_cells,
                         "n_cells_border": border or [0] * n, "focus_laplacian_var": focus})


def test_fov_verdicts_relative_to_the_sample_median():
    f = fov_verdicts(_fovs([1.0, 1.1, 0.9, 0.1, 1.0], [100, 110, 90, 100, 5]))
    assert f["focus_pass"].tolist() == [True, True, True, False, True]
    assert f["count_pass"].tolist() == [True, True, True, True, False]
    assert f["fov_qc_reason"].tolist() == ["", "", "", "focus", "count"]
    assert np.allclose(f["focus_ratio"], [1.0, 1.1, 0.9, 0.1, 1.0])


def test_single_fov_sample_judged_by_absolute_minimums_only():
    f = fov_verdicts(_fovs([0.003], [50]))
    assert f["fov_pass"].tolist() == [True] and f["focus_ratio"].tolist() == [1.0]
    f = fov_verdicts(_fovs([0.003], [3]))  # too few cells for any sample
    assert f["fov_qc_reason"].tolist() == ["count"]


def test_blank_fovs_fail_without_division_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = fov_verdicts(_fovs([0.0, 0.0], [0, 0]))  # constant images, no cells
        assert f["fov_qc_reason"].tolist() == ["focus;count"] * 2 and f["focus_ratio"].isna().all()
        f = fov_verdicts(_fovs([1.0, 0.0, 1.2], [50, 0, 60]))  # one blank FOV among good ones
        assert f["fov_pass"].tolist() == [True, False, True]
        cells = flag_cells(_cells(n=0))
        gate = sample_gate(f, cells)
    assert len(cells) == 0 and {"qc_pass", "qc_reason", "area_rel_sample"} <= set(cells.columns)
    assert gate["qc_gate"] == "fail" and gate["n_cells_qc_pass"] == 0 and np.isnan(gate["fraction_qc_pass"])
    assert "fraction_qc_pass" in gate["qc_gate_reason"]


def test_cells_of_failed_fovs_are_rejected_and_gate_counts():
    cells = _cells(n=200)
    cells["fov"] = np.repeat(["f0", "f1", "f2", "f3"], 50)
    fovs = fov_verdicts(_fovs([1.0, 1.0, 0.05, 1.0], [50, 50, 50, 50]))
    out = flag_cells(cells, fovs=fovs)
    assert (out.loc[out["fov"] == "f2", "qc_reason"] == "fov_focus").all()
    assert out.loc[out["fov"] != "f2", "qc_pass"].all()
    gate = sample_gate(fovs, out)
    assert gate["n_cells_qc_pass"] == 150 and gate["n_fovs_pass"] == 3 and gate["qc_gate"] == "pass"
    assert gate["reason_counts"] == {"fov_focus": 50}
    strict = sample_gate(fovs, out, {"min_cells_pass": 1000})
    assert strict["qc_gate"] == "fail" and "n_cells_qc_pass 150 < 1000" in strict["qc_gate_reason"]
    kept = flag_cells(cells, {"drop_failed_fovs": False}, fovs=fovs)
    assert kept["qc_pass"].all()


# ------------------------------------------------------------------ pipeline functions


def _store(tmp_path, images: dict[str, tuple[np.ndarray, np.ndarray]], ps=0.5):
    store = tmp_path / "s.ome.zarr"
    ome_zarr.create_sample_store(store, list(images), {})
    for name, (dpc, labels) in images.items():
        ome_zarr.write_image(store, name, {"dpc": dpc.astype(np.float32)}, ps, chunk=256,
                             attrs={"i": 0, "j": list(images).index(name), "x_mm": 0.0,
                                    "y_mm": float(list(images).index(name))})
        ome_zarr.write_labels(store, name, labels.astype(np.uint32), attrs={"method": "test"})
    seg = tmp_path / "segment.json"
    seg.write_text(json.dumps({"method": "test", "fovs": {n: 0 for n in images}}))
    return store, seg


def _smear(seed, shape=(256, 256)):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint32)
    dpc = np.full(shape, 0.5, np.float32)
    k = 0
    for y in range(24, shape[0] - 20, 36):
        for x in range(24, shape[1] - 20, 36):
            k += 1
            rr, cc = disk((y + rng.integers(-3, 4), x + rng.integers(-3, 4)), 13, shape=shape)
            labels[rr, cc] = k
            dpc[rr, cc] += 0.15 * np.sign(cc - x).astype(np.float32)
    return dpc + rng.normal(0, 0.01, shape).astype(np.float32), labels


def _run(tmp_path, images, qc=None):
    store, seg = _store(tmp_path, images)
    c, f = tmp_path / "c.parquet", tmp_path / "f.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pipeline.measure_store(store, seg, c, f, sample="s")
        out = {k: tmp_path / f"{k}.parquet" for k in ("cells", "fovs", "sample")}
        pipeline.merge_tables([c], [f], store, out["cells"], out["fovs"], out["sample"], sample="s",
                              qc=qc, out_qc=tmp_path / "qc.json")
    return ({k: tables.read_table(p) for k, p in out.items()},
            json.loads((tmp_path / "qc.json").read_text()))


def test_pipeline_empty_and_constant_fovs_get_sensible_verdicts(tmp_path):
    zeros = np.zeros((256, 256), np.uint32)
    images = {
        "good1": _smear(1), "good2": _smear(2), "good3": _smear(3),
        "no_cells": (_smear(4)[0], zeros),  # an image the segmentation found nothing in
        "constant": (np.full((256, 256), 0.5, np.float32), zeros),
    }
    t, qc = _run(tmp_path, images, {"min_cells_pass": 10})
    fovs = t["fovs"].set_index("fov")
    assert fovs.loc["constant", "fov_qc_reason"] == "focus;count"
    assert fovs.loc["constant", "focus_laplacian_var"] == 0.0
    assert "count" in fovs.loc["no_cells", "fov_qc_reason"]
    assert fovs.loc[["good1", "good2", "good3"], "fov_pass"].all()
    assert set(measure.FOV_QC_COLUMNS) <= set(fovs.columns) | {"fov"}
    cells = t["cells"]
    assert set(measure.CELL_COLUMNS) | set(measure.CELL_QC_COLUMNS) - {"p_good"} == set(cells.columns)
    s = t["sample"].iloc[0]
    assert s["n_fovs_pass"] == 3 and s["qc_gate"] == qc["qc_gate"] == "pass"
    assert s["n_cells_qc_pass"] == cells["qc_pass"].sum() == qc["n_cells_qc_pass"] > 0
    passing = cells[cells["qc_pass"]]
    assert s["median_area_um2"] == pytest.approx(passing["area_um2"].median())
    assert qc["thresholds"]["min_cells_pass"] == 10 and len(qc["fovs"]) == 5
    assert set(SAMPLE_QC := ("n_cells_qc_pass", "fraction_qc_pass", "n_fovs_pass", "qc_gate",
                             "qc_gate_reason")) <= set(t["sample"].columns), SAMPLE_QC


def test_pipeline_single_fov_and_single_blank_fov(tmp_path):
    t, qc = _run(tmp_path / "one", {"only": _smear(5)}, {"min_cells_pass": 5})
    assert t["fovs"]["fov_pass"].tolist() == [True] and qc["qc_gate"] == "pass"
    zeros = np.zeros((64, 64), np.uint32)
    t, qc = _run(tmp_path / "blank", {"blank": (np.full((64, 64), 0.5, np.float32), zeros)})
    assert t["fovs"]["fov_qc_reason"].tolist() == ["focus;count"]
    assert qc["qc_gate"] == "fail" and qc["fraction_qc_pass"] is None and qc["n_cells"] == 0
    assert np.isnan(t["sample"]["median_area_um2"].iloc[0])


def test_classifier_integration_point_without_the_module(tmp_path, monkeypatch):
    """With qc.classifier the measure step asks scopeflow.qc.cell_classifier for p_good; a
    missing module is a one-line error naming the key, never a made-up column."""
    import sys

    monkeypatch.setitem(sys.modules, "scopeflow.qc.cell_classifier", None)  # import fails
    store, seg = _store(tmp_path, {"a": _smear(6)})
    with pytest.raises(ScopeflowError, match="qc.classifier"):
        pipeline.measure_store(store, seg, tmp_path / "c.parquet", tmp_path / "f.parquet", sample="s",
                               classifier=True)


def test_classifier_column_is_passed_through(tmp_path, monkeypatch):
    """p_good comes from predict_good(dpc, labels, cell_ids) per FOV."""
    import types

    calls = []

    def predict_good(dpc, labels, cell_ids):
        calls.append((dpc.dtype, labels.dtype, len(cell_ids)))
        return np.where(np.asarray(cell_ids) % 2 == 0, 0.9, 0.1)

    fake = types.ModuleType("scopeflow.qc.cell_classifier")
    fake.predict_good = predict_good
    monkeypatch.setitem(__import__("sys").modules, "scopeflow.qc.cell_classifier", fake)
    store, seg = _store(tmp_path, {"a": _smear(7)})
    c, f = tmp_path / "c.parquet", tmp_path / "f.parquet"
    cells, _ = pipeline.measure_store(store, seg, c, f, sample="s", classifier=True)
    assert calls and calls[0][:2] == (np.float32, np.uint32)
    out = flag_cells(cells, {"classifier": True})
    odd = out["cell_id"] % 2 == 1
    assert out.loc[odd, "qc_reason"].str.contains("classifier").all()
    assert not out.loc[~odd, "qc_reason"].str.contains("classifier").any()


def test_figures_written_for_normal_and_empty_samples(tmp_path):
    t, _ = _run(tmp_path, {"a": _smear(8), "b": _smear(9)}, {"min_cells_pass": 5})
    store = tmp_path / "s.ome.zarr"
    cells = t["cells"]
    cells.loc[cells.index[:3], ["qc_pass", "qc_reason"]] = [False, "size"]
    figures.gallery_figure(store, cells, tmp_path / "g.png", n=6)
    figures.focus_map_figure(t["fovs"], tmp_path / "m.png")
    figures.histogram_figure(cells, t["fovs"], tmp_path / "h.png")
    empty_cells, empty_fovs = cells.iloc[:0], t["fovs"].iloc[:0]
    figures.gallery_figure(store, empty_cells, tmp_path / "g0.png")
    figures.focus_map_figure(empty_fovs, tmp_path / "m0.png")
    figures.histogram_figure(empty_cells, empty_fovs, tmp_path / "h0.png")
    for name in ("g", "m", "h", "g0", "m0", "h0"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    kept, rejected = figures.pick_gallery_cells(cells, n=4)
    assert len(kept) == 4 and len(rejected) == 3 and (rejected["qc_reason"] == "size").all()
    # crops cut beforehand (qc_report cuts them in a thread) draw the same gallery
    crops = figures.gallery_crops(store, cells, n=6)
    assert [len(c) for _, c in crops] == [6, 3] and crops[0][1][0][0].shape[2] == 3
    figures.gallery_figure(store, cells, tmp_path / "g2.png", n=6, crops=crops)
    import imageio.v3 as iio

    np.testing.assert_array_equal(iio.imread(tmp_path / "g2.png"), iio.imread(tmp_path / "g.png"))
    # the crops drawn as one grid image: kept outlines green, rejected red, white between
    img = iio.imread(tmp_path / "g.png")[..., :3].astype(int)
    green = (np.abs(img - [26, 230, 51]).max(-1) < 30).sum()
    red = (np.abs(img - [255, 51, 26]).max(-1) < 30).sum()
    assert green > 50 and red > 20 and (img == 255).all(-1).mean() > 0.3


def test_measure_store_tables_do_not_depend_on_threads(tmp_path):
    """FOVs measured by a pool of threads give the serial path's tables, in FOV order."""
    store, seg = _store(tmp_path, {n: _smear(k) for k, n in enumerate(["c", "a", "b"])})
    out = {}
    for threads in (1, 2, 3):
        out[threads] = pipeline.measure_store(store, seg, tmp_path / f"c{threads}.parquet",
                                              tmp_path / f"f{threads}.parquet", sample="s",
                                              fovs=["c", "a", "b"], threads=threads)
    assert list(out[1][1]["fov"]) == ["c", "a", "b"] and len(out[1][0]) > 30
    for threads in (2, 3):
        pd.testing.assert_frame_equal(out[threads][0], out[1][0])
        pd.testing.assert_frame_equal(out[threads][1], out[1][1])


def test_read_window_is_the_slice_of_the_whole_plane(tmp_path):
    dpc, labels = _smear(3, shape=(300, 280))
    store, _ = _store(tmp_path, {"a": (dpc, labels)})
    for ys, xs in ((slice(0, 40), slice(0, 40)), (slice(250, 300), slice(100, 281)), (slice(7, 9), slice(270, 300))):
        np.testing.assert_array_equal(ome_zarr.read_channel(store, "a", "dpc", window=(ys, xs)), dpc[ys, xs])
        np.testing.assert_array_equal(ome_zarr.read_labels(store, "a", window=(ys, xs)), labels[ys, xs])


def test_sample_overview_from_pyarrow_columns(tmp_path):
    """The overview reads only the columns it draws (pyarrow) and the crop's chunks; with and
    without a stage grid, and for a sample without cells."""
    t, _ = _run(tmp_path, {"a": _smear(8), "b": _smear(9)}, {"min_cells_pass": 5})
    store = tmp_path / "s.ome.zarr"
    figures.sample_overview_figure(store, tmp_path / "cells.parquet", tmp_path / "fovs.parquet",
                                   tmp_path / "o.png", sample="s", crop=128)
    grid = figures._count_grid(*(read_columns(tmp_path / "fovs.parquet", ["i", "j", "n_cells"])[k]
                                 for k in ("i", "j", "n_cells")))
    assert grid.shape == (1, 2) and grid.sum() == len(t["cells"])
    tables.write_table(t["fovs"].drop(columns=["i", "j"]), tmp_path / "f2.parquet")
    tables.write_table(t["cells"].iloc[:0], tmp_path / "c0.parquet")
    figures.sample_overview_figure(store, tmp_path / "c0.parquet", tmp_path / "f2.parquet",
                                   tmp_path / "o2.png", sample="s")
    for name in ("o", "o2"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_shipped_classifier_wired_into_measure(tmp_path):
    """The real scopeflow.qc.cell_classifier through measure_store (skipped until its
    shipped weights exist)."""
    clf = pytest.importorskip("scopeflow.qc.cell_classifier")
    if not Path(clf.DEFAULT_WEIGHTS).is_file():
        pytest.skip(f"classifier weights not shipped yet: {clf.DEFAULT_WEIGHTS}")
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store, seg = _store(tmp_path, {"a": _smear(10)})
        cells, _ = pipeline.measure_store(store, seg, tmp_path / "c.parquet", tmp_path / "f.parquet",
                                          sample="s", classifier=True)
    finally:
        torch.set_num_threads(old)
    p = cells["p_good"].to_numpy()
    assert len(p) == len(cells) > 0 and np.all((p >= 0) & (p <= 1))
    assert "qc_reason" in flag_cells(cells, {"classifier": True}).columns


def test_compiled_features_equal_skimage_reference():
    """contacts / convexity / group sums equal the skimage-scipy reference implementations."""
    from scipy import ndimage as ndi

    from test_measure import _tricky_labels

    lab = _tricky_labels(3).astype(np.int64)
    lab[lab == 9] = -1  # negative ids are background
    index = np.array([500, 3, 999, 0, 501, 502, 503, 504, 505, 6])
    for gap in (1, 2, 3):
        n_ref, f_ref = cell_features._contacts_reference(lab, index, gap)
        n, f = cell_features.contacts(lab, index, gap)
        assert np.array_equal(n, n_ref) and np.array_equal(f, f_ref)
    s_ref, d_ref = cell_features._convexity_reference(lab, index)
    s, d = cell_features.convexity(lab, index)
    assert np.array_equal(np.isnan(s), np.isnan(s_ref)) and np.array_equal(np.isnan(d), np.isnan(d_ref))
    assert np.allclose(s, s_ref, equal_nan=True) and np.array_equal(d[~np.isnan(d)], d_ref[~np.isnan(d_ref)])
    g = cell_kernels.group_labels(lab)
    vals = np.random.default_rng(0).normal(size=lab.shape).astype(np.float32)
    present = index[np.isin(index, np.unique(lab[lab > 0]))]
    assert np.array_equal(cell_kernels.label_mean(vals, g, present),
                          ndi.mean(vals, np.where(lab > 0, lab, 0), present))
    assert np.array_equal(cell_kernels.label_sum(vals, g, present),
                          ndi.sum_labels(vals, np.where(lab > 0, lab, 0), present))


def test_cell_shapes_perimeter_and_moments_match_regionprops():
    from skimage.measure import regionprops

    from test_measure import _tricky_labels

    lab = _tricky_labels(4)
    g = cell_kernels.group_labels(lab)
    shapes = cell_kernels.cell_shapes(g)
    regions = regionprops(lab)
    assert [r.label for r in regions] == list(g.present)
    assert np.allclose(shapes["perimeter"], [r.perimeter for r in regions], rtol=1e-12)
    assert np.array_equal(shapes["bbox"], [r.bbox for r in regions])
    assert np.array_equal(shapes["hull_area"], [r.area_convex for r in regions])
    m = shapes["moments"]
    assert np.array_equal(m[:, 0], [r.area for r in regions])
    assert np.allclose(m[:, [1, 2, 3, 4, 5]], [[r.moments[1, 0], r.moments[0, 1], r.moments[2, 0],
                                                r.moments[0, 2], r.moments[1, 1]] for r in regions])


def _shape_cases():
    """Cells whose hull holds no background, background only left / right of each row's run,
    and background between two runs of a row (a notch open sideways, a hole)."""
    lab = np.zeros((90, 120), np.int64)
    lab[2:8, 2:12] = 1  # a rectangle: hull = cell
    lab[disk((25, 20), 9, shape=lab.shape)] = 2  # a disc
    lab[disk((20, 45), 7, shape=lab.shape)] = 3  # a vertical doublet: one run per row
    lab[disk((31, 45), 7, shape=lab.shape)] = 3
    lab[disk((60, 15), 7, shape=lab.shape)] = 4  # a horizontal doublet: two runs at its waist
    lab[disk((60, 27), 7, shape=lab.shape)] = 4
    lab[50:75, 50:75] = 5  # a ring: a hole
    lab[58:67, 58:67] = 0
    lab[5:30, 80:85] = 6  # a U: a notch open upwards
    lab[25:30, 80:100] = 6
    lab[5:30, 95:100] = 6
    lab[40:50, 90:110] = 7  # a C: a notch open sideways
    lab[44:46, 100:110] = 0
    lab[80:90, 100:120] = 8  # on the bottom-right border
    lab[85:90, 105:110] = 0
    return lab


def test_cell_shapes_hull_and_concavity_of_known_shapes():
    from skimage.measure import regionprops

    lab = _shape_cases()
    g = cell_kernels.group_labels(lab)
    shapes = cell_kernels.cell_shapes(g)
    regions = regionprops(lab)
    assert list(g.present) == list(range(1, 9))
    assert np.array_equal(shapes["hull_area"], [r.area_convex for r in regions])
    assert np.allclose(shapes["perimeter"], [r.perimeter for r in regions], rtol=1e-12)
    s_ref, d_ref = cell_features._convexity_reference(lab, g.present)
    s, d = cell_features.convexity(lab, g.present, groups=g, shapes=shapes)
    np.testing.assert_allclose(s, s_ref, rtol=1e-12)
    np.testing.assert_array_equal(d, d_ref)
    assert d[0] == 0 and d[1] <= 1.5  # rectangle, disc
    assert d[2] > 1 and d[3] > 1 and d[5] > 5 and d[6] >= 4  # doublets, U, C
    assert d[4] <= 1.5  # the ring's hole is not a concavity


@pytest.mark.parametrize("seed", range(4))
def test_inner_outline_equals_skimage_find_boundaries_inner(seed):
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    labels = np.zeros((60, 70), np.uint32)
    for k in range(1, 15):  # touching and overlapping disks, some cut by the image edge
        rr, cc = disk((rng.uniform(-5, 65), rng.uniform(-5, 75)), rng.uniform(3, 12), shape=labels.shape)
        labels[rr, cc] = k
    assert labels.any() and (labels == 0).any()
    assert np.array_equal(figures.inner_outline(labels), find_boundaries(labels, mode="inner"))
    one = labels == labels.max()
    assert np.array_equal(figures.inner_outline(one), find_boundaries(one, mode="inner"))
