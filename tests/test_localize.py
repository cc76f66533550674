"""scopeflow.track: localisation accuracy, detection, conventions, linking/MSD/D, real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scopeflow.simulate.beads import crlb_gaussian, render_frame, simulate_movie, simulate_spots
from scopeflow.track import cli_locate, cli_track, read_frames
from scopeflow.track.beadnet import evaluate_detection, match_points
from scopeflow.track.analysis import track_pipeline
from scopeflow.track.compare import compare_tracks
from scopeflow.track.link import filter_stubs, link
from scopeflow.track.motion import (
    compute_drift,
    ensemble_msd,
    fit_diffusion,
    msd_per_particle,
    subtract_drift,
)
from scopeflow.track.fit import fit_gaussian
from scopeflow.track.localize import locate, locate_stack
from scopeflow.track.peaks import extract_crops
from scopeflow.track.refine import refine_xcorr
from scopeflow.track.templates import gaussian_template

BULK_MPP, BULK_FPS = 100 / 285, 24.0


def _errors(locs: pd.DataFrame, truth: pd.DataFrame, max_dist: float = 2.0):
    """Per-axis errors of the best (highest-score) localisation per frame."""
    best = locs.loc[locs.groupby("frame")["score"].idxmax()].set_index("frame")
    m = truth.set_index("frame").join(best.add_suffix("_f"), how="inner")
    e = np.concatenate([m.y_f - m.y, m.x_f - m.x])
    return e[np.abs(e) < max_dist], m


@pytest.mark.parametrize(("photons", "limit"), [(200, 1.2), (1000, 1.2), (5000, 1.2)])
def test_rmse_near_crlb_isolated_spots(photons, limit):
    """RMSE / CRLB on 200 isolated Gaussian spots (σ 1.5, b 10, Poisson), as baselines §3."""
    stack, truth = simulate_spots(200, photons, seed=0)
    locs = locate_stack(stack)
    e, m = _errors(locs, truth)
    assert len(m) == 200 and len(e) == 400  # every spot found, no miss > 2 px
    ratio = np.sqrt(np.mean(e**2)) / crlb_gaussian(1.5, photons, 10, 15)
    assert ratio <= limit
    assert abs(e.mean()) < 0.1 * crlb_gaussian(1.5, photons, 10, 15) + 0.01
    # sigma estimated from the data
    assert locs.attrs["sigma_px"] == pytest.approx(1.5, rel=0.05)
    # ep_px is a calibrated error estimate
    ep = np.sqrt(np.mean(m["ep_px_f"] ** 2))
    assert ep == pytest.approx(np.sqrt(np.mean(e**2)), rel=0.2)
    assert m["photons_f"].median() == pytest.approx(photons, rel=0.1)
    assert m["background_f"].median() == pytest.approx(10, rel=0.1)


def test_xcorr_core_and_origin_convention():
    """Pixel centres are integer coordinates; noiseless xcorr and MLE recover the shift."""
    y0, x0 = 20.3, 11.8
    img = render_frame((40, 30), np.array([y0]), np.array([x0]), np.array([3000.0]),
                       sigma_px=1.5, background=5.0)
    crops, valid = extract_crops(img, np.array([[20, 12]]), 6)
    oy, ox, pol = refine_xcorr(crops, valid, gaussian_template(1.5, 6), upsample=20)
    assert pol[0] == 1
    assert 20 + oy[0] == pytest.approx(y0, abs=0.02) and 12 + ox[0] == pytest.approx(x0, abs=0.02)
    res = fit_gaussian(crops, valid, oy, ox, 1.5)
    assert 20 + res["dy"][0] == pytest.approx(y0, abs=1e-4)
    assert 12 + res["dx"][0] == pytest.approx(x0, abs=1e-4)
    locs = locate(img, sigma_px=1.5)
    assert len(locs) == 1
    assert locs.y[0] == pytest.approx(y0, abs=1e-3) and locs.x[0] == pytest.approx(x0, abs=1e-3)
    assert list(locs.columns[:6]) == ["frame", "y", "x", "photons", "background", "ep_px"]


def test_dark_beads_need_no_inversion():
    movie, truth = simulate_movie(3, (96, 96), 15, 0.0, 0.1, 10, photons=-1500.0,
                                  background=200, enter_leave=False, seed=4)
    locs = locate_stack(movie)
    assert locs.attrs["polarity"] == -1.0
    pred = [locs.loc[locs.frame == f, ["y", "x"]].to_numpy() for f in range(3)]
    tru = [truth.loc[truth.frame == f, ["y", "x"]].to_numpy() for f in range(3)]
    assert evaluate_detection(pred, tru)["f1"] >= 0.95


def _net_f1(movie, truth, **kw):
    locs = locate_stack(movie, "beadnet", **kw)
    n = len(movie)
    pred = [locs.loc[locs.frame == f, ["y", "x"]].to_numpy() for f in range(n)]
    tru = [truth.loc[truth.frame == f, ["y", "x"]].to_numpy() for f in range(n)]
    return evaluate_detection(pred, tru)


def test_beadnet_detects_low_snr_beads():
    """Shipped network, N = 200 photons on 10 photons/px (σ 1.5), 25 beads per 128² frame."""
    movie, truth = simulate_movie(4, (128, 128), 25, 0.0, 0.1, 10, photons=200, background=10,
                                  enter_leave=False, seed=21)
    m = _net_f1(movie, truth)
    assert m["f1"] >= 0.95, m
    assert m["rmse_px"] < 0.35


def test_beadnet_detects_ring_beads():
    """Brightfield rings (dark core, bright ring): network candidates + data template."""
    movie, truth = simulate_movie(4, (128, 128), 25, 0.0, 0.1, 10, profile="ring",
                                  photons=0.3 * 300 * 2 * np.pi * 1.5**2, background=300,
                                  enter_leave=False, seed=22)
    m = _net_f1(movie, truth, profile="template")
    assert m["f1"] >= 0.95, m
    assert m["rmse_px"] < 0.2


def test_cli_locate_inputs(tmp_path):
    import imageio.v3 as iio
    import tifffile

    movie, truth = simulate_movie(3, (64, 64), 8, 0.0, 0.1, 10, photons=2000, bit_depth=8,
                                  enter_leave=False, seed=5)
    rgba = np.zeros(movie.shape + (4,), np.uint8)
    rgba[..., 1] = movie
    rgba[..., 0] = 255 - movie  # a different red channel must be ignored
    rgba[..., 3] = 255
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(rgba):
        iio.imwrite(folder / f"f_{i:03d}.png", f)
    tifffile.imwrite(tmp_path / "movie.tif", movie, photometric="minisblack")
    assert np.array_equal(read_frames(folder), movie)
    assert np.array_equal(read_frames(tmp_path / "movie.tif"), movie)
    a = cli_locate(folder, tmp_path / "out" / "a.csv", model=None)
    b = cli_locate(tmp_path / "movie.tif", tmp_path / "b.csv", model=None)
    c = cli_locate(folder / "f_000.png", tmp_path / "c.csv", model=None)
    on_disk = pd.read_csv(tmp_path / "out" / "a.csv")
    assert list(on_disk.columns[:3]) == ["frame", "y", "x"]
    assert len(a) == len(b) and np.allclose(a[["y", "x"]], b[["y", "x"]])
    assert set(c.frame) == {0}
    i, j = match_points(a.loc[a.frame == 0, ["y", "x"]].to_numpy(),
                        truth.loc[truth.frame == 0, ["y", "x"]].to_numpy(), 1.0)
    assert len(j) == (truth.frame == 0).sum()


def test_cli_track_writes_outputs(tmp_path):
    movie, _ = simulate_movie(30, (64, 64), 10, 0.1, 0.1, 20, photons=1500, seed=6)
    res = cli_track(movie, tmp_path / "t.csv", 0.1, 20.0, model=None, search_range_px=4,
                    min_length=10)
    for suffix in ("t.csv", "t_msd.csv", "t_diffusion.csv", "t_summary.json"):
        assert (tmp_path / suffix).is_file()
    tracks = pd.read_csv(tmp_path / "t.csv")
    assert list(tracks.columns[:6]) == ["particle", "frame", "y", "x", "y_um", "x_um"]
    assert res["summary"]["n_tracks"] == tracks.particle.nunique()


def _shared(shared, name):
    path = shared / name
    if not path.is_dir():
        pytest.skip(f"{path} not found (set SCOPEFLOW_SHARED_DATA)")
    return path


def test_reference_sequence_matches_trackpy_positions(shared):
    """Same convention as trackpy: positions agree with trackpy v0.4's stored locate output."""
    path = _shared(shared, "trackpy_reference_sequence")
    frames = read_frames(path / "frames")
    ref = np.load(path / "reproducibility_v0.4.npz")["arr_3"]  # locate(d=9, minmass=140)
    locs = locate_stack(frames[:1])
    p = locs[["y", "x"]].to_numpy()
    i, j = match_points(p, ref, 1.0)
    assert len(j) >= 0.95 * len(ref)
    d = p[i] - ref[j]
    assert np.all(np.abs(d.mean(0)) < 0.03)  # no systematic offset (origin convention)


