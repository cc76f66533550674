"""Linking, MSD and diffusion fits (scopeflow.track.link)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scopeflow.simulate.beads import simulate_movie
from scopeflow.track.link import (
    compare_tracks,
    ensemble_msd,
    filter_stubs,
    fit_diffusion,
    link,
    msd_per_particle,
    subtract_drift,
    track_pipeline,
)


def _truth_tracks(D=0.1, px=0.1, fps=20.0, n=80, frames=200, seed=0):
    _, truth = simulate_movie(frames, (64, 64), n, D, px, fps, enter_leave=True, seed=seed,
                              photons=10.0, bit_depth=None)
    return truth


def test_fit_diffusion_on_truth_positions():
    tr = _truth_tracks()
    ens = ensemble_msd(tr, 0.1, 20.0, max_lag=50)
    assert list(ens.columns[:3]) == ["lag", "lag_s", "msd_um2"]
    fit = fit_diffusion(ens, 10)
    assert fit.D_um2_s == pytest.approx(0.1, rel=0.05)
    assert fit.exponent == pytest.approx(1.0, abs=0.05)
    assert fit.A_um2_s == pytest.approx(0.4, rel=0.07)
    per = msd_per_particle(tr, 0.1, 20.0, max_lag=5)
    assert set(per.columns) == {"particle", "lag", "lag_s", "msd_um2", "n_disp"}
    # particles seen in one frame only have no displacement
    assert 0 < per["particle"].nunique() <= tr["particle"].nunique()


def test_static_error_goes_to_offset_not_D():
    tr = _truth_tracks(seed=1)
    rng = np.random.default_rng(0)
    noisy = tr.assign(y=tr.y + rng.normal(0, 0.3, len(tr)), x=tr.x + rng.normal(0, 0.3, len(tr)))
    fit = fit_diffusion(ensemble_msd(noisy, 0.1, 20.0, 20), 10)
    assert fit.D_um2_s == pytest.approx(0.1, rel=0.06)
    assert fit.offset_um2 == pytest.approx(4 * (0.3 * 0.1) ** 2, rel=0.3)


def test_link_recovers_ids_and_drift_subtraction():
    tr = _truth_tracks(n=12, frames=50, seed=2)
    drift = pd.DataFrame({"frame": np.arange(50), "y": 0.0, "x": 0.2 * np.arange(50)})
    moved = tr.assign(x=tr.x + 0.2 * tr.frame)
    t = link(moved[["frame", "y", "x"]], 5, memory=0)
    assert list(t.columns[:4]) == ["particle", "frame", "y", "x"]
    q = compare_tracks(t, moved)
    assert q["broken"] <= 0.1 * q["n_true_tracks"] and q["merged"] <= 0.1 * q["n_true_tracks"]
    assert len(filter_stubs(t, 50)) <= len(t)
    back = subtract_drift(t, drift)
    assert np.allclose(back.x.to_numpy(), t.x.to_numpy() - 0.2 * t.frame.to_numpy())
    assert {"drift_y_px", "drift_x_px"} <= set(back.columns)


def test_track_pipeline_on_simulated_movie_known_D():
    """Full chain: simulated movie → locate → link → drift → MSD → D within 8 %."""
    from scopeflow.track.localize import locate_stack

    D, px, fps = 0.1, 0.1, 20.0
    movie, truth = simulate_movie(80, (96, 96), 25, D, px, fps, photons=1000, seed=3,
                                  enter_leave=True)
    locs = locate_stack(movie, sigma_px=1.5)
    res = track_pipeline(locs, px, fps, search_range=4, memory=3, min_length=10)
    assert res["fit"].D_um2_s == pytest.approx(D, rel=0.08)
    tracks = res["tracks"]
    assert list(tracks.columns[:6]) == ["particle", "frame", "y", "x", "y_um", "x_um"]
    assert np.allclose(tracks.y_um, tracks.y * px)
    s = res["summary"]
    assert s["n_tracks"] > 10 and s["D_um2_s"] == res["fit"].D_um2_s
