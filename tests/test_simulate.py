"""The smear simulator: determinism, sensible statistics, physics sanity, acquisition writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from scopeflow.io.octopi import LEFT, RIGHT, load_pair, read_acquisition
from scopeflow.simulate import (
    image_halves,
    rbc_phantom,
    rbc_thickness,
    simulate_acquisition,
    simulate_fov,
    source_points,
)

PS, LAM, NA = 0.333, 0.525, 0.4


@pytest.fixture(scope="module")
def fov():
    return simulate_fov(shape=(256, 256), seed=5)


def test_deterministic(fov):
    again = simulate_fov(shape=(256, 256), seed=5)
    for key in ("left", "right", "phase", "labels"):
        np.testing.assert_array_equal(fov[key], again[key])
    other = simulate_fov(shape=(256, 256), seed=6)
    assert not np.array_equal(fov["labels"], other["labels"])
    assert not np.array_equal(fov["left"], other["left"])


def test_outputs_and_stats(fov):
    left, right, phase, labels = fov["left"], fov["right"], fov["phase"], fov["labels"]
    assert left.dtype == right.dtype == np.uint8 and left.shape == (256, 256)
    assert phase.dtype == np.float32 and labels.dtype == np.uint32
    n = int(labels.max())
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))  # 0, 1..N consecutive
    # 256² px at 0.333 µm = 7270 µm²; an RBC ≈ 44 µm²; density 0.45 → roughly 60–110 cells
    assert 50 <= n <= 130
    assert 0.3 < (labels > 0).mean() < 0.6
    assert np.all(phase[labels == 0] == 0)
    assert 1.0 < np.percentile(phase[labels > 0], 99) < 4.0
    # background of the camera frames ≈ brightness 0.6 · 255 (vignetting ≤ 25 %)
    bg = labels == 0
    assert 120 < left[bg].mean() < 160 and 120 < right[bg].mean() < 160
    for ff in (fov["ff_left"], fov["ff_right"]):
        assert ff.mean() == pytest.approx(1.0, abs=1e-4)


def test_single_cell_phase_and_thickness():
    assert rbc_thickness(0.0) == pytest.approx(0.81)
    assert rbc_thickness(1.0) == 0.0
    rho = np.linspace(0, 1, 101)
    h = rbc_thickness(rho)
    assert 0.6 < rho[np.argmax(h)] < 0.85 and 2.4 < h.max() < 2.7  # biconcave: rim thicker
    peak_phase = 2 * np.pi / LAM * 0.06 * h.max()
    assert 1.0 < peak_phase < 2.0


def test_phantom_touching_and_overlap():
    rng = np.random.default_rng(0)
    _, _, labels, cells = rbc_phantom((512, 512), PS, rng, density=0.45)
    assert len(cells) == labels.max()
    y = np.array([c["y_px"] for c in cells])
    x = np.array([c["x_px"] for c in cells])
    r = np.array([c["diameter_um"] for c in cells]) / PS / 2
    d = np.hypot(y[:, None] - y, x[:, None] - x) / (r[:, None] + r)
    iu = np.triu_indices(len(cells), 1)
    assert np.sum(d[iu] < 0.97) >= 1  # a few overlap
    assert np.sum((d[iu] >= 0.97) & (d[iu] < 1.05)) >= 10  # many touch
    diam = np.array([c["diameter_um"] for c in cells])
    assert diam.min() >= 6.5 and diam.max() <= 8.5


def test_source_points():
    left, right, w = source_points(LAM, NA)
    assert len(left) == len(right) == len(w) == 31
    assert w.sum() == pytest.approx(1.0)
    assert np.all(left[:, 1] > 0) and np.all(right[:, 1] < 0)  # real Octopi orientation
    assert np.hypot(*right.T).max() <= NA / LAM


def test_empty_field_and_defocus():
    flat = np.zeros((64, 64), np.float32)
    left, right = image_halves(flat, PS, LAM, NA)
    np.testing.assert_allclose(left, 1.0, atol=1e-4)
    np.testing.assert_allclose(right, 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="Nyquist"):
        image_halves(flat, 0.5, LAM, 0.8)
    a = simulate_fov(shape=(128, 128), seed=1, full_well=np.inf)
    b = simulate_fov(shape=(128, 128), seed=1, full_well=np.inf, defocus_um=4.0)
    np.testing.assert_array_equal(a["phase"], b["phase"])
    # defocus lowers the DPC contrast of the cells
    da = np.abs(a["left"].astype(float) - a["right"]).mean()
    db = np.abs(b["left"].astype(float) - b["right"]).mean()
    assert db < da


def test_simulate_acquisition(tmp_path):
    out = simulate_acquisition(tmp_path / "sim", ny=1, nx=2, shape=(96, 128), seed=3)
    acq = read_acquisition(out)
    assert acq.pixel_size_um == pytest.approx(PS, rel=1e-9)
    assert acq.na == pytest.approx(NA)
    assert [f.name for f in acq.fovs] == ["0-0_0_0", "0-0_1_0"]
    left, _ = load_pair(acq.fovs[1])
    assert left.shape == (96, 128)
    labels = tifffile.imread(out / "truth" / "0_1_0_labels.tif")
    phase = tifffile.imread(out / "truth" / "0_1_0_phase.tif")
    assert labels.dtype == np.uint32 and phase.dtype == np.float32
    assert labels.shape == phase.shape == (96, 128)
    meta = json.loads((out / "truth" / "simulation.json").read_text())
    assert meta["fovs"]["0_1_0"]["n_cells"] == int(labels.max())
    # same seed → identical files; FOVs differ from each other
    again = simulate_acquisition(tmp_path / "sim2", ny=1, nx=2, shape=(96, 128), seed=3)
    a0, a1 = (again / "0" / f"0_{j}_0_{LEFT}.bmp" for j in (0, 1))
    assert a0.read_bytes() == (out / "0" / f"0_0_0_{LEFT}.bmp").read_bytes()
    assert a0.read_bytes() != a1.read_bytes()
    assert (out / "0" / f"0_0_0_{RIGHT}.bmp").exists()