def test_bulk_water_diffusion(shared):
    """trackpy walkthrough data: ensemble D within 10 % of 0.40 µm²/s (A = 4D = 1.60)."""
    path = _shared(shared, "trackpy_bulk_water")
    frames = read_frames(path / "frames")
    assert frames.shape == (30, 424, 640)
    locs = locate_stack(frames)  # matched filter (fast); BeadNet: benchmarks/track_accuracy
    assert locs.attrs["polarity"] == -1.0  # dark beads found without inverting
    assert 450 <= locs.groupby("frame").size().median() <= 700  # walkthrough: ~580
    res = track_pipeline(locs, BULK_MPP, BULK_FPS, search_range_px=5, memory=3, min_length=25)
    assert res["fit"].D_um2_s == pytest.approx(0.40, rel=0.10)
    assert res["summary"]["n_tracks"] >= 250


def test_bulk_water_beadnet_finds_trackpy_features(shared):
    """The shipped network finds the walkthrough's well-formed beads on a real frame."""
    import trackpy as tp

    path = _shared(shared, "trackpy_bulk_water")
    frame = read_frames(path / "frames")[0]
    tp.quiet()
    ref = tp.locate(255 - frame, 11, minmass=20)  # = invert=True on uint8
    ref = ref[(ref["mass"] > 50) & (ref["size"] < 2.6) & (ref["ecc"] < 0.3)]  # walkthrough gate
    locs = locate_stack(frame, "beadnet")
    i, j = match_points(locs[["y", "x"]].to_numpy(), ref[["y", "x"]].to_numpy(), 1.5)
    assert len(j) >= 0.9 * len(ref)
    assert len(locs) <= 2.0 * len(tp.locate(255 - frame, 11, minmass=20))


