"""Reading plain Zarr v3 arrays without zarr (scopeflow.io.zarr_plain) and the store readers
that use it (ome_zarr.read_channel, read_labels)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from scopeflow.io import ome_zarr
from scopeflow.io.ngff_image import image_channel
from scopeflow.io import zarr_plain
from scopeflow.io.zarr_plain import plain_array, read_region


def _array(tmp_path, name, data, chunks, **kw):
    arr = zarr.create_array(str(tmp_path / name), shape=data.shape, chunks=chunks, dtype=data.dtype, **kw)
    arr[...] = data
    return arr


@pytest.mark.parametrize("dtype", ["float32", "uint32", "uint8", "float64"])
def test_region_equals_zarr_read(tmp_path, dtype):
    rng = np.random.default_rng(0)
    data = (rng.random((2, 70, 53)) * 200).astype(dtype)
    data[:, :32, :16] = 0  # a chunk equal to the fill value: never written
    arr = _array(tmp_path, "a", data, (1, 32, 16), fill_value=0)
    assert not (tmp_path / "a" / "c" / "0" / "0" / "0").exists()
    for index in [(0, slice(None), slice(None)), (1, slice(3, 40), slice(10, 53)), (slice(None), 5, slice(0, 100)),
                  (slice(0, 2), slice(60, 90), slice(50, 53)), (1, slice(10, 10), slice(None)), (0, 69, 52)]:
        got = read_region(tmp_path / "a", index)
        want = arr[index]
        assert got.dtype == want.dtype and got.shape == np.shape(want)
        np.testing.assert_array_equal(got, want)


def test_fill_value_of_unwritten_chunks(tmp_path):
    arr = zarr.create_array(str(tmp_path / "f"), shape=(10, 10), chunks=(4, 4), dtype="float32", fill_value=np.nan)
    arr[:4, :4] = 1.0
    got = read_region(tmp_path / "f", (slice(None), slice(None)))
    np.testing.assert_array_equal(got, arr[...])
    assert np.isnan(got[5:, 5:]).all() and (got[:4, :4] == 1).all()


def test_not_plain_is_left_to_zarr(tmp_path):
    data = np.arange(64, dtype="uint16").reshape(8, 8)
    _array(tmp_path, "gz", data, (4, 4), compressors=zarr.codecs.GzipCodec())
    _array(tmp_path, "sharded", data, (2, 2), shards=(4, 4))
    _array(tmp_path, "big", data, (4, 4), serializer=zarr.codecs.BytesCodec(endian="big"))
    _array(tmp_path, "dots", data, (4, 4), chunk_key_encoding={"name": "default", "separator": "."})
    assert (tmp_path / "dots" / "c.0.0").exists()
    for name in ("gz", "sharded", "big", "dots", "missing"):
        assert plain_array(tmp_path / name) is None
        assert read_region(tmp_path / name, (slice(None), slice(None))) is None
    _array(tmp_path, "raw", data, (4, 4), compressors=None)
    assert plain_array(tmp_path / "raw")["zstd"] is False
    np.testing.assert_array_equal(read_region(tmp_path / "raw", (slice(1, 7), slice(None))), data[1:7])
    # what numpy reads otherwise (steps, negative integers, wrong rank): zarr's business
    for index in [(slice(None, None, 2), slice(None)), (-1, slice(None)), (slice(None),)]:
        assert read_region(tmp_path / "raw", index) is None


def test_store_readers_match_zarr(tmp_path):
    """read_channel / read_labels of a scopeflow store (plain arrays, no zarr) give zarr's
    values, windows included; a store of another writer still reads through zarr."""
    rng = np.random.default_rng(1)
    store = tmp_path / "s.ome.zarr"
    ome_zarr.create_sample_store(store, ["a"], {})
    dpc = rng.random((600, 560), dtype=np.float32)
    labels = np.zeros((600, 560), np.uint32)
    labels[100:140, 30:90] = 7
    ome_zarr.write_image(store, "a", {"dpc": dpc, "phase": -dpc}, 0.5, chunk=128)
    ome_zarr.write_labels(store, "a", labels, chunk=128)
    group = ome_zarr._image_group(store, "a")
    # the store's arrays are plain: read without zarr
    assert ome_zarr._plain_channel(store, "a", "dpc", 0, None) is not None
    assert plain_array(store / ome_zarr.fov_path(store, "a") / "labels" / "cells" / "0") is not None
    for window in (None, (slice(0, 40), slice(0, 40)), (slice(250, 300), slice(100, 281)), (slice(7, 9), slice(500, 600))):
        for channel in ("dpc", "phase"):
            for level in (0, 1):
                got = ome_zarr.read_channel(store, "a", channel, level, window=window)
                assert isinstance(got, np.ndarray)
                np.testing.assert_array_equal(got, np.asarray(image_channel(group, channel, level, window=window)))
        lab = group["labels"]["cells"]["0"]
        np.testing.assert_array_equal(ome_zarr.read_labels(store, "a", window=window),
                                      lab[0] if window is None else lab[(0, *window)])
    np.testing.assert_array_equal(ome_zarr.read_channel(store, "a", "dpc"), dpc)
    # the FOV's attributes from its zarr.json, as zarr reads them
    assert ome_zarr.fov_attrs(store, "a") == dict(group.attrs["scopeflow"]) and ome_zarr.fov_attrs(store, "a")["pixel_size_um"] == 0.5
    with pytest.raises(KeyError, match="no FOV"):
        ome_zarr.fov_attrs(store, "b")
    with pytest.raises(KeyError, match="no channel"):
        ome_zarr.read_channel(store, "a", "fluorescence")
    with pytest.raises(KeyError, match="no FOV"):
        ome_zarr.read_labels(store, "b")


def test_a_scopeflow_store_is_read_without_zarr(tmp_path):
    """A measure job reads each FOV's attributes, channels and labels without importing zarr
    (its import is a third of a second of every job)."""
    store = tmp_path / "s.ome.zarr"
    ome_zarr.create_sample_store(store, ["a"], {})
    ome_zarr.write_image(store, "a", {"dpc": np.ones((64, 64), np.float32)}, 0.5, chunk=32)
    ome_zarr.write_labels(store, "a", np.ones((64, 64), np.uint32), chunk=32)
    code = ("import sys\nfrom scopeflow.io import ome_zarr\n"
            f"s = {str(store)!r}\n"
            "a = ome_zarr.fov_attrs(s, 'a'); d = ome_zarr.read_channel(s, 'a', 'dpc'); l = ome_zarr.read_labels(s, 'a')\n"
            "print(a['pixel_size_um'], float(d.sum()), int(l.sum()), 'zarr' in sys.modules)\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": src})
    assert out.stdout.split() == ["0.5", "4096.0", "4096", "False"], out.stdout


def test_both_zstd_decoders_give_the_chunk(tmp_path):
    data = np.random.default_rng(2).random((40, 40), dtype=np.float32)
    _array(tmp_path, "z", data, (16, 16))
    raw = (tmp_path / "z" / "c" / "1" / "2").read_bytes()
    want = np.asarray(zarr.open_array(str(tmp_path / "z"))[16:32, 32:48])
    for with_pyarrow in (True, False):
        chunk = np.frombuffer(zarr_plain._zstd(16 * 16 * 4, with_pyarrow)(raw), np.float32).reshape(16, 16)
        np.testing.assert_array_equal(chunk[:, :8], want)
