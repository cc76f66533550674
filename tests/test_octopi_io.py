"""Octopi acquisition folders: round trip, metadata, and the errors a user can hit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scopeflow.io.octopi import load_channel, load_pair, read_acquisition
from scopeflow.io.octopi_meta import (
    LEFT,
    PARAMS_FILE,
    RIGHT,
    AcquisitionError,
    na_from_params,
    pixel_size_from_params,
)
from scopeflow.io.octopi_write import write_acquisition


def _frames(ny=2, nx=2, shape=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    return {
        (i, j, 0): {
            LEFT: rng.integers(0, 256, shape, dtype=np.uint8),
            RIGHT: rng.integers(0, 256, shape, dtype=np.uint8),
        }
        for i in range(ny)
        for j in range(nx)
    }


@pytest.fixture
def acq_dir(tmp_path):
    frames = _frames()
    path = write_acquisition(tmp_path / "acq", frames, pixel_size_um=0.333, na=0.4)
    return path, frames


def test_round_trip(acq_dir):
    path, frames = acq_dir
    for name in (
        PARAMS_FILE,
        "configurations.xml",
        "0/coordinates.csv",
        "0/done",
        "0/1_0_0_BF_LED_matrix_right_half.bmp",
    ):
        assert (path / name).exists(), name
    acq = read_acquisition(path)
    assert acq.pixel_size_um == pytest.approx(0.333, rel=1e-9)
    assert acq.na == pytest.approx(0.4)
    assert acq.wavelength_um == pytest.approx(0.525)
    assert acq.channels == [LEFT, RIGHT]
    assert [f.name for f in acq.fovs] == ["0-0_0_0", "0-0_1_0", "0-1_0_0", "0-1_1_0"]
    fov = acq.fov("0-1_1_0")
    assert (fov.t, fov.i, fov.j, fov.k) == (0, 1, 1, 0)
    assert fov.x_mm == pytest.approx(64 * 0.333 / 1000, abs=1e-6)
    assert fov.y_mm == pytest.approx(48 * 0.333 / 1000, abs=1e-6)
    assert fov.z_um == pytest.approx(0.0)
    left, right = load_pair(fov)
    assert left.dtype == np.float32 and left.shape == (48, 64)
    np.testing.assert_array_equal(np.rint(left * 255).astype(np.uint8), frames[(1, 1, 0)][LEFT])
    np.testing.assert_array_equal(np.rint(right * 255).astype(np.uint8), frames[(1, 1, 0)][RIGHT])
    params = json.loads((path / PARAMS_FILE).read_text())
    for key in (
        "dx(mm)",
        "Nx",
        "dy(mm)",
        "Ny",
        "dz(um)",
        "Nz",
        "dt(s)",
        "Nt",
        "with AF",
        "with reflection AF",
        "objective",
        "sensor_pixel_size_um",
        "tube_lens_mm",
    ):
        assert key in params
    assert set(params["objective"]) == {"name", "magnification", "NA", "tube_lens_f_mm"}
    assert (params["Nx"], params["Ny"], params["Nz"]) == (2, 2, 1)
    xml = (path / "configurations.xml").read_text()
    assert 'Name="BF LED matrix left half"' in xml and "ExposureTime" in xml


def test_pixel_size_formula():
    params = {
        "objective": {"name": "20x", "magnification": 20, "NA": 0.8, "tube_lens_f_mm": 180},
        "tube_lens_mm": 50,
        "sensor_pixel_size_um": 1.85,
    }
    assert pixel_size_from_params(params) == pytest.approx(0.333, abs=1e-9)
    # defaults: tube lens 50 mm, f_tube 180 mm, sensor 1.85 µm
    assert pixel_size_from_params({"objective": {"magnification": 20}}) == pytest.approx(0.333)
    assert pixel_size_from_params({"objective": {"name": "10x"}}) == pytest.approx(0.666)
    assert pixel_size_from_params({"objective": "40x"}) == pytest.approx(0.1665)
    assert pixel_size_from_params({"dx(mm)": 0.9}) is None
    assert na_from_params({"objective": {"name": "20x"}}) == pytest.approx(0.8)
    assert na_from_params({"objective": {"name": "60x", "NA": 1.3}}) == pytest.approx(1.3)
    assert na_from_params({}) is None


def test_pixel_size_argument_overrides_and_missing_objective(acq_dir):
    path, _ = acq_dir
    assert read_acquisition(path, pixel_size_um=0.5).pixel_size_um == 0.5
    params = json.loads((path / PARAMS_FILE).read_text())
    del params["objective"]
    (path / PARAMS_FILE).write_text(json.dumps(params))
    acq = read_acquisition(path)
    assert acq.pixel_size_um is None and acq.na is None


def test_writer_matches_other_pixel_sizes(tmp_path):
    path = write_acquisition(tmp_path / "a", _frames(1, 1), pixel_size_um=0.1625)
    params = json.loads((path / PARAMS_FILE).read_text())
    assert params["objective"]["name"] == "40x"
    assert pixel_size_from_params(params) == pytest.approx(0.1625, rel=1e-12)


def test_missing_right_half(acq_dir):
    path, _ = acq_dir
    victim = path / "0" / "1_0_0_BF_LED_matrix_right_half.bmp"
    victim.unlink()
    with pytest.raises(AcquisitionError) as err:
        read_acquisition(path)
    msg = str(err.value)
    assert str(victim) in msg and "right-half" in msg and "1_0_0" in msg
    assert "\n" not in msg
    assert isinstance(err.value, ValueError)
    # accepted when no channel is required
    assert len(read_acquisition(path, required_channels=()).fovs) == 4


def test_truncated_bmp(acq_dir):
    path, _ = acq_dir
    acq = read_acquisition(path)
    victim = acq.fovs[0].files[RIGHT]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(AcquisitionError, match="truncated") as err:
        load_pair(acq.fovs[0])
    assert str(victim) in str(err.value)


def test_left_right_size_mismatch(tmp_path):
    frames = _frames(1, 1)
    frames[(0, 0, 0)][RIGHT] = np.zeros((48, 60), np.uint8)
    path = write_acquisition(tmp_path / "acq", frames)
    acq = read_acquisition(path)
    with pytest.raises(AcquisitionError) as err:
        load_pair(acq.fovs[0])
    msg = str(err.value)
    assert "0_0_0_BF_LED_matrix_left_half.bmp" in msg
    assert "0_0_0_BF_LED_matrix_right_half.bmp" in msg
    assert "48x64" in msg and "48x60" in msg


def test_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AcquisitionError) as err:
        read_acquisition(empty)
    assert str(empty) in str(err.value) and PARAMS_FILE in str(err.value)


def test_no_images(acq_dir):
    path, _ = acq_dir
    for p in (path / "0").glob("*.bmp"):
        p.unlink()
    with pytest.raises(AcquisitionError, match="no image files") as err:
        read_acquisition(path)
    assert str(path / "0") in str(err.value)


def test_no_timepoint_folder(tmp_path):
    d = tmp_path / "acq"
    d.mkdir()
    (d / PARAMS_FILE).write_text("{}")
    (d / "truth").mkdir()
    with pytest.raises(AcquisitionError, match="time-point"):
        read_acquisition(d)


def test_nonexistent_and_file_path(tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(AcquisitionError, match="does not exist") as err:
        read_acquisition(missing)
    assert str(missing) in str(err.value)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(AcquisitionError, match="not an Octopi acquisition folder"):
        read_acquisition(f)


def test_bad_json(acq_dir):
    path, _ = acq_dir
    (path / PARAMS_FILE).write_text("{not json")
    with pytest.raises(AcquisitionError, match="invalid JSON"):
        read_acquisition(path)


def test_formats_rgb_uint16_region_prefix_and_new_coordinates(tmp_path):
    import imageio.v3 as iio
    import tifffile

    d = tmp_path / "acq"
    (d / "0").mkdir(parents=True)
    (d / "truth").mkdir()  # ignored: not digits
    (d / PARAMS_FILE).write_text(json.dumps({"objective": {"name": "20x"}}))
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 1] = 200
    iio.imwrite(d / "0" / "A1_0_2_0_BF_LED_matrix_left_half.png", rgb)
    tifffile.imwrite(
        d / "0" / "A1_0_2_0_BF_LED_matrix_right_half.tiff", np.full((8, 10), 65535, np.uint16)
    )
    (d / "0" / "coordinates.csv").write_text(
        "region,i,j,z_level,x (mm),y (mm),z (um),time\nA1,0,2,0,1.5,2.5,10.0,0\n"
    )
    acq = read_acquisition(d)
    (fov,) = acq.fovs
    assert fov.region == "A1" and (fov.i, fov.j, fov.k) == (0, 2, 0)
    assert fov.name == "0-A1_0_2_0"
    assert (fov.x_mm, fov.y_mm, fov.z_um) == (1.5, 2.5, 10.0)
    left = load_channel(fov, LEFT)
    assert left.shape == (8, 10) and np.allclose(left, 200 / 255)
    assert np.allclose(load_channel(fov, RIGHT), 1.0)
    with pytest.raises(AcquisitionError, match="BF_LED_matrix_full"):
        load_channel(fov, "BF_LED_matrix_full")
