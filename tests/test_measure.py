import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from scopeflow.smear import measure
from scopeflow.io.tables import read_provenance, read_table, write_table


def _two_discs():
    labels = np.zeros((200, 300), np.uint32)
    labels[disk((100, 100), 20)] = 1
    labels[disk((50, 290), 15, shape=labels.shape)] = 2  # cut by the right border
    return labels


def test_measure_cells_units_and_ids():
    labels = _two_discs()
    dpc = np.full(labels.shape, 0.5, np.float32)
    dpc[labels == 1] = 0.7
    phase = (labels == 1).astype(np.float32) * 2.0
    df = measure.measure_cells(labels, dpc, phase, 0.25, sample="s", fov="f")
    assert list(df["cell_id"]) == [1, 2]
    c = df.iloc[0]
    assert abs(c["y_px"] - 100) < 1e-6 and abs(c["x_px"] - 100) < 1e-6
    assert abs(c["area_um2"] - np.pi * 20**2 * 0.0625) / (np.pi * 400 * 0.0625) < 0.02
    assert abs(c["equivalent_diameter_um"] - 40 * 0.25) < 0.2
    assert 0.85 < c["circularity"] <= 1.1
    assert c["solidity"] > 0.95 and c["eccentricity"] < 0.2
    assert abs(c["mean_dpc"] - 0.7) < 1e-6 and abs(c["dpc_contrast"] - 0.2) < 1e-6
    assert abs(c["mean_phase_rad"] - 2.0) < 1e-6
    assert abs(c["phase_integral_rad_um2"] - 2.0 * c["area_um2"]) < 1e-3
    assert not c["touches_border"] and df.iloc[1]["touches_border"]
    assert set(measure.CELL_COLUMNS) == set(df.columns)


def test_empty_fov_gives_empty_table_and_sane_summary():
    labels = np.zeros((64, 64), np.uint32)
    df = measure.measure_cells(labels, np.zeros((64, 64), np.float32), None, 0.3)
    assert len(df) == 0 and set(measure.CELL_COLUMNS) == set(df.columns)
    row = measure.summarize_fov(df, sample="s", fov="f", shape=(64, 64), pixel_size_um=0.3, focus=0.0)
    assert row["n_cells"] == 0 and row["density_per_mm2"] == 0
    summary = measure.summarize_sample(pd.DataFrame([row]), df, sample="s")
    assert summary["n_cells"] == 0


def test_density_counts_border_cells_half():
    labels = _two_discs()
    df = measure.measure_cells(labels, np.zeros(labels.shape, np.float32), None, 1.0)
    row = measure.summarize_fov(df, sample="s", fov="f", shape=labels.shape, pixel_size_um=1.0, focus=1.0)
    area_mm2 = 200 * 300 * 1e-6
    assert abs(row["density_per_mm2"] - 1.5 / area_mm2) < 1e-9


def test_table_roundtrip_keeps_types_and_provenance(tmp_path):
    df = measure.measure_cells(_two_discs(), np.zeros((200, 300), np.float32), None, 0.5, sample="s", fov="f")
    path = tmp_path / "cells.parquet"
    write_table(df, path, {"config_sha256": "abc"})
    back = read_table(path)
    pd.testing.assert_frame_equal(back, df)
    assert read_provenance(path)["config_sha256"] == "abc"
    assert (tmp_path / "cells.csv").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_typed_table_reads_back_as_the_pandas_frame_it_describes(tmp_path):
    """An Arrow table built without pandas carries the pandas metadata from_pandas writes, so
    pandas reads the same dtypes (nullable Int64 / boolean included) and the files match."""
    from scopeflow.io.tables import typed_table, write_arrow

    spec = {"s": ("str", ["a", "b"]), "o": ("object", [None, None]), "i": ("int64", [1, 2]),
            "I": ("Int64", [None, 3]), "f": ("float64", [None, 0.5]), "b": ("bool", [True, False]),
            "B": ("boolean", [None, True])}
    df = pd.DataFrame({k: pd.Series(v, dtype=t) for k, (t, v) in spec.items()})
    write_arrow(typed_table(spec), tmp_path / "a.parquet")
    write_table(df, tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "a.parquet"), df)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    write_arrow(typed_table({k: (t, []) for k, (t, _) in spec.items()}), tmp_path / "e.parquet")
    assert read_table(tmp_path / "e.parquet").dtypes.astype(str).to_dict() == {k: t for k, (t, _) in spec.items()}
    with pytest.raises(ValueError, match="'x': dtype 'uint8'"):
        typed_table({"x": ("uint8", [1])})