# ----------------------------------------------------------------- linking, MSD, diffusion
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
    """Full chain: simulated movie → locate → link → drift → MSD → D within 3.5 expected
    standard errors (exact s.e. of this movie's size, ≈ 2 %) of the truth."""
    from scopeflow.track.motion import msd_fit_error

    D, px, fps = 0.1, 0.1, 20.0
    movie, truth = simulate_movie(150, (128, 128), 40, D, px, fps, photons=1000, seed=3,
                                  enter_leave=True)
    locs = locate_stack(movie, sigma_px=1.5)
    res = track_pipeline(locs, px, fps, search_range_px=4, memory=3, min_length=10,
                         fit_lags="auto")
    lengths = filter_stubs(truth, 10).groupby("particle").size().to_numpy()
    se = msd_fit_error(lengths, D, 0.007, 1 / fps, res["fit"].n_lags)
    assert 0.005 < se < 0.03
    assert abs(res["fit"].D_um2_s / D - 1) < 3.5 * se
    # localisation adds few breaks to those the linker makes from the true positions
    # (measured: 2.04 vs 1.51 fragments per true track)
    ideal = filter_stubs(link(truth[["frame", "y", "x"]], 4, memory=3), 10)
    frag_ideal = compare_tracks(ideal, truth)["fragments_per_track"]
    assert compare_tracks(res["tracks"], truth)["fragments_per_track"] <= 1.5 * frag_ideal
    tracks = res["tracks"]
    assert list(tracks.columns[:6]) == ["particle", "frame", "y", "x", "y_um", "x_um"]
    assert np.allclose(tracks.y_um, tracks.y * px)
    s = res["summary"]
    assert s["n_tracks"] > 10 and s["D_um2_s"] == res["fit"].D_um2_s


