"""Chunked segmentation: labels (ids included) must not depend on the chunk size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from scopeflow.segment.base import Predictor
from scopeflow.segment.chunked import (
    chunk_cores,
    halo_px,
    segment_chunk,
    segment_image,
    segment_to_zarr,
)

CROSS = ndi.generate_binary_structure(2, 1)


class BlobPredictor:
    """Protocol-conforming fake: map = smoothed image, instances = 4-connected blobs of
    ``map > 0.5``, seed = the blob eroded once (or the blob when erosion empties it)."""

    name = "fake"
    context = 8
    object_size = 32

    def __init__(self):
        self.prepared = []
        self.tiles = []

    def prepare(self, image):
        self.prepared.append(image.shape)

    def predict(self, tile):
        self.tiles.append(tile.shape)
        return ndi.uniform_filter(tile.astype(np.float32), 3, mode="reflect")[None]

    def decode(self, maps):
        labels, n = ndi.label(maps[0] > 0.5, structure=CROSS)
        eroded = ndi.binary_erosion(labels > 0, structure=CROSS)
        seeds = np.where(eroded, labels, 0)
        # blobs too thin to survive erosion keep themselves as seed
        lost = np.setdiff1d(np.arange(1, n + 1), np.unique(seeds))
        keep = np.isin(labels, lost)
        seeds[keep] = labels[keep]
        return labels.astype(np.int32), seeds.astype(np.int32)


def blobs(shape, n, seed=0, rmax=9):
    """Random non-touching discs of radius 3..rmax (extent < 32 px), values 1 on 0."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n):
        r = rng.uniform(3, rmax)
        cy, cx = rng.uniform(-r, shape[0] + r), rng.uniform(-r, shape[1] + r)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if disc.any() and not ndi.binary_dilation(img > 0, iterations=3)[disc].any():
            img[disc] = 1.0
    return img


def test_fake_satisfies_protocol():
    assert isinstance(BlobPredictor(), Predictor)


def test_halo_rounds_up_to_16():
    assert halo_px(BlobPredictor()) == 48  # object_size + context (no decode_context): 40 -> 48

    class P(BlobPredictor):
        context, object_size = 0, 16

    class Q(BlobPredictor):
        context, object_size, decode_context = 100, 20, 5

    assert halo_px(P()) == 16
    assert halo_px(Q()) == 32  # decode_context replaces context: 25 -> 32


def test_chunk_cores_cover_image_once():
    cores = chunk_cores((100, 70), 32)
    cover = np.zeros((100, 70), int)
    for cy, cx in cores:
        cover[cy, cx] += 1
    assert (cover == 1).all()
    assert len(cores) == 4 * 3
    assert chunk_cores((5, 7), None) == [(slice(0, 5), slice(0, 7))]


@pytest.mark.parametrize("chunk", [15, 100, 0, -16, 2.5, True])
def test_chunk_must_be_multiple_of_16(chunk):
    with pytest.raises(ValueError, match="multiple of 16"):
        segment_image(np.zeros((32, 32)), BlobPredictor(), chunk)


def test_labels_identical_for_any_chunk_size():
    img = blobs((150, 203), 60, seed=1)  # odd sizes, not multiples of 16
    ref = segment_image(img, BlobPredictor(), None)
    truth, _ = BlobPredictor().decode(BlobPredictor().predict(img))
    n = int(truth.max())
    assert ref.dtype == np.uint32
    assert ref.max() == n > 20
    assert np.array_equal(np.unique(ref), np.arange(n + 1))  # sequential 1..N
    assert np.array_equal(ref > 0, truth > 0)
    for chunk in (16, 32, 48, 64, 128, 1024):
        out = segment_image(img, BlobPredictor(), chunk)
        assert np.array_equal(out, ref), chunk


def test_ids_follow_raster_order_of_seeds():
    img = blobs((96, 96), 30, seed=2)
    out = segment_image(img, BlobPredictor(), 32)
    _, seeds = BlobPredictor().decode(BlobPredictor().predict(img))
    firsts = []
    for i in range(1, int(out.max()) + 1):
        ys, xs = np.nonzero((out == i) & (seeds > 0))
        firsts.append(ys.min() * 96 + xs[ys == ys.min()].min())
    assert firsts == sorted(firsts)