# ------------------------------------------------------------------ fast path == skimage/scipy


def _tricky_labels(seed=0):
    """Touching, overlapping, holed, concave, border, 1-px, line and split cells, sparse ids."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((160, 220), np.uint32)
    for k in range(1, 40):
        r = rng.uniform(2, 12)
        lab[disk((rng.uniform(-5, 165), rng.uniform(-5, 225)), r, shape=lab.shape)] = 3 * k
    lab[20:40, 100:130] = 500
    lab[28:32, 110:115] = 0  # a hole
    lab[60:90, 150:155] = 501
    lab[85:90, 150:175] = 501  # an L: deep concavity
    lab[5, 5] = 502  # one pixel
    lab[100, 10:30] = 503  # a 1-px line
    lab[120:125, 200:205] = 504
    lab[140:150, 180:185] = 504  # one id, two pieces
    lab[0:6, 60:70] = 505  # on the top border
    return lab


def _assert_tables_match(fast, ref):
    assert list(fast.columns) == list(ref.columns) and (fast.dtypes == ref.dtypes).all()
    for col in fast.columns:
        a, b = fast[col].to_numpy(), ref[col].to_numpy()
        if fast[col].dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=col)
        else:
            assert np.array_equal(a, b), col


def test_fast_measure_cells_equals_regionprops_reference():
    lab = _tricky_labels()
    rng = np.random.default_rng(1)
    dpc = np.clip(rng.normal(0.5, 0.2, lab.shape), 0, 1).astype(np.float32)
    phase = rng.normal(0, 1, lab.shape).astype(np.float32)
    for ph in (phase, None):
        fast = measure.measure_cells(lab, dpc, ph, 0.333, sample="s", fov="f")
        ref = measure._measure_cells_reference(lab, dpc, ph, 0.333, sample="s", fov="f")
        assert len(fast) == len(np.unique(lab)) - 1
        _assert_tables_match(fast, ref)
    # int32 / int64 labels and a float64 DPC give the same table
    for dtype in (np.int32, np.int64):
        _assert_tables_match(measure.measure_cells(lab.astype(dtype), dpc.astype(np.float64), None, 1.0),
                             measure._measure_cells_reference(lab, dpc, None, 1.0))


def test_fast_measure_cells_equals_reference_on_real_cells():
    """4-connected instances of the reference mask of a real 1024 px Octopi DPC FOV."""
    import os
    from pathlib import Path

    import imageio.v3 as iio
    from scipy import ndimage as ndi

    repo = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", repo.parent / "shared" / "data"))
    d = data / "octopi_rbc_dpc_m2unet"
    if not d.is_dir():
        import pytest

        pytest.skip(f"shared Octopi data not found under {data}")
    mask = np.asarray(iio.imread(d / "masks/dpc_1024_00_mask.png"))
    mask = (mask if mask.ndim == 2 else mask[..., 0]) > 0
    lab, n = ndi.label(mask)
    img = np.asarray(iio.imread(d / "images/dpc_1024_00.png")).astype(np.float32)
    img = img if img.ndim == 2 else img[..., 0]
    dpc = img / max(float(img.max()), 1.0)
    assert n > 100
    fast = measure.measure_cells(lab.astype(np.uint32), dpc, dpc - 0.5, 0.333, sample="s", fov="f")
    ref = measure._measure_cells_reference(lab.astype(np.uint32), dpc, dpc - 0.5, 0.333,
                                           sample="s", fov="f")
    _assert_tables_match(fast, ref)
    assert (fast["n_neighbours"] > 0).any() and (fast["concavity_depth_um"] > 0).any()
