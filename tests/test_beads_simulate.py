"""Tests of the bead forward model (scopeflow.simulate.beads)."""

from __future__ import annotations

import numpy as np
import pytest

from scopeflow.simulate.beads import (
    crlb_gaussian,
    render_frame,
    simulate_movie,
    simulate_spots,
)


def test_gaussian_render_integrates_photons_and_centre():
    mu = render_frame((41, 41), np.array([20.3]), np.array([19.6]), np.array([1000.0]),
                      sigma_px=1.5, background=0.0)
    assert mu.sum() == pytest.approx(1000.0, rel=1e-6)
    yy, xx = np.mgrid[0:41, 0:41]
    assert (mu * yy).sum() / mu.sum() == pytest.approx(20.3, abs=1e-6)
    assert (mu * xx).sum() / mu.sum() == pytest.approx(19.6, abs=1e-6)


def test_ring_profile_has_zero_net_signal_and_dark_core():
    mu = render_frame((61, 61), np.array([30.0]), np.array([30.0]), np.array([2000.0]),
                      profile="ring", sigma_px=2.0, background=500.0)
    assert (mu - 500).sum() == pytest.approx(0.0, abs=2.0)
    assert mu[30, 30] < 500 - 50  # dark core
    assert mu[30, 30 + 4] > 500  # bright ring at ~2.2 sigma


def test_crlb_matches_baselines():
    # baselines.md §3: 0.2300 / 0.0677 / 0.0246 px (σ 1.5, b 10)
    for n, ref in ((200, 0.2300), (1000, 0.0677), (5000, 0.0246)):
        assert crlb_gaussian(1.5, n, 10, 15) == pytest.approx(ref, abs=6e-4)
    # more photons, smaller bound; read noise raises it
    assert crlb_gaussian(1.5, 1000, 10, read_noise=5) > crlb_gaussian(1.5, 1000, 10)


def test_spots_statistics():
    stack, truth = simulate_spots(200, 1000, seed=1)
    assert stack.shape == (200, 64, 64) and stack.dtype == np.float32
    assert np.all(np.abs(truth[["y", "x"]].to_numpy() - 32) <= 0.5)
    # background 10 photons/px Poisson: mean and variance of a corner
    corner = stack[:, :10, :10]
    assert corner.mean() == pytest.approx(10, rel=0.03)
    assert corner.var() == pytest.approx(10, rel=0.08)
    assert (stack.sum(axis=(1, 2)) - 64 * 64 * 10).mean() == pytest.approx(1000, rel=0.05)


def test_movie_truth_brownian_steps_and_dtypes():
    D, px, fps = 0.2, 0.1, 10.0
    movie, truth = simulate_movie(40, (64, 96), 20, D, px, fps, enter_leave=False,
                                  bit_depth=8, photons=800, seed=2)
    assert movie.shape == (40, 64, 96) and movie.dtype == np.uint8
    assert set(truth.columns) >= {"frame", "particle", "y", "x", "photons"}
    assert truth["particle"].nunique() == 20  # nobody leaves
    t = truth.sort_values(["particle", "frame"])
    d = t.groupby("particle")[["y", "x"]].diff().dropna().to_numpy()
    step = np.sqrt(2 * D / fps) / px
    assert d.std() == pytest.approx(step, rel=0.1)
    m16, _ = simulate_movie(3, (32, 32), 5, D, px, fps, bit_depth=16, seed=2)
    assert m16.dtype == np.uint16
    a, ta = simulate_movie(5, (32, 32), 5, D, px, fps, seed=7)
    b, tb = simulate_movie(5, (32, 32), 5, D, px, fps, seed=7)
    assert np.array_equal(a, b) and ta.equals(tb)


def test_movie_enter_leave_and_drift():
    movie, truth = simulate_movie(60, (48, 48), 10, 2.0, 0.1, 10.0, enter_leave=True, seed=3,
                                  drift_um_s=(0.0, 0.5))
    # beads wander in and out: more visits than beads in view at once
    assert truth["particle"].nunique() > truth.groupby("frame").size().max()
    assert truth["y"].between(-0.5, 47.5).all() and truth["x"].between(-0.5, 47.5).all()
