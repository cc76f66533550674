"""Learned defocus model: patches, shipped weights (sha256), ordering on simulated defocus."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scopeflow.models.weights import WeightsError
from scopeflow.qc.defocus import (
    DEFAULT_WEIGHTS,
    defocus_patch_predictions,
    defocus_score,
    image_patches,
    load_defocus_model,
    simulate_defocus_views,
)


def test_image_patches():
    rng = np.random.default_rng(0)
    img = rng.random((200, 300)).astype(np.float32)
    img[:64, :64] *= 5  # most textured patch
    p = image_patches(img, 64, max_patches=64, keep=0.5)
    assert p.shape == (6, 1, 64, 64)  # 3 x 4 grid, half kept
    np.testing.assert_allclose(p.reshape(6, -1).mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(p.reshape(6, -1).std(1), 1, atol=1e-4)
    big = image_patches(rng.random((2048, 2048)), 64, max_patches=16)
    assert big.shape[0] == 16
    small = image_patches(np.ones((20, 30)), 64)
    assert small.shape == (1, 1, 64, 64) and np.all(small == 0)


def test_weights_checked(tmp_path):
    net, meta = load_defocus_model()
    assert meta["kind"] == "defocus" and meta["patch"] == 64
    assert DEFAULT_WEIGHTS.stat().st_size < 1_000_000
    w = tmp_path / "d.pt"
    shutil.copy(DEFAULT_WEIGHTS, w)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".md"), tmp_path / "d.md")
    load_defocus_model(w)
    w.write_bytes(w.read_bytes()[:-1] + b"\1")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_defocus_model(w)
    (tmp_path / "d.md").unlink()
    with pytest.raises(WeightsError, match="no model card"):
        load_defocus_model(w)


def test_degenerate_images():
    assert np.isfinite(defocus_score(np.full((128, 128), 0.5)))
    assert np.isfinite(defocus_score(np.zeros((10, 12))))
    v = defocus_score(np.random.default_rng(0).random((300, 200)), pixel_size_um=0.2)
    assert np.isfinite(v) and v >= 0
    assert defocus_patch_predictions(np.ones((256, 256))).shape == (8,)  # 4 x 4 grid, half kept


@pytest.mark.parametrize("seed", [11, 12])
def test_orders_simulated_defocus(seed, torch_one_thread):
    """DPC smears never seen in training: 0 < 10 < 25 µm, in focus estimated below 5 µm."""
    s = [defocus_score(simulate_defocus_views(seed, dz, shape=(384, 384))["dpc"])
         for dz in (0.0, -10.0, 25.0)]
    assert s[0] < s[1] < s[2]
    assert s[0] < 5.0 and 5.0 < s[1] < 18.0 and s[2] > 15.0
