"""A segmentation killed mid-image resumes from the chunks already in its Zarr store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import zarr

from scopeflow.segment.chunked import ZARR_ATTR, chunk_cores, segment_image, segment_to_zarr
from scopeflow.segment.classical import ClassicalPredictor

CHUNK = 256
KEY = "classical-test"


class CountingPredictor(ClassicalPredictor):
    calls = 0

    def decode(self, maps):
        type(self).calls += 1
        return super().decode(maps)


def _image(tmp_path):
    from scopeflow.smear.dpc import dpc_octopi
    from scopeflow.simulate import simulate_fov

    r = simulate_fov(shape=(1024, 1024), seed=7)
    img = dpc_octopi(r["left"], r["right"], r["ff_left"], r["ff_right"])
    np.save(tmp_path / "img.npy", img)
    return img


def test_sigkill_then_resume_gives_identical_labels_without_recomputing(tmp_path):
    img = _image(tmp_path)
    store = tmp_path / "labels.zarr"
    zarr.open_array(str(store), mode="w", shape=(1, *img.shape), chunks=(1, CHUNK, CHUNK), dtype="uint32")
    script = textwrap.dedent(
        f"""
        import time, numpy as np, zarr, dask
        from scopeflow.segment.chunked import segment_to_zarr
        from scopeflow.segment.classical import ClassicalPredictor

        class Slow(ClassicalPredictor):
            def decode(self, maps):
                time.sleep(0.3)
                return super().decode(maps)

        img = np.load({str(tmp_path / "img.npy")!r})
        arr = zarr.open_array({str(store)!r}, mode="r+")
        with dask.config.set(scheduler="threads", num_workers=1):
            segment_to_zarr(img, Slow(pixel_size_um=0.333), arr, chunk={CHUNK}, resume_key={KEY!r})
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    n_cores = len(chunk_cores(img.shape, CHUNK))
    deadline = time.time() + 240
    done = []
    while time.time() < deadline and proc.poll() is None:
        rec = zarr.open_array(str(store), mode="r").attrs.get(ZARR_ATTR, {})
        done = rec.get("done_cores", [])
        if len(done) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rec = zarr.open_array(str(store), mode="r").attrs[ZARR_ATTR]
    assert rec["state"] == "seed_names"
    done = rec["done_cores"]
    assert 5 <= len(done) < n_cores

    CountingPredictor.calls = 0
    arr = zarr.open_array(str(store), mode="r+")
    segment_to_zarr(img, CountingPredictor(pixel_size_um=0.333), arr, chunk=CHUNK, resume_key=KEY)
    assert CountingPredictor.calls == n_cores - len(done)  # finished chunks were not recomputed
    expected = segment_image(img, ClassicalPredictor(pixel_size_um=0.333), chunk=None)
    np.testing.assert_array_equal(np.asarray(arr[0]), expected)
    assert arr.attrs[ZARR_ATTR]["state"] == "complete"


def test_other_key_or_chunk_starts_over(tmp_path):
    img = _image(tmp_path)[:512, :512]
    arr = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=img.shape, chunks=(CHUNK, CHUNK), dtype="uint32")
    segment_to_zarr(img, ClassicalPredictor(pixel_size_um=0.333), arr, chunk=CHUNK, resume_key="a")
    CountingPredictor.calls = 0
    segment_to_zarr(img, CountingPredictor(pixel_size_um=0.333), arr, chunk=CHUNK, resume_key="a")
    assert CountingPredictor.calls == 0  # complete with the same key: nothing to do
    segment_to_zarr(img, CountingPredictor(pixel_size_um=0.333), arr, chunk=CHUNK, resume_key="b")
    assert CountingPredictor.calls == len(chunk_cores(img.shape, CHUNK))
    np.testing.assert_array_equal(np.asarray(arr), segment_image(img, ClassicalPredictor(pixel_size_um=0.333), chunk=None))
