"""Readers of Squid's save modes (scopeflow.io.squid): layout detection, the FOV model, plane
references, bit depth, and one-line errors for incomplete, truncated or unknown inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scopeflow.io.octopi import LEFT, RIGHT, AcquisitionError
from scopeflow.io.squid import detect_save_mode, read_acquisition, read_source
from scopeflow.io.squid.meta import bit_depth_from_pixel_format, channel_suffix, true_max
from scopeflow.io.squid.planes import PlaneRef, parse_source
from scopeflow.simulate.squid import LAYOUTS, simulate_squid_frames, write_layout

MODES = {"octopi": "INDIVIDUAL_IMAGES", "individual": "INDIVIDUAL_IMAGES",
         "multipage": "MULTI_PAGE_TIFF", "ome_tiff": "OME_TIFF", "zarr": "ZARR_V3"}


@pytest.fixture(scope="module")
def sim():
    return simulate_squid_frames(regions=("A1", "C3"), n_fovs=2, nz=2, nt=2, shape=(48, 40), seed=2)


@pytest.fixture
def layouts(sim, tmp_path):
    return {lay: write_layout(tmp_path / lay, sim, lay) for lay in LAYOUTS}


def test_each_layout_is_detected_and_read_into_the_same_fovs(sim, layouts):
    for lay, path in layouts.items():
        assert detect_save_mode(path) == MODES[lay]
        acq = read_acquisition(path)
        assert acq.save_mode == MODES[lay] and acq.bit_depth == 12
        assert acq.channels == [LEFT, RIGHT]
        assert abs(acq.pixel_size_um - 0.333) < 1e-12 and acq.na == pytest.approx(0.4)
        assert len(acq.fovs) == 2 * 2 * 2 * 2
        for f in acq.fovs:
            frames = sim["frames"][(f.t, f.region, f.i, f.k)]
            assert f.j == 0
            assert (f.x_mm, f.y_mm) == sim["xy_mm"][(f.region, f.i)]
            assert f.z_um == pytest.approx(sim["z_um"][f.k])
            for ch in (LEFT, RIGHT):
                got = read_source(f.files[ch])
                assert got.dtype == np.uint16 and np.array_equal(got, frames[ch])
        assert acq.fovs[-1].name == "1-C3_1_0_1"


def test_plane_reference_round_trips_through_its_string(layouts):
    for lay in ("multipage", "ome_tiff", "zarr"):
        fov = read_acquisition(layouts[lay]).fovs[3]
        ref = fov.files[RIGHT]
        assert isinstance(ref, PlaneRef)
        assert parse_source(str(ref)) == ref
        assert np.array_equal(read_source(str(ref)), read_source(ref))


def test_regions_are_selected_and_a_missing_region_is_named(layouts):
    acq = read_acquisition(layouts["zarr"], regions=["C3"])
    assert {f.region for f in acq.fovs} == {"C3"} and len(acq.fovs) == 8
    with pytest.raises(AcquisitionError, match=r"region\(s\) B7 not in this acquisition.*'A1', 'C3'"):
        read_acquisition(layouts["individual"], regions=["A1", "B7"])


def test_pixel_size_from_the_container_when_the_json_has_no_objective(layouts):
    for lay in ("ome_tiff", "zarr"):
        p = layouts[lay] / "acquisition parameters.json"
        params = json.loads(p.read_text())
        del params["objective"]
        p.write_text(json.dumps(params))
        assert read_acquisition(layouts[lay]).pixel_size_um == pytest.approx(0.333)


def test_truncated_ome_tiff_names_the_file(layouts):
    f = layouts["ome_tiff"] / "ome_tiff" / "C3_0.ome.tiff"
    f.write_bytes(f.read_bytes()[: f.stat().st_size * 2 // 3])
    with pytest.raises(AcquisitionError) as err:
        read_acquisition(layouts["ome_tiff"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(f)) and "truncated" in msg


def test_ome_tiff_without_plane_table_is_incomplete(layouts, sim):
    import tifffile

    f = layouts["ome_tiff"] / "ome_tiff" / "A1_1.ome.tiff"
    with tifffile.TiffFile(f) as tif:
        xml = tif.ome_metadata
    start = xml.index("<Plane ")
    end = xml.rindex("/>", 0, xml.index("</Pixels>")) + 2
    tifffile.tiffcomment(f, (xml[:start] + xml[end:]).encode())
    with pytest.raises(AcquisitionError, match="stack incomplete") as err:
        read_acquisition(layouts["ome_tiff"])
    assert str(err.value).startswith(str(f))


@pytest.mark.parametrize("change, needle", [
    ({"acquisition_complete": False}, "Squid is still writing it"),
    ({"acquisition_complete": False, "aborted": True}, "aborted"),
    ({"acquisition_complete": None}, "acquisition_complete is not true"),
])
def test_zarr_store_must_be_complete(layouts, change, needle):
    meta = layouts["zarr"] / "plate.ome.zarr" / "C" / "3" / "1" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["_squid"].update(change)
    meta.write_text(json.dumps(doc))
    with pytest.raises(AcquisitionError, match=needle) as err:
        read_acquisition(layouts["zarr"])
    assert str(err.value).startswith(str(meta)) and "\n" not in str(err.value)


def test_zarr_per_fov_stores_for_named_regions(tmp_path):
    sim = simulate_squid_frames(regions=("manual0", "scan_area_1"), n_fovs=2, nz=1, nt=1,
                                shape=(32, 32), seed=4)
    path = write_layout(tmp_path / "z", sim, "zarr")
    assert (path / "zarr" / "scan_area_1" / "fov_1.ome.zarr" / "0" / "zarr.json").is_file()
    acq = read_acquisition(path)
    assert [f.name for f in acq.fovs] == ["0-manual0_0_0_0", "0-manual0_1_0_0",
                                         "0-scan_area_1_0_0_0", "0-scan_area_1_1_0_0"]
    ref = acq.fovs[3].files[LEFT]
    assert np.array_equal(read_source(ref), sim["frames"][(0, "scan_area_1", 1, 0)][LEFT])


def test_six_d_zarr_is_refused_with_the_mode_to_use(layouts, tmp_path):
    (layouts["zarr"] / "zarr" / "R0" / "acquisition.zarr").mkdir(parents=True)
    with pytest.raises(AcquisitionError, match="6-D Zarr layout.*'Use 6D FOV dimension' off") as err:
        read_acquisition(layouts["zarr"])
    assert str(err.value).startswith(str(layouts["zarr"] / "zarr" / "R0" / "acquisition.zarr"))
    meta = layouts["zarr"] / "plate.ome.zarr" / "A" / "1" / "0" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["_squid"]["structure"] = "6D-FTCZYX"
    meta.write_text(json.dumps(doc))
    (layouts["zarr"] / "zarr" / "R0" / "acquisition.zarr").rmdir()
    with pytest.raises(AcquisitionError, match="6-D"):
        read_acquisition(layouts["zarr"])


def test_unknown_save_mode_names_the_file(tmp_path):
    d = tmp_path / "acq"
    (d / "0").mkdir(parents=True)
    (d / "acquisition parameters.json").write_text("{}")
    (d / "0" / "coordinates.csv").write_text("region,fov\n")
    (d / "0" / "A1_0_0.czi").write_bytes(b"x")
    with pytest.raises(AcquisitionError, match="unknown Squid save mode") as err:
        detect_save_mode(d)
    assert str(err.value).startswith(str(d / "0" / "A1_0_0.czi"))
    (d / "0" / "A1_0_0.czi").unlink()
    with pytest.raises(AcquisitionError, match=f"^{d}: unknown Squid save mode"):
        read_acquisition(d)


def test_multipage_page_without_squid_description_is_named(layouts):
    import tifffile

    f = layouts["multipage"] / "1" / "A1_0_stack.tiff"
    tifffile.imwrite(f, np.zeros((2, 8, 8), np.uint16))
    with pytest.raises(AcquisitionError, match="page 0 has no Squid JSON description") as err:
        read_acquisition(layouts["multipage"])
    assert str(err.value).startswith(str(f))


def test_channel_names_and_pixel_formats():
    assert channel_suffix("BF LED matrix left half") == LEFT
    assert channel_suffix("Fluorescence 405 nm Ex") == "Fluorescence_405_nm_Ex"
    assert channel_suffix('a/b:c*d') == "a_b_c_d"
    assert [bit_depth_from_pixel_format(f) for f in ("MONO8", "MONO12", "Mono12p", "BAYER_RG12", "RGB", None)] \
        == [8, 12, 12, 12, None, None]


def test_true_maximum_of_12_bit_data_in_16_bit_files():
    u16, u8 = np.dtype(np.uint16), np.dtype(np.uint8)
    assert true_max(u16, 12, 4095, 4095) == 4095  # low bits
    assert true_max(u16, 12, 65520, 0xFFF0) == 65520  # shifted up (Squid's MONO12 << 4)
    assert true_max(u16, None, 3000, 0x0FFF) == 4095  # no metadata: fits 12 bits
    assert true_max(u16, None, 65520, 0xFFF0) == 65520  # no metadata: multiples of 16
    assert true_max(u16, None, 60001, 0xFFFF) == 65535
    assert true_max(u16, 16, 100, 127) == 65535
    assert true_max(u8, None, 200, 255) == 255


@pytest.mark.parametrize("msb", [False, True])
def test_saturation_counts_pixels_at_the_cameras_true_maximum(tmp_path, msb):
    """12-bit frames: a pixel at 4095 (or 65520 shifted up) is saturated, though far below 65535."""
    import tifffile

    from scopeflow import smear as pl
    from scopeflow.io import ome_zarr

    sim = simulate_squid_frames(regions=("A1",), n_fovs=1, nz=1, nt=1, shape=(64, 64), seed=3, msb=msb)
    path = write_layout(tmp_path / "acq", sim, "individual")
    f = path / "0" / f"A1_0_0_{LEFT}.tiff"
    img = tifffile.imread(f)
    top = 65520 if msb else 4095
    assert img.max() < top
    img[:8, :] = top  # 8 of 64 rows saturated
    tifffile.imwrite(f, img)
    rows = pl.ingest("smear_raw", path, tmp_path / "fovs.tsv", tmp_path / "ff.npz", flatfield=False)
    assert rows["max_value"].tolist() == [top] and rows["bit_depth"].tolist() == [12]
    pl.create_store(tmp_path / "fovs.tsv", tmp_path / "s.ome.zarr")
    pl.write_images(tmp_path / "fovs.tsv", tmp_path / "ff.npz", tmp_path / "s.ome.zarr", tmp_path / "d.json")
    attrs = ome_zarr.fov_attrs(tmp_path / "s.ome.zarr", "0-A1_0_0_0")
    assert attrs["saturated_fraction_raw"] == pytest.approx(8 / 64)
    assert attrs["region"] == "A1" and attrs["bit_depth"] == 12
