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