# ----------------------------------------------------------------- MSD statistics, drift bias
def _brownian(n, length, D, px, fps, sig_px, rng):
    steps = rng.normal(0, np.sqrt(2 * D / fps) / px, (n, length, 2))
    steps[:, 0] = rng.uniform(0, 200, (n, 2))
    pos = np.cumsum(steps, 1) + rng.normal(0, sig_px, (n, length, 2))
    return pd.DataFrame({"particle": np.repeat(np.arange(n), length),
                         "frame": np.tile(np.arange(length), n),
                         "y": pos[..., 0].ravel(), "x": pos[..., 1].ravel()})


def test_msd_fit_error_matches_simulation_and_drift_correction_is_unbiased():
    """The exact s.e. of D agrees with 150 simulated ensembles; drift subtraction on 8 beads
    biases D by −1/8 unless the MSD undoes it."""
    from scopeflow.track.motion import msd_fit_error, optimal_fit_lags

    rng = np.random.default_rng(5)
    D, px, fps, sig = 0.1, 0.1, 20.0, 0.3
    est, raw, cor = [], [], []
    for _ in range(150):
        tr = _brownian(20, 60, D, px, fps, sig, rng)
        est.append(fit_diffusion(ensemble_msd(tr, px, fps, 5), 5).D_um2_s)
        small = tr.loc[tr.particle < 8]
        c = subtract_drift(small, compute_drift(small))
        raw.append(fit_diffusion(ensemble_msd(c, px, fps, 3), 3).D_um2_s)
        cor.append(fit_diffusion(ensemble_msd(c, px, fps, 3, drift_subtracted=True), 3).D_um2_s)
    est = np.array(est) / D
    pred = msd_fit_error(np.full(20, 60), D, sig * px, 1 / fps, 5)
    assert est.std() == pytest.approx(pred, rel=0.2)  # 150 samples: s.e. of a s.d. ≈ 6 %
    assert abs(est.mean() - 1) < 3 * pred / np.sqrt(150)
    raw, cor = np.array(raw) / D, np.array(cor) / D
    err = cor.std() / np.sqrt(len(cor))
    assert abs(cor.mean() - 1) < 3 * err
    assert raw.mean() == pytest.approx(1 - 1 / 8, abs=3 * err)
    # few lags when the static error is small, more when it dominates
    assert optimal_fit_lags(np.full(20, 200), 0.01) == 2
    assert optimal_fit_lags(np.full(20, 200), 5.0) > 3


