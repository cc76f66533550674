"""DPC formula, weak-object transfer functions and Tikhonov phase recovery."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from scopeflow.smear.dpc import (
    dpc_octopi,
    dpc_to_uint8,
    phase_from_dpc,
    phase_transfer_function,
    weak_object_transfer_functions,
)
from scopeflow.smear.flatfield import estimate_flatfield
from scopeflow.simulate import image_halves, simulate_fov

PS, LAM, NA = 0.333, 0.525, 0.4


def test_dpc_octopi_known_numbers():
    left = np.array([[0.6, 0.2, 0.3, 0.0, 0.9]], np.float32)
    right = np.array([[0.2, 0.6, 0.3, 0.0, 0.1]], np.float32)
    expected = np.array([[1.0, 0.0, 0.5, 0.0, 1.0]], np.float32)  # 0/0 -> 0; 1.3 -> 1
    out = dpc_octopi(left, right)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(
        dpc_octopi(np.array([[0.4]]), np.array([[0.2]])), [[0.5 + 0.2 / 0.6]], rtol=1e-6
    )
    # uint8 input is scaled by 1/255 (the ratio is unchanged)
    np.testing.assert_allclose(
        dpc_octopi(np.array([[153]], np.uint8), np.array([[51]], np.uint8)), [[1.0]]
    )
    # flatfield division before the formula
    out = dpc_octopi(np.array([[0.6]]), np.array([[0.3]]), np.array([[2.0]]), np.array([[1.0]]))
    np.testing.assert_allclose(out, [[0.5]])
    # Octopi's 8-bit DPC truncates
    np.testing.assert_array_equal(dpc_to_uint8(np.array([0.5, 1.0, 0.0, np.nan])), [127, 255, 0, 0])


def test_transfer_function_symmetries():
    shape = (63, 81)  # odd sizes: no Nyquist bin, so H(-f) is on the grid
    h_u, h_p = weak_object_transfer_functions(shape, PS, LAM, NA)
    assert h_p.dtype == np.complex64 and h_p.shape == shape
    assert np.allclose(h_p.real, 0) and np.allclose(h_u.imag, 0)
    assert np.allclose(h_p[:, 0], 0)  # f_x = 0 column carries no phase signal
    # odd in f_x: H(-f) = -H(f)
    flipped = np.roll(h_p[::-1, ::-1], (1, 1), axis=(0, 1))
    np.testing.assert_allclose(flipped, -h_p, atol=1e-5)
    assert np.abs(h_p).max() <= 1.0 + 1e-6
    assert h_u[0, 0].real == pytest.approx(-2.0, abs=1e-3)  # I ≈ 1 − 2μ
    _, h_right = weak_object_transfer_functions(shape, PS, LAM, NA, half="right")
    np.testing.assert_allclose(h_right, -h_p)
    np.testing.assert_array_equal(phase_transfer_function(shape, PS, LAM, NA), h_p)
    # support: |f| <= 2 NA/λ
    fy = np.fft.fftfreq(shape[0], PS)[:, None]
    fx = np.fft.fftfreq(shape[1], PS)[None, :]
    outside = np.hypot(fy, fx) > 2 * NA / LAM * 1.01
    assert np.abs(h_p[outside]).max() < 1e-6


def test_transfer_function_matches_abbe_simulation():
    """Sign and magnitude of H_p checked against partially coherent (Abbe) imaging."""
    rng = np.random.default_rng(1)
    phi = ndimage.gaussian_filter(rng.standard_normal((128, 128)), 2.0)
    phi *= 0.02 / phi.std()  # weak object
    left, right = image_halves(phi, PS, LAM, NA, source_rings=12)
    measured = (left - right) / (left + right)
    h = phase_transfer_function(phi.shape, PS, LAM, NA)
    predicted = np.real(np.fft.ifft2(h * np.fft.fft2(phi)))
    r = np.corrcoef(measured.ravel(), predicted.ravel())[0, 1]
    gain = (measured * predicted).sum() / (predicted**2).sum()
    assert r > 0.99
    assert gain == pytest.approx(1.0, abs=0.05)


def test_phase_from_linear_dpc_any_shape():
    rng = np.random.default_rng(2)
    shape = (101, 137)
    phi = np.zeros(shape)  # sparse cell-sized bumps (DPC cannot see very low frequencies)
    phi[rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)] = 1.0
    phi = ndimage.gaussian_filter(phi, 4.0, mode="wrap")
    phi /= phi.max()
    h = phase_transfer_function(shape, PS, LAM, NA)
    dpc = 0.5 + np.real(np.fft.ifft2(h * np.fft.fft2(phi)))
    rec = phase_from_dpc(dpc, PS, LAM, NA, reg=1e-3)
    assert rec.shape == shape and rec.dtype == np.float32
    assert abs(float(rec.mean())) < 1e-5
    assert np.corrcoef(rec.ravel(), phi.ravel())[0, 1] > 0.8
    # uint8 DPC is accepted and a flat DPC gives zero phase
    assert np.allclose(phase_from_dpc(np.full((32, 32), 128, np.uint8), PS, LAM, NA), 0, atol=1e-5)


def test_phase_from_simulated_smear():
    """KEY physics test: flatfield → Octopi DPC → Tikhonov phase ≈ true phase."""
    sim = simulate_fov(shape=(512, 512), seed=11)
    ff_l = estimate_flatfield([sim["left"]])
    ff_r = estimate_flatfield([sim["right"]])
    dpc = dpc_octopi(sim["left"], sim["right"], ff_l, ff_r)
    inside = sim["labels"] > 0
    contrast_in = np.abs(dpc - 0.5)[inside].mean()
    contrast_out = np.abs(dpc - 0.5)[~inside].mean()
    assert contrast_in > 2.5 * contrast_out  # the DPC visibly shows the cells

    phase = phase_from_dpc(dpc, PS, LAM, NA)
    r = np.corrcoef(phase.ravel(), sim["phase"].ravel())[0, 1]
    assert r >= 0.8, f"Pearson r = {r:.3f}"
    assert phase[inside].mean() > phase[~inside].mean() + 0.5  # cells have positive phase
