import numpy as np
import pandas as pd
from skimage.draw import disk

from scopeflow import measure
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
