"""Focus metrics: synthetic properties and the real brightfield defocus series."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

from scopeflow.smear.qc import focus


def _cells(shape=(256, 256), seed=0, n=40):
    """DPC-like field: ``n`` random point objects seen through a derivative of a Gaussian."""
    rng = np.random.default_rng(seed)
    impulses = np.zeros(shape)
    impulses[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)] = 1.0
    img = 0.5 + 40 * ndi.gaussian_filter(impulses, 2.0, order=(0, 1))
    return img + rng.normal(0, 0.002, shape)


@pytest.mark.parametrize("name", ["laplacian_var", "tenengrad", "brenner"])
def test_sharpness_metrics_drop_with_blur(name):
    img = _cells()
    fn = focus.FOCUS_METRICS[name]
    scores = [fn(ndi.gaussian_filter(img, s)) if s else fn(img) for s in (0, 1.5, 3)]
    assert scores[0] > scores[1] > scores[2] > 0
    tiled = [focus.focus_metrics(ndi.gaussian_filter(img, s))[f"focus_{name}"] for s in (0.3, 1.5, 3)]
    assert tiled[0] > tiled[1] > tiled[2] > 0


def test_constant_and_empty_images_score_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for img in (np.zeros((64, 64)), np.full((64, 64), 0.5), np.full((5, 7), 3.0)):
            for tile in (128, 16, None):
                m = focus.focus_metrics(img, tile_px=tile)
                assert all(v == 0.0 for v in m.values()), m
        assert focus.laplacian_variance(np.zeros((0, 0))) == 0.0


def test_tiled_score_ignores_empty_area():
    """A sparse but sharp field scores like a dense one; the whole-image metric does not."""
    dense = _cells((512, 512), seed=1, n=600)
    sparse = dense.copy()
    sparse[:, 128:] = 0.5 + np.random.default_rng(2).normal(0, 0.002, (512, 384))
    whole = focus.laplacian_variance(sparse) / focus.laplacian_variance(dense)
    tiled = (focus.focus_metrics(sparse)["focus_laplacian_var"]
             / focus.focus_metrics(dense)["focus_laplacian_var"])
    assert whole < 0.4 and tiled > 0.6


def test_focus_ratio_edge_cases():
    assert np.allclose(focus.focus_ratio([2.0, 4.0, 6.0]), [0.5, 1.0, 1.5])
    assert np.allclose(focus.focus_ratio([3.0]), [1.0])  # a single FOV is its own median
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(focus.focus_ratio([0.0, 0.0])).all()  # no 0/0
        r = focus.focus_ratio([np.nan, 1.0, 3.0])
    assert np.isnan(r[0]) and np.allclose(r[1:], [0.5, 1.5])
    assert focus.focus_ratio([]).size == 0


def _series(root):
    series = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for kind in ("fine", "init"):
            files = sorted((float(re.search(r"-Z(\d+(?:\.\d+)?)\.png$", f.name).group(1)), f)
                           for f in folder.glob(f"{kind}_*-Z*.png"))
            series[(folder.name, kind)] = files
    return series


def test_in_focus_image_scores_best_in_all_four_defocus_series(shared):
    """sephaCe brightfield: in focus vs +-10 um (fine) and +-25 um (init), 2 fields."""
    import imageio.v3 as iio

    root = shared / "sephace_brightfield_defocus"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    series = _series(root)
    assert len(series) == 4 and all(len(v) == 3 for v in series.values())
    col = f"focus_{focus.DEFAULT_FOCUS_METRIC}"
    for key, files in series.items():
        scores = [focus.focus_metrics(iio.imread(f))[col] for _, f in files]
        assert int(np.argmax(scores)) == 1, (key, scores)  # the middle z is in focus
        # every defocused image fails the default FOV threshold against an in-focus median
        from scopeflow.smear.qc.params import QC_DEFAULTS

        assert max(scores[0], scores[2]) / scores[1] < QC_DEFAULTS["min_focus_ratio"], (key, scores)
