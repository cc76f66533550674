"""Flatfield estimation and intensity normalization."""

from __future__ import annotations

import numpy as np
import pytest

from scopeflow.smear.flatfield import (
    apply_flatfield,
    estimate_flatfield,
    image_stats,
    percentile_normalize,
    zscore,
)


def _vignette(shape=(256, 320)):
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    ff = 1.0 - 0.12 * ((yy - 0.1) ** 2 + (xx + 0.2) ** 2)
    return (ff / ff.mean()).astype(np.float32)


def test_estimate_flatfield_from_fovs_with_cells():
    rng = np.random.default_rng(0)
    truth = _vignette()
    images = []
    for _ in range(5):
        scene = np.ones(truth.shape, np.float32)
        ys, xs = rng.integers(0, truth.shape[0], 60), rng.integers(0, truth.shape[1], 60)
        for y, x in zip(ys, xs, strict=True):  # dark and bright "cells"
            scene[max(y - 8, 0) : y + 8, max(x - 8, 0) : x + 8] *= rng.choice([0.7, 1.3])
        noisy = 150 * truth * scene + rng.normal(0, 3, truth.shape)
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    ff = estimate_flatfield(images)
    assert ff.dtype == np.float32 and ff.shape == truth.shape
    assert ff.mean() == pytest.approx(1.0, abs=1e-4)
    assert np.abs(ff - truth).max() < 0.03
    # a single FOV is smoothed on its own; a generator is accepted
    single = estimate_flatfield(iter(images[:1]))
    assert np.abs(single - truth).mean() < 0.02
    corrected = apply_flatfield(images[0], ff)
    assert corrected.dtype == np.float32
    assert np.std(corrected) < np.std(images[0].astype(np.float32))


def test_estimate_flatfield_errors():
    with pytest.raises(ValueError, match="no images"):
        estimate_flatfield([])
    with pytest.raises(ValueError, match="differ"):
        estimate_flatfield([np.ones((8, 8)), np.ones((8, 9))])
    with pytest.raises(ValueError, match="2-D"):
        estimate_flatfield([np.ones((2, 8, 8))])
    with pytest.raises(ValueError):
        apply_flatfield(np.ones((4, 4)), np.ones((4, 5)))


def test_zscore_and_stats():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    z = zscore(img)
    assert z.dtype == np.float32
    assert z.mean() == pytest.approx(0, abs=1e-6) and z.std() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(zscore(img, mean=1.0, std=2.0), (img - 1) / 2)
    const = zscore(np.full((4, 4), 7.0))
    assert np.all(const == 0) and np.all(np.isfinite(const))
    assert np.all(zscore(img, std=0.0) == img - img.mean())
    m, s = image_stats(np.array([1.0, 3.0, np.nan]))
    assert (m, s) == (2.0, 1.0)
    assert image_stats(np.array([])) == (0.0, 0.0)


def test_percentile_normalize():
    img = np.linspace(0, 100, 1001, dtype=np.float32)
    out = percentile_normalize(img, 1, 99)
    assert out.dtype == np.float32
    assert np.percentile(out, 1) == pytest.approx(0, abs=1e-5)
    assert np.percentile(out, 99) == pytest.approx(1, abs=1e-5)
    clipped = percentile_normalize(img, clip=True)
    assert clipped.min() == 0 and clipped.max() == 1
    assert np.all(percentile_normalize(np.full((5, 5), 3.0)) == 0)