def test_prepare_and_predict_called_once_with_whole_image():
    img = blobs((100, 120), 20, seed=3)
    p = BlobPredictor()
    segment_image(img, p, 32, num_workers=2)
    assert p.prepared == [(100, 120)]
    assert p.tiles == [(100, 120)]  # maps once; chunks only decode


def test_tile_origins_on_16_grid():
    img = blobs((200, 200), 10, seed=4)
    halo = halo_px(BlobPredictor())
    for cy, cx in chunk_cores(img.shape, 64):
        assert max(0, cy.start - halo) % 16 == 0 and max(0, cx.start - halo) % 16 == 0


def test_image_smaller_than_chunk_and_inputs():
    img = blobs((40, 27), 5, seed=5)
    a = segment_image(img, BlobPredictor(), 1024)
    assert a.shape == (40, 27)
    assert np.array_equal(a, segment_image(img, BlobPredictor(), None))
    da = pytest.importorskip("dask.array")
    assert np.array_equal(segment_image(da.from_array(img, chunks=16), BlobPredictor(), 16), a)
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(
        store=zarr.storage.MemoryStore(), shape=img.shape, chunks=(16, 16), dtype="float32"
    )
    z[:] = img
    assert np.array_equal(segment_image(z, BlobPredictor(), 16), a)


def test_empty_and_constant_images():
    from scopeflow.segment.classical import ClassicalPredictor

    for value in (0.0, 0.5, 1.0):
        img = np.full((70, 90), value, np.float32)
        out = segment_image(img, ClassicalPredictor(), 32)
        assert out.dtype == np.uint32 and out.shape == img.shape and out.max() == 0
    out = segment_image(np.zeros((50, 50), np.float32), BlobPredictor(), 16)
    assert out.max() == 0


def test_progress_bar(capsys):
    img = blobs((64, 64), 5, seed=7)
    out = segment_image(img, BlobPredictor(), 32, progress=True)
    assert np.array_equal(out, segment_image(img, BlobPredictor(), None))
    assert "100%" in capsys.readouterr().out


def test_non_2d_raises():
    with pytest.raises(ValueError, match="2-D"):
        segment_image(np.zeros((2, 16, 16)), BlobPredictor(), 16)


def test_instances_without_seed_are_dropped():
    class NoSeed(BlobPredictor):
        def decode(self, maps):
            labels, seeds = super().decode(maps)
            seeds[labels == 1] = 0  # instance 1 breaks the contract
            return labels, seeds

    img = blobs((64, 64), 8, seed=6)
    maps = BlobPredictor().predict(img)
    good = segment_chunk(maps, BlobPredictor(), (slice(0, 64), slice(0, 64)), 0)
    bad = segment_chunk(maps, NoSeed(), (slice(0, 64), slice(0, 64)), 0)
    first, _ = BlobPredictor().decode(BlobPredictor().predict(img))
    assert (bad[first == 1] == 0).all()
    assert np.array_equal(bad[first > 1], good[first > 1])


def test_segment_to_zarr_equals_segment_image(tmp_path):
    zarr = pytest.importorskip("zarr")
    img = blobs((150, 203), 60, seed=1)
    ref = segment_image(img, BlobPredictor(), 32)
    arr = segment_to_zarr(img, BlobPredictor(), str(tmp_path / "a.zarr"), 32)
    assert arr.dtype == np.uint32 and tuple(arr.chunks) == (32, 32)
    assert np.array_equal(arr[:], ref)
    rec = arr.attrs["scopeflow_segmentation"]
    assert rec["state"] == "complete" and rec["n_labels"] == int(ref.max())
    assert rec["halo"] == 48 and rec["predictor"] == "fake"
    # a given array whose chunks do not line up with the cores (serialized writes)
    z = zarr.create_array(
        store=str(tmp_path / "b.zarr"), shape=img.shape, chunks=(20, 30), dtype="uint32"
    )
    segment_to_zarr(img, BlobPredictor(), z, 48)
    assert np.array_equal(z[:], ref)
    whole = segment_to_zarr(img, BlobPredictor(), str(tmp_path / "c.zarr"), None)
    assert np.array_equal(whole[:], ref)
    sharded = zarr.create_array(
        store=str(tmp_path / "s.zarr"),
        shape=img.shape,
        chunks=(16, 16),
        shards=(64, 64),
        dtype="uint32",
    )
    segment_to_zarr(img, BlobPredictor(), sharded, 32)  # shards shared by cores: locked
    assert np.array_equal(sharded[:], ref)
    bad = zarr.create_array(store=str(tmp_path / "d.zarr"), shape=(10, 10), dtype="uint32")
    with pytest.raises(ValueError, match="shape"):
        segment_to_zarr(img, BlobPredictor(), bad, 32)


