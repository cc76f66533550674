"""Bead-tracking accuracy: scopeflow (matched filter or BeadNet + xcorr/MLE) beside trackpy.

Prints
1. RMSE and RMSE/CRLB on isolated Gaussian spots (σ 1.5 px, 10 photons/px, Poisson, 64²
   frames, centre 32 + U(−½, ½), 500 spots per N = 200, 1000, 5000; baselines.md §3):
   scopeflow (xcorr + MLE), scopeflow xcorr only, trackpy.locate(diameter=7, 9, 11).
2. Detection F1 / RMSE on simulated movies: brightfield rings and N = 200 beads, the
   matched filter (default) and BeadNet (default thresholds) vs trackpy.locate on the same
   frames with minmass tuned on the truth (the best trackpy can do).
3. A simulated known-D movie: D error and broken tracks, scopeflow pipeline vs trackpy
   locate + link on the same frames with the same linking parameters.
4. trackpy bulk_water (shared data): ensemble D, scopeflow vs the trackpy walkthrough.

Run: ``OMP_NUM_THREADS=1 python benchmarks/track_accuracy.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


def _tp():
    import trackpy as tp

    tp.quiet()
    return tp


def spots_section(n_spots: int) -> None:
    from scopeflow.simulate.beads import crlb_gaussian, simulate_spots
    from scopeflow.track.localize import locate_stack

    tp = _tp()
    print(f"\n## 1. Isolated spots: σ 1.5 px, b 10 photons/px, Poisson, {n_spots} spots per N")
    print(f"{'N':>5} {'CRLB':>7} | {'method':<26} {'RMSE px':>8} {'RMSE/CRLB':>9} "
          f"{'bias px':>8} {'misses':>6} {'ms/spot':>8}")
    for n_ph in (200, 1000, 5000):
        stack, truth = simulate_spots(n_spots, n_ph, seed=0)
        crlb = crlb_gaussian(1.5, n_ph, 10, 15)
        rows = []
        for name, kw in (("scopeflow xcorr+MLE", {}), ("scopeflow xcorr only", {"refine": "xcorr"})):
            t0 = time.perf_counter()
            locs = locate_stack(stack, **kw)
            dt = time.perf_counter() - t0
            best = locs.loc[locs.groupby("frame")["score"].idxmax()].set_index("frame")
            rows.append((name, best[["y", "x"]], dt))
        for diam in (7, 9, 11):  # trackpy at each diameter; its best is summarised below
            t0 = time.perf_counter()
            feats = []
            for i, fr in enumerate(stack):
                f = tp.locate(fr, diam)
                if len(f):
                    f = f.loc[[f["mass"].idxmax()]]
                    f["frame"] = i
                    feats.append(f)
            dt = time.perf_counter() - t0
            tpf = pd.concat(feats).set_index("frame")
            rows.append((f"trackpy.locate d={diam}", tpf[["y", "x"]], dt))
        ratios = {}
        for name, est, dt in rows:
            m = truth.set_index("frame").join(est.add_suffix("_f"), how="left")
            e = np.concatenate([m.y_f - m.y, m.x_f - m.x])
            miss = int(np.sum(~np.isfinite(e) | (np.abs(np.nan_to_num(e, nan=9)) > 2)))
            e = e[np.isfinite(e) & (np.abs(e) <= 2)]
            rmse = float(np.sqrt(np.mean(e**2)))
            ratios[name] = rmse / crlb
            print(f"{n_ph:>5} {crlb:7.4f} | {name:<26} {rmse:8.4f} {rmse / crlb:9.3f} "
                  f"{e.mean():+8.4f} {miss:>6} {1000 * dt / n_spots:8.2f}")
        best = min((k for k in ratios if k.startswith("trackpy")), key=ratios.get)
        print(f"{n_ph:>5} SUMMARY: scopeflow RMSE/CRLB {ratios['scopeflow xcorr+MLE']:.3f}, "
              f"trackpy at its best diameter ({best}) {ratios[best]:.3f}")


def _f1_by_frame(locs, truth, n):
    from scopeflow.track.beadnet import evaluate_detection

    pred = [locs.loc[locs.frame == f, ["y", "x"]].to_numpy() for f in range(n)]
    tru = [truth.loc[truth.frame == f, ["y", "x"]].to_numpy() for f in range(n)]
    return evaluate_detection(pred, tru)


def _trackpy_tuned(movie, truth, diameter, invert):
    """trackpy.locate on every frame, minmass chosen to maximise F1 against the truth."""
    tp = _tp()
    t0 = time.perf_counter()
    feats = tp.batch(list(movie), diameter, invert=invert, minmass=0, processes=1)
    dt = time.perf_counter() - t0
    best = None
    for q in np.linspace(0, 95, 39):
        mm = np.percentile(feats["mass"], q)
        m = _f1_by_frame(feats.loc[feats["mass"] >= mm], truth, len(movie))
        if best is None or m["f1"] > best[0]["f1"]:
            best = (m, mm)
    return best[0], best[1], dt


def detection_section(n_frames: int) -> None:
    from scopeflow.simulate.beads import simulate_movie
    from scopeflow.track.localize import locate_stack

    print(f"\n## 2. Detection on simulated movies ({n_frames} frames 256², 100 beads each, "
          "match ≤ 2 px)")
    print(f"{'setting':<34} | {'method':<38} {'F1':>6} {'prec':>6} {'recall':>6} "
          f"{'RMSE px':>8} {'s':>6}")
    settings = [
        ("brightfield rings σ1.5 b300 c0.3", dict(profile="ring", background=300,
                                                 photons=0.3 * 300 * 2 * np.pi * 1.5**2),
         "template", 11, True),
        ("Gaussian N=200 b10 σ1.5", dict(profile="gaussian", photons=200, background=10),
         "gaussian", 9, False),
        ("Gaussian N=1000 b10 σ1.5", dict(profile="gaussian", photons=1000, background=10),
         "gaussian", 9, False),
    ]
    for name, kw, prof, diam, inv in settings:
        movie, truth = simulate_movie(n_frames, (256, 256), 100, 0.0, 0.1, 10.0, seed=7,
                                      enter_leave=False, read_noise=1.0, **kw)
        t0 = time.perf_counter()
        locs = locate_stack(movie, "beadnet", profile=prof)
        dt = time.perf_counter() - t0
        m = _f1_by_frame(locs, truth, n_frames)
        print(f"{name:<34} | {'scopeflow BeadNet + ' + prof:<38} {m['f1']:6.3f} "
              f"{m['precision']:6.3f} {m['recall']:6.3f} {m['rmse_px']:8.4f} {dt:6.1f}")
        t0 = time.perf_counter()
        locs = locate_stack(movie, None, profile=prof if prof == "gaussian" else "ring")
        dt = time.perf_counter() - t0
        m = _f1_by_frame(locs, truth, n_frames)
        print(f"{'':<34} | {'scopeflow matched filter + ' + prof:<38} {m['f1']:6.3f} "
              f"{m['precision']:6.3f} {m['recall']:6.3f} {m['rmse_px']:8.4f} {dt:6.1f}")
        m, mm, dt = _trackpy_tuned(movie, truth, diam, inv)
        label = f"trackpy d={diam}{' inv' if inv else ''} minmass*={mm:.0f}"
        print(f"{'':<34} | {label:<38} {m['f1']:6.3f} {m['precision']:6.3f} "
              f"{m['recall']:6.3f} {m['rmse_px']:8.4f} {dt:6.1f}")


def diffusion_section(n_frames: int, n_beads: int, model) -> None:
    from scopeflow.simulate.beads import simulate_movie
    from scopeflow.track.analysis import track_pipeline
    from scopeflow.track.compare import compare_tracks
    from scopeflow.track.link import filter_stubs, link
    from scopeflow.track.motion import (
        compute_drift,
        ensemble_msd,
        fit_diffusion,
        msd_fit_error,
        subtract_drift,
    )
    from scopeflow.track.localize import locate_stack

    tp = _tp()
    D, px, fps, min_len, lags = 0.1, 0.1, 20.0, 10, "auto"
    shape = (256, 256)
    movie, truth = simulate_movie(n_frames, shape, n_beads, D, px, fps, photons=1000,
                                  background=10, seed=11, enter_leave=True)
    print(f"\n## 3. Known-D movie: D = {D} µm²/s, {px} µm/px, {fps} fps, {n_frames} frames "
          f"{shape[0]}², ~{n_beads} beads (enter/leave), N 1000, b 10; link search 4 px, "
          f"memory 3, tracks < {min_len} frames dropped, fit lags '{lags}'")
    tt = filter_stubs(truth, min_len)
    lengths = tt.groupby("particle")["frame"].size().to_numpy()
    true_fit = fit_diffusion(ensemble_msd(tt, px, fps, 30), lags, lengths=lengths)
    ep_um = 0.07 * px  # ≈ CRLB of N = 1000 on 10 photons/px, σ 1.5 px
    se = msd_fit_error(lengths, D, ep_um, 1 / fps, true_fit.n_lags)
    se10 = msd_fit_error(lengths, D, ep_um, 1 / fps, 10)
    print(f"{len(lengths)} true tracks ≥ {min_len} frames, {int(lengths.sum())} positions; "
          f"expected relative s.e. of D (exact, MSD covariance): {100 * se:.2f} % with "
          f"{true_fit.n_lags} fitted lags ({100 * se10:.2f} % with 10)")

    def row(label, fit, q_all, q_kept):
        print(f"{label:<40} {fit.D_um2_s:8.4f} {100 * (fit.D_um2_s / D - 1):+8.2f} "
              f"{(fit.D_um2_s / D - 1) / se:+6.1f} {fit.n_lags:>5} "
              f"{q_all['fragments_per_track']:>9.3f} {q_all['broken']:>7} "
              f"{q_kept['broken']:>8} {q_kept['merged']:>7}")

    print(f"{'method':<40} {'D µm²/s':>8} {'err %':>8} {'err/se':>6} {'lags':>5} "
          f"{'frag/bead':>9} {'broken':>7} {'broken≥L':>8} {'merged':>7}")
    q0 = {"fragments_per_track": 1.0, "broken": 0, "merged": 0}
    row("truth positions (same fit)", true_fit, q0, q0)
    locs = locate_stack(movie, model)
    res = track_pipeline(locs, px, fps, search_range_px=4, memory=3, min_length=min_len,
                         fit_lags=lags)
    q_all = compare_tracks(link(locs, 4, memory=3), truth)
    row(f"scopeflow ({'matched filter' if model is None else model}) + MLE", res["fit"],
        q_all, compare_tracks(res["tracks"], truth))
    t_nodrift = track_pipeline(locs, px, fps, search_range_px=4, memory=3, min_length=min_len,
                               fit_lags=lags, drift=False)
    row("  same, no drift subtraction", t_nodrift["fit"], q_all, q_all)
    legacy = track_pipeline(locs, px, fps, search_range_px=4, memory=3, min_length=min_len,
                            fit_lags=10)
    row("  same, 10 fitted lags", legacy["fit"], q_all, q_all)
    auto = track_pipeline(locs, px, fps, search_range_px=4, memory=3, fit_lags=lags)
    row(f"  same, min_length auto (= {auto['summary']['min_length']})", auto["fit"], q_all,
        compare_tracks(auto["tracks"], truth))
    feats = tp.batch(list(movie), 9, minmass=0, processes=1)
    # the minmass that best separates beads from noise on this movie (tuned on truth)
    m_best, mm = None, 0.0
    for qq in np.linspace(0, 95, 20):
        cut = np.percentile(feats["mass"], qq)
        m = _f1_by_frame(feats.loc[feats["mass"] >= cut], truth, n_frames)
        if m_best is None or m["f1"] > m_best["f1"]:
            m_best, mm = m, cut
    feats = feats.loc[feats["mass"] >= mm]
    t_all = tp.link(feats, 4, memory=3).reset_index(drop=True)
    q_all = compare_tracks(t_all, truth)
    t = tp.filter_stubs(t_all, min_len).reset_index(drop=True)
    q = compare_tracks(t, truth)
    corr = subtract_drift(t, compute_drift(t))
    for label, msd in (
        ("trackpy locate d=9 (tuned) + link", ensemble_msd(corr, px, fps, 30)),
        ("  same, our MSD drift correction", ensemble_msd(corr, px, fps, 30,
                                                          drift_subtracted=True)),
    ):
        row(label, fit_diffusion(msd, lags), q_all, q)
    print("frag/bead: linked tracks per true trajectory before dropping short tracks "
          "(1 = never broken); broken = Σ(fragments − 1) before / after dropping")


def bulk_water_section() -> None:
    from scopeflow.track import read_frames
    from scopeflow.track.analysis import track_pipeline
    from scopeflow.track.localize import locate_stack

    path = SHARED / "trackpy_bulk_water" / "frames"
    print("\n## 4. trackpy bulk_water (30 frames, 100/285 µm/px, 24 fps; expected A = 4D ≈ "
          "1.60–1.66 µm²/s)")
    if not path.is_dir():
        print(f"skipped: {path} not found (set SCOPEFLOW_SHARED_DATA)")
        return
    tp = _tp()
    frames = read_frames(path)
    mpp, fps = 100 / 285, 24.0
    f = tp.batch(list(frames), 11, invert=True, minmass=20, processes=1)
    t = tp.link(f, 5, memory=3)
    t = tp.filter_stubs(t, 25)
    d = tp.compute_drift(t)
    tm = tp.subtract_drift(t.copy(), d)
    em = tp.emsd(tm, mpp, fps)
    pw = tp.utils.fit_powerlaw(em, plot=False)
    n_tp, a_tp = float(pw["n"].iloc[0]), float(pw["A"].iloc[0])
    print(f"{'method':<40} {'feat/frame':>10} {'tracks':>7} {'D µm²/s':>8} {'A=4D':>7} "
          f"{'exponent':>8}")
    print(f"{'trackpy walkthrough (fit_powerlaw, all lags)':<40} "
          f"{len(f) / len(frames):10.1f} {t['particle'].nunique():>7} {a_tp / 4:8.4f} "
          f"{a_tp:7.3f} {n_tp:8.3f}")
    for model, label in (("beadnet", "scopeflow BeadNet + xcorr/MLE"),
                         (None, "scopeflow matched filter + xcorr/MLE")):
        locs = locate_stack(frames, model)
        res = track_pipeline(locs, mpp, fps, search_range_px=5, memory=3)
        old = track_pipeline(locs, mpp, fps, search_range_px=5, memory=3, min_length=25)
        fit = res["fit"]
        print(f"{label + ' (linear, 10 lags)':<40} {len(locs) / len(frames):10.1f} "
              f"{res['summary']['n_tracks']:>7} {fit.D_um2_s:8.4f} {4 * fit.D_um2_s:7.3f} "
              f"{fit.exponent:8.3f}   offset {fit.offset_um2:+.4f} µm²; min_length auto "
              f"(= {res['summary']['min_length']}); with 25: {old['summary']['n_tracks']} "
              f"tracks, D {old['fit'].D_um2_s:.4f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer spots/frames (smoke run)")
    ap.add_argument("--model", default="none",
                    help="detector of the known-D section: none (matched filter, the default "
                         "of config.yaml) or beadnet")
    ap.add_argument("--only", choices=["spots", "detection", "diffusion", "bulk_water"],
                    help="run one section")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    print("# scopeflow bead tracking accuracy vs trackpy", flush=True)
    def run(name: str) -> bool:
        return a.only in (None, name)

    if run("spots"):
        spots_section(100 if a.quick else 500)
    if run("detection"):
        detection_section(2 if a.quick else 8)
    model = None if a.model == "none" else a.model
    if run("diffusion"):
        diffusion_section(60 if a.quick else 400, 40 if a.quick else 150, model)
    if run("bulk_water"):
        bulk_water_section()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