def test_pipeline_D_unbiased_and_interval_honest_on_brownian_truth():
    """Issue 17: link -> drift -> MSD -> D on Brownian tracks with known D, static error and
    a drifting stage is unbiased, and the bootstrap s.e. over tracks matches both the exact
    Brownian s.e. (msd_fit_error) and the spread between movies; its 95 % interval covers D."""
    from scopeflow.track.analysis import track_pipeline
    from scopeflow.track.motion import msd_fit_error

    rng = np.random.default_rng(11)
    D, px, fps, sig = 0.4, 0.35, 24.0, 0.15
    est, se, cover = [], [], 0
    for _ in range(16):
        tr = _brownian(150, 30, D, px, fps, sig, rng)
        t = tr["frame"].to_numpy() / fps
        tr["y"] += (0.5 * t + 0.3 * np.sin(2 * np.pi * t)) / px  # stage drift, µm -> px
        tr["x"] -= 0.8 * t / px
        s = track_pipeline(tr.drop(columns="particle"), px, fps, search_range_px=5, memory=3,
                           min_length=25)["summary"]
        est.append(s["D_um2_s"] / D)
        se.append(s["D_se_um2_s"] / D)
        cover += s["D_ci_low_um2_s"] <= D <= s["D_ci_high_um2_s"]
    est = np.array(est)
    pred = msd_fit_error(np.full(150, 30), D, sig * px, 1 / fps, 10)
    assert np.mean(se) == pytest.approx(pred, rel=0.2)
    assert est.std(ddof=1) == pytest.approx(pred, rel=0.5)  # 16 movies
    assert abs(est.mean() - 1) < 3 * pred / np.sqrt(len(est))
    assert cover >= 13


def test_compiled_kernels_match_numpy_code():
    """numba fit / peaks / filter give the numpy code's numbers (fit stopped at 1e-3 px)."""
    from scipy import ndimage

    from scopeflow.track import _fast
    from scopeflow.track import fit as F
    from scopeflow.track import peaks as P
    from scopeflow.track import refine as R
    from scopeflow.track import templates as T

    if not _fast.HAVE_NUMBA:
        pytest.skip("numba not installed")
    movie, _ = simulate_movie(1, (96, 96), 30, 0.0, 0.1, 10.0, photons=400, seed=1,
                              enter_leave=False)
    img = movie[0].astype(float)
    z = P._gaussian_response(img, 1.5)
    cand = P.find_peaks(z, 5.0, 2)
    mx = ndimage.maximum_filter(z, 5, mode="nearest")
    ref = np.argwhere((z == mx) & (z > 5.0))
    assert len(cand) > 15 and {tuple(p) for p in cand} == {tuple(p) for p in ref}
    g, size = P._gauss_box_kernels(1.5)
    c1, u1 = ndimage.correlate1d, ndimage.uniform_filter1d
    im32 = img.astype(np.float32)
    slow = c1(c1(im32, g, 0, mode="constant"), g, 1, mode="constant") - u1(
        u1(im32, size, 0, mode="constant"), size, 1, mode="constant")
    assert np.allclose(_fast.gauss_minus_box(im32, g), slow, atol=1e-4)
    crops, valid = P.extract_crops(img, cand, 6)
    oy, ox, _ = R.refine_xcorr(crops, valid, T.gaussian_template(1.5, 6))
    ext = np.abs(np.random.default_rng(0).normal(0, 2, crops.shape))
    for extra in (None, ext):
        fast = F.fit_gaussian(crops, valid, oy, ox, 1.5, n_iter=8, read_noise=1.0, extra=extra)
        F._FAST_FIT = False
        try:
            slow = F.fit_gaussian(crops, valid, oy, ox, 1.5, n_iter=8, read_noise=1.0,
                                  extra=extra)
        finally:
            F._FAST_FIT = True
        assert np.array_equal(fast["ok"], slow["ok"])
        assert np.max(np.abs(fast["dy"] - slow["dy"])) < 2e-3
        assert np.max(np.abs(fast["dx"] - slow["dx"])) < 2e-3
        assert np.allclose(fast["photons"], slow["photons"], rtol=1e-3)
        assert np.allclose(fast["var_x"], slow["var_x"], rtol=1e-2)
    # free σ (the pilot's fit): the compiled kernel runs the same iterations
    fast = F.fit_gaussian(crops, valid, oy, ox, 1.2, fit_sigma=True, n_iter=7, read_noise=1.0)
    F._FAST_FIT = False
    try:
        slow = F.fit_gaussian(crops, valid, oy, ox, 1.2, fit_sigma=True, n_iter=7,
                              read_noise=1.0)
    finally:
        F._FAST_FIT = True
    assert np.array_equal(fast["ok"], slow["ok"])
    for key in ("dy", "dx", "photons", "background", "sigma", "var_x", "var_y", "chi2"):
        assert np.allclose(fast[key], slow[key], rtol=1e-8, atol=1e-10), key
    pos = cand + np.stack([oy, ox], 1)
    keep = F._neighbour_mask(cand, pos, 6, pos)
    edge = np.concatenate([cand, [[0, 0], [2, 95], [95, 40]]])  # crops cut by the frame edge
    amp = np.linspace(300, 900, len(pos))
    fast_out = (P.extract_crops(img, edge, 6), P._border_median(*P.extract_crops(img, edge, 6)),
                [R.refine_xcorr(*P.extract_crops(img, edge, 6), t, 10)
                 for t in (T.gaussian_template(1.5, 6), -T.ring_template(1.5, 6))],
                F._neighbour_models(cand, pos, amp, 6, "gaussian", 1.5, None))
    _fast.HAVE_NUMBA = False
    try:
        keep_np = F._neighbour_mask(cand, pos, 6, pos)
        slow_out = (P.extract_crops(img, edge, 6),
                    P._border_median(*P.extract_crops(img, edge, 6)),
                    [R.refine_xcorr(*P.extract_crops(img, edge, 6), t, 10)
                     for t in (T.gaussian_template(1.5, 6), -T.ring_template(1.5, 6))],
                    F._neighbour_models(cand, pos, amp, 6, "gaussian", 1.5, None))
    finally:
        _fast.HAVE_NUMBA = True
    assert np.array_equal(keep, keep_np)
    assert all(np.array_equal(a, b) for a, b in zip(fast_out[0], slow_out[0]))  # crops
    assert np.allclose(fast_out[1], slow_out[1], rtol=0, atol=1e-12)  # border medians
    for f, s in zip(fast_out[2], slow_out[2]):  # xcorr offsets and polarity
        assert all(np.allclose(a, b, rtol=0, atol=1e-9) for a, b in zip(f, s))
    assert np.allclose(fast_out[3], slow_out[3], rtol=0, atol=1e-9)  # neighbour models