def test_segment_to_zarr_in_memory_writes_the_same_labels_once(tmp_path):
    zarr = pytest.importorskip("zarr")
    img = blobs((150, 203), 60, seed=1)
    ref = segment_image(img, BlobPredictor(), 32)
    z = zarr.create_array(store=str(tmp_path / "m.zarr"), shape=img.shape, chunks=(32, 32), dtype="uint32")
    writes = []
    real = type(z).__setitem__
    try:  # count the label writes: one, of the final labels
        type(z).__setitem__ = lambda self, key, value: (writes.append(np.array(value)), real(self, key, value))[1]
        segment_to_zarr(img, BlobPredictor(), z, 32, resume_key="k", in_memory=True)
    finally:
        type(z).__setitem__ = real
    assert len(writes) == 1 and np.array_equal(writes[0], ref)
    assert np.array_equal(z[:], ref)
    rec = z.attrs["scopeflow_segmentation"]
    assert rec["state"] == "complete" and rec["n_labels"] == int(ref.max()) and rec["resume_key"] == "k"

    class Counting(BlobPredictor):
        calls = 0

        def predict(self, tile):
            Counting.calls += 1
            return super().predict(tile)

    segment_to_zarr(img, Counting(), z, 32, resume_key="k", in_memory=True)  # complete: kept
    assert Counting.calls == 0
    # an unfinished streamed run is started over in memory, with the same labels
    z.attrs["scopeflow_segmentation"] = dict(rec, state="relabelling", sorted_names=[1, 2])
    segment_to_zarr(img, Counting(), z, 32, resume_key="k", in_memory=True)
    assert Counting.calls == 1 and np.array_equal(z[:], ref)


def _octopi(shared, name):
    import imageio.v3 as iio

    path = shared / "octopi_rbc_dpc_m2unet" / "images" / f"{name}.png"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return iio.imread(path).astype(np.float32) / 255.0


def test_classical_chunk_invariance_on_real_crop(shared):
    """Fast variant: a 640×1024 crop of dpc_2048_00, chunks 256/512/whole."""
    from scopeflow.segment.classical import ClassicalPredictor

    img = _octopi(shared, "dpc_2048_00")[:640, :1024]
    whole = segment_image(img, ClassicalPredictor(), None)
    assert whole.max() > 500
    for chunk in (256, 512):
        assert np.array_equal(segment_image(img, ClassicalPredictor(), chunk), whole), chunk


@pytest.mark.slow
def test_classical_chunk_invariance_dpc_2048(shared):
    """KEY test: the full 2048² Octopi image gives the same labels for 512, 1024, whole."""
    from scopeflow.segment.classical import ClassicalPredictor

    img = _octopi(shared, "dpc_2048_00")
    whole = segment_image(img, ClassicalPredictor(), None)
    assert whole.max() > 3000
    for chunk in (512, 1024):
        assert np.array_equal(segment_image(img, ClassicalPredictor(), chunk), whole), chunk


def test_distinct_names_equal_unique():
    from scopeflow.segment.chunked import _distinct_names

    rng = np.random.default_rng(5)
    for shape in [(0, 4), (1, 1), (9, 7), (120, 80)]:
        block = (rng.integers(0, 9, size=shape) * rng.integers(0, 2, size=shape)).astype(np.uint64)
        assert np.array_equal(_distinct_names(block), np.unique(block[block > 0]))
