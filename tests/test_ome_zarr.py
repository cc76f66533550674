import numpy as np
import pytest
import zarr

from scopeflow.io import ome_zarr


def test_write_read_roundtrip(tmp_path):
    path = tmp_path / "s.ome.zarr"
    rng = np.random.default_rng(0)
    dpc = rng.random((600, 700), dtype=np.float32)
    phase = rng.random((600, 700), dtype=np.float32)
    ome_zarr.create_sample_store(path, ["0-0_0_0", "0-0_1_0"], {"scopeflow_version": "x"})
    ome_zarr.write_image(path, "0-0_0_0", {"dpc": dpc, "phase": phase}, 0.5, chunk=256, attrs={"i": 0})
    labels = (rng.random((600, 700)) > 0.5).astype(np.uint32) * 7
    ome_zarr.write_labels(path, "0-0_0_0", labels, attrs={"method": "test"})

    assert ome_zarr.fov_names(path) == ["0-0_0_0", "0-0_1_0"]
    np.testing.assert_array_equal(np.asarray(ome_zarr.read_channel(path, "0-0_0_0", "phase")), phase)
    np.testing.assert_array_equal(ome_zarr.read_labels(path, "0-0_0_0"), labels)
    assert ome_zarr.store_attrs(path)["scopeflow_version"] == "x"

    root = zarr.open_group(str(path), mode="r")
    fov = root[ome_zarr.fov_path(path, "0-0_0_0")]
    ms = fov.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "y", "x"]
    # pyramid: 600 -> 300 (>= 256): two levels, scale doubles, labels nearest-neighbour
    assert [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]] == [[1, 0.5, 0.5], [1, 1.0, 1.0]]
    lab1 = fov["labels"]["cells"]["1"][0]
    np.testing.assert_array_equal(lab1, labels[::2, ::2])
    assert set(np.unique(lab1)) <= {0, 7}
    assert fov["labels"].attrs["ome"]["labels"] == ["cells"]
    assert fov["0"].chunks == (1, 256, 256)


def test_missing_channel_names_what_exists(tmp_path):
    path = tmp_path / "s.ome.zarr"
    ome_zarr.create_sample_store(path, ["a"], {})
    ome_zarr.write_image(path, "a", {"dpc": np.zeros((32, 32), np.float32)}, 1.0)
    with pytest.raises(KeyError, match="no channel 'phase'"):
        ome_zarr.read_channel(path, "a", "phase")
    with pytest.raises(KeyError, match="no FOV 'b'"):
        ome_zarr.read_channel(path, "b", "dpc")


OLD_WRITER_REV = "34406b8"  # the hand-written writer before issue 19


def _old_writer(tmp_path):
    import importlib.util
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["git", "-C", str(repo), "show", f"{OLD_WRITER_REV}:src/scopeflow/io/ome_zarr.py"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"git revision {OLD_WRITER_REV} not in this checkout (a shallow clone)")
    (tmp_path / "ome_zarr_old.py").write_text(proc.stdout)
    spec = importlib.util.spec_from_file_location("ome_zarr_old", tmp_path / "ome_zarr_old.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_new_writer_keeps_pixels_labels_and_measurements_of_the_old_one(tmp_path):
    """Only the layout and metadata changed: every level's pixels, the labels and the cell
    table are those of the writer before issue 19 (stores read through the same functions)."""
    import pandas as pd

    from scopeflow import smear as pipeline

    old = _old_writer(tmp_path)
    rng = np.random.default_rng(3)
    dpc = rng.random((700, 900), dtype=np.float32)
    phase = rng.random((700, 900), dtype=np.float32)
    labels = np.zeros((700, 900), np.uint32)
    for k in range(40):
        y, x = rng.integers(20, 680), rng.integers(20, 880)
        labels[y - 8:y + 8, x - 10:x + 10] = k + 1
    stores = {}
    for name, mod in (("old", old), ("new", ome_zarr)):
        path = tmp_path / f"{name}.ome.zarr"
        mod.create_sample_store(path, ["0-0_0_0"], {"scopeflow_version": "x"})
        mod.write_image(path, "0-0_0_0", {"dpc": dpc, "phase": phase}, 0.333, chunk=256, attrs={"i": 0})
        mod.write_labels(path, "0-0_0_0", labels, attrs={"method": "test"})
        stores[name] = path
    o, n = stores["old"], stores["new"]
    assert ome_zarr.fov_names(o) == ome_zarr.fov_names(n) == ["0-0_0_0"]
    assert ome_zarr.fov_attrs(o, "0-0_0_0") == ome_zarr.fov_attrs(n, "0-0_0_0")
    assert ome_zarr.store_attrs(o) == ome_zarr.store_attrs(n)
    for level in (0, 1):
        for ch in ("dpc", "phase"):
            np.testing.assert_array_equal(np.asarray(ome_zarr.read_channel(o, "0-0_0_0", ch, level)),
                                          np.asarray(ome_zarr.read_channel(n, "0-0_0_0", ch, level)))
        np.testing.assert_array_equal(ome_zarr.read_labels(o, "0-0_0_0", level=level),
                                      ome_zarr.read_labels(n, "0-0_0_0", level=level))
    seg = tmp_path / "seg.json"
    seg.write_text('{"method": "test", "fovs": {"0-0_0_0": 40}}')
    tables = {}
    for name, path in stores.items():
        cells, fovs = pipeline.measure_store(path, seg, tmp_path / f"{name}_c.parquet",
                                             tmp_path / f"{name}_f.parquet", sample="s")
        tables[name] = cells
    pd.testing.assert_frame_equal(tables["old"], tables["new"])
    assert len(tables["new"]) == 40


def test_plate_and_well_json_are_the_ngff_models(tmp_path):
    """The store's plate is written as JSON without importing the models: the same dicts, valid."""
    from yaozarrs import v05, validate_zarr_store

    from scopeflow.io.ngff_write import NGFF_VERSION, ome_dict

    wells = [(0, 0), (0, 2), (1, 1)]
    got = ome_zarr.plate_attrs("s", 2, 3, wells, 2)
    want = ome_dict(v05.Plate(plate=v05.PlateDef(
        name="s", rows=[v05.Row(name="A"), v05.Row(name="B")],
        columns=[v05.Column(name=str(c)) for c in (1, 2, 3)],
        wells=[v05.PlateWell(path=f"{'AB'[r]}/{c + 1}", rowIndex=r, columnIndex=c) for r, c in wells],
        field_count=2)))
    want["plate"]["version"] = NGFF_VERSION
    assert got == want
    assert ome_zarr.well_attrs(["0", "1"]) == ome_dict(
        v05.Well(well=v05.WellDef(images=[v05.FieldOfView(path="0"), v05.FieldOfView(path="1")])))
    path = tmp_path / "p.ome.zarr"
    ome_zarr.create_sample_store(path, ["a", "b", "c"], {}, positions={"a": (0, 0), "b": (1, 2), "c": (0, 0)})
    assert ome_zarr.fov_paths(path) == {"a": "A/1/0", "b": "B/3/0", "c": "A/1/1"}
    root = zarr.open_group(str(path), mode="r")
    assert root["A/1"].attrs["ome"]["well"]["images"] == [{"path": "0"}, {"path": "1"}]
    for fov in "abc":
        ome_zarr.write_image(path, fov, {"dpc": np.zeros((32, 32), np.float32)}, 1.0)
    validate_zarr_store(str(path))