def test_upsampled_xcorr_matches_direct_dft():
    """The low-rank xcorr tables give the upsampled DFT correlation computed directly."""
    from scopeflow.track import refine as R
    from scopeflow.track import templates as T

    rng = np.random.default_rng(4)
    k, up = 13, 10
    for t in (T.gaussian_template(1.4, k // 2), T.ring_template(1.4, k // 2), rng.random((k, k))):
        t = t - t.mean()
        tshift, amap, bmap, grid = R._xcorr_tables(t.tobytes(), k, up)
        d = rng.normal(size=(k, k))
        f = np.fft.fftfreq(k) * k
        D, T = np.fft.fft2(d), np.fft.fft2(t)
        for j, (sy, sx) in enumerate([(a, b) for a in (0, 1, -1) for b in (0, 1, -1)]):
            s_y, s_x = sy + grid, sx + grid
            ey = np.exp(2j * np.pi * s_y[:, None] * f[None] / k)
            ex = np.exp(2j * np.pi * s_x[:, None] * f[None] / k)
            direct = (ey @ (D * np.conj(T)) @ ex.T).real / k**2
            low = np.einsum("rgu,uv,rhv->gh", amap[:, j // 3], d, bmap[:, j % 3])
            assert np.allclose(low, direct, atol=1e-10 * np.abs(direct).max())
            assert np.isclose(d.ravel() @ tshift[:, j], direct[len(grid) // 2, len(grid) // 2])


def test_frame_threads_give_identical_tables():
    from scopeflow.track.localize import locate_stack

    movie, _ = simulate_movie(6, (96, 96), 25, 0.3, 0.1, 10.0, photons=600, seed=5)
    one = locate_stack(movie, workers=1)
    two = locate_stack(movie, workers=2)
    pd.testing.assert_frame_equal(one, two)
    assert one["frame"].dtype == np.int64 and len(one) > 100
