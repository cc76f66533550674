"""Classical DPC predictor: accuracy on synthetic cells with known truth, protocol, factory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from scopeflow.evaluate import evaluate
from scopeflow.segment import make_predictor
from scopeflow.segment.base import Predictor
from scopeflow.segment.chunked import segment_image
from scopeflow.segment.classical import ClassicalPredictor, leaky_integrate


def biconcave_dpc(shape=(384, 384), n=260, radius_px=11.0, seed=0, gain=1.0, noise=0.02, sign=1):
    """DPC-like phantom with truth: biconcave (Evans–Fung-shaped) phase discs, most of them
    touching, rendered as ``0.5 + sign·gain·∂φ/∂x`` (Sobel, after a 1-px blur) + noise.

    Returns (dpc float32 in [0, 1], labels int32). Pixel (0, 0) is the top-left pixel.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    phase = np.zeros(shape)
    labels = np.zeros(shape, np.int32)
    placed: list[tuple[float, float, float]] = []
    for _ in range(50 * n):
        if len(placed) == n:
            break
        r = radius_px * rng.uniform(0.85, 1.15)
        cy, cx = rng.uniform(-r / 2, h + r / 2), rng.uniform(-r / 2, w + r / 2)
        if any((y - cy) ** 2 + (x - cx) ** 2 < (0.95 * (r + q)) ** 2 for y, x, q in placed):
            continue
        placed.append((cy, cx, r))
    for i, (cy, cx, r) in enumerate(placed, start=1):
        rho2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
        inside = rho2 < 1
        if not inside.any():
            continue
        q = np.clip(rho2, 0, 1)
        thick = np.sqrt(1 - q) * (0.81 + 7.83 * q - 4.39 * q * q) / 4  # Evans–Fung, ~rad
        phase += np.where(inside, thick, 0.0)
        labels[inside & (labels == 0)] = i
    phase = ndi.gaussian_filter(phase, 1.0)
    dpc = 0.5 + sign * gain * ndi.sobel(phase, axis=1) / 8 + rng.normal(0, noise, shape)
    return np.clip(dpc, 0, 1).astype(np.float32), _sequential(labels)


def _sequential(labels):
    ids = np.unique(labels)
    lut = np.zeros(int(ids.max()) + 1, np.int32)
    lut[ids] = np.arange(ids.size)
    return lut[labels]


def _segment(img, **kw):
    p = ClassicalPredictor(**kw)
    return segment_image(img, p, None), p


def test_is_a_predictor():
    p = ClassicalPredictor()
    assert isinstance(p, Predictor)
    assert p.name == "classical"
    assert p.object_size >= 2 * 7.5 / 0.333  # at least two cell diameters
    assert p.context > 3 * p.length_px


def test_predict_before_prepare_raises():
    with pytest.raises(RuntimeError, match="prepare"):
        ClassicalPredictor().predict(np.zeros((16, 16), np.float32))


def test_bad_parameters():
    with pytest.raises(ValueError):
        ClassicalPredictor(pixel_size_um=0)
    with pytest.raises(ValueError):
        ClassicalPredictor(polarity=2)
    with pytest.raises(ValueError):
        ClassicalPredictor(axis=2)


def test_leaky_integration_inverts_derivative():
    x = np.arange(200, dtype=float)
    bump = np.exp(-((x - 100) ** 2) / (2 * 3.0**2))
    d = np.gradient(bump)[None, :].repeat(3, 0)
    rec = leaky_integrate(d, 40.0)[1]  # a high-pass: the bump minus its local mean
    assert np.argmax(rec) == 100
    assert rec[100] == pytest.approx(1.0, abs=0.15)
    assert abs(rec[20]) < 0.02
    assert np.allclose(leaky_integrate(np.full((5, 50), 0.3), 5.0)[:, 20:30], 0, atol=1e-6)


@pytest.mark.parametrize("sign", [1, -1])
def test_f1_on_synthetic_biconcave_cells(sign):
    img, truth = biconcave_dpc(sign=sign)
    labels, p = _segment(img)
    assert p.polarity_ == sign  # "auto" finds the DPC convention
    s = evaluate(labels, truth)
    assert s["f1"] >= 0.85, s
    assert s["binary_iou"] >= 0.75, s
    assert abs(s["count_error"]) < 0.15, s


def test_uint8_scale_gives_similar_result():
    img, truth = biconcave_dpc(seed=1)
    a, _ = _segment(img)
    b, _ = _segment(np.round(img * 255).astype(np.uint8))  # forgot /255: scale-free method
    assert evaluate(b, truth)["f1"] >= 0.85
    assert evaluate(b, a)["f1"] >= 0.9


def test_f1_on_simulated_octopi_fov():
    smear = pytest.importorskip("scopeflow.simulate.smear")
    dpc_mod = pytest.importorskip("scopeflow.smear.dpc")
    sim = smear.simulate_fov((384, 384), seed=3)
    img = dpc_mod.dpc_octopi(sim["left"], sim["right"])
    labels, _ = _segment(img, pixel_size_um=0.333)
    s = evaluate(labels, sim["labels"])
    assert s["f1"] >= 0.85, s


def test_real_octopi_crop_regression(shared):
    """Classical is far below a U-Net on real data, but must not regress to Otsu's F1≈0."""
    import imageio.v3 as iio

    base = shared / "octopi_rbc_dpc_harness"
    img = iio.imread(base / "images" / "10_20_0_dpc.png").astype(np.float32) / 255
    ref = iio.imread(base / "masks" / "10_20_0_mask.png")
    labels, p = _segment(img)
    assert p.polarity_ == -1  # real Octopi DPC: cells are negative after integration
    s = evaluate(labels, ref)
    assert s["f1"] >= 0.75, s
    assert s["binary_iou"] >= 0.7, s


def test_make_predictor():
    p = make_predictor("classical", pixel_size_um=0.5)
    assert isinstance(p, ClassicalPredictor) and p.pixel_size_um == 0.5
    with pytest.raises(ValueError, match="classical.*unet"):
        make_predictor("otsu")
