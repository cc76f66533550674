"""Bead tracking on every bead appearance: scopeflow (profile auto) beside trackpy.

Prints
1. Realism: the mean radial profile of the beads of the shared real movies
   (trackpy_bulk_water, trackpy_reference_sequence; around trackpy's brighter features) and
   the best-fitting simulated profile (:func:`scopeflow.simulate.bead_appearance.fit_profile_to`):
   kind, diameter, relative rms residual; contrast and pixel noise of real vs simulated frames.
2. Per appearance class (simulated movies with truth, 256², 25 beads, Brownian steps 0.7 px):
   fraction of bead-frames with exactly one detection within the bead radius, detection F1
   (match within a quarter of the bead radius), % of true tracks unbroken after linking,
   RMSE (px), seconds; trackpy.locate beside it with the diameter scanned (odd, 0.5–1.6 ×
   the bead diameter) and minmass tuned on the truth for each, best F1 and best RMSE shown.
3. Gaussian spots (baselines §3: σ 1.5, b 10, 500 per N): RMSE/CRLB and ms/frame on one core,
   scopeflow default vs trackpy.locate(d=9).
4. trackpy_bulk_water: features vs trackpy's walkthrough recipe on the same frames
   (batch(11, invert, minmass 20)): % of its features matched within 1 px, % extra; all
   features and the walkthrough's well-formed ones (mass > 50, size < 2.6, ecc < 0.3);
   ensemble D vs Stokes–Einstein (A = 4D ≈ 1.66 µm²/s, D ≈ 0.415) with its bootstrap s.e. and
   95 % interval over tracks (default ``min_length`` auto; the former fixed 25 beside it);
   trackpy's own features through the same linker and MSD fit.
5. Speed on one core (``workers=1``) beside trackpy.locate (its default numba engine), on
   trackpy_bulk_water (``locate(f, 11, invert=True, minmass=20)``) and a simulated movie of
   Gaussian spots (30 frames 512², 400 beads σ 1.5 px, ``locate(f, 9, minmass=60)``):
   per frame with the bead model held fixed (the two tools alternated frame by frame, medians)
   and the whole movie as a user runs it (bead model estimated in the run), wall and CPU
   (process) time; ratio = trackpy's time / scopeflow's (> 1: scopeflow faster).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bead_appearances.py [--quick] [--only ...]``.
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
from scipy.spatial import cKDTree

warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
D_STOKES_EINSTEIN = 1.66 / 4  # µm²/s, trackpy walkthrough (1 µm beads in water)


def stokes_einstein_um2_s(celsius: float, diameter_um: float = 1.0) -> float:
    """D = kT / (6π η r) of a sphere in water (η(T): Vogel fit 2.414e-5·10^(247.8/(T−140)) Pa·s).

    SOURCE.md gives 1-µm latex spheres in water, 24 fps, 2.85 px/µm, and no temperature: the
    walkthrough's A = 4D = 1.66 µm²/s is this formula at about 19 °C.
    """
    t = 273.15 + celsius
    eta = 2.414e-5 * 10 ** (247.8 / (t - 140.0))
    return 1.380649e-23 * t / (6 * np.pi * eta * diameter_um * 0.5e-6) * 1e12

CLASSES = [  # (label, kind, diameter(s), extra simulator options)
    ("brightfield bright centre 10 px", "brightfield_bright", 10, {}),
    ("brightfield bright centre 20 px", "brightfield_bright", 20, {}),
    ("brightfield bright centre 30 px", "brightfield_bright", 30, {}),
    ("brightfield dark centre 10 px", "brightfield_dark", 10, {}),
    ("brightfield dark centre 20 px", "brightfield_dark", 20, {}),
    ("brightfield dark centre 30 px", "brightfield_dark", 30, {}),
    ("absorbing (bulk_water-like) 6 px", "absorbing", 6, {}),
    ("defocused fluorescent 20 px", "defocused", 20, {}),
    ("Airy fluorescent 8 px", "airy", 8, {}),
    ("Gaussian fluorescent 6 px", "gaussian", 6, {}),
    ("mixed sizes 10 + 24 px", "brightfield_bright", (10, 24), {}),
    ("uneven background + dirt 20 px", "brightfield_bright", 20,
     {"uneven": 0.1, "n_dirt": 8}),
]


def _tp():
    import trackpy as tp

    tp.quiet()
    return tp


# --------------------------------------------------------------------------- scoring
def score_frames(locs: pd.DataFrame, truth: pd.DataFrame, n_frames: int) -> dict:
    """One-per-bead fraction, F1 (match ≤ r/4), RMSE and the matches (truth row → loc row)."""
    one = n_bf = tp_ = fp = fn = 0
    err, pairs = [], []
    for f in range(n_frames):
        t = truth[truth["frame"] == f]
        loc = locs[locs["frame"] == f]
        tt = t[["y", "x"]].to_numpy()
        rad = t["diameter_px"].to_numpy() / 2
        ll = loc[["y", "x"]].to_numpy()
        n_bf += len(tt)
        if not len(ll):
            fn += len(tt)
            continue
        tree = cKDTree(ll)
        for p, r in zip(tt, rad, strict=True):
            one += len(tree.query_ball_point(p, r)) == 1
        d, j = cKDTree(tt).query(ll)
        used = set()
        for k in np.argsort(d):
            if d[k] <= rad[j[k]] / 4 and j[k] not in used:
                used.add(j[k])
                tp_ += 1
                err.append(ll[k] - tt[j[k]])
                pairs.append((t.index[j[k]], loc.index[k]))
            else:
                fp += 1
        fn += len(tt) - len(used)
    prec = tp_ / max(tp_ + fp, 1)
    rec = tp_ / max(tp_ + fn, 1)
    e = np.asarray(err).reshape(-1, 2)
    return dict(one=one / max(n_bf, 1), f1=2 * prec * rec / max(prec + rec, 1e-12),
                rmse=float(np.sqrt(np.mean(e**2))) if len(e) else float("nan"), pairs=pairs)


def unbroken_tracks(locs: pd.DataFrame, truth: pd.DataFrame, pairs, search_range: float) -> float:
    """% of true tracks whose every frame is matched to one and the same linked particle."""
    from scopeflow.track.link import link

    if not len(locs):
        return 0.0
    linked = link(locs.assign(_row=locs.index), search_range, memory=0)
    pid = dict(zip(linked["_row"].to_numpy(), linked["particle"].to_numpy(), strict=True))
    got: dict[int, list] = {}
    for ti, li in pairs:
        got.setdefault(int(truth.at[ti, "particle"]), []).append(pid[li])
    n_frames = truth.groupby("particle").size()
    ok = sum(1 for p, n in n_frames.items()
             if len(got.get(p, [])) == n and len(set(got[p])) == 1)
    return 100.0 * ok / max(len(n_frames), 1)


# --------------------------------------------------------------------------- sections
def realism_section() -> None:
    from scopeflow.simulate.bead_appearance import (
        fit_profile_to,
        measured_radial_profile,
        simulate_appearance_movie,
    )
    from scopeflow.track import read_frames
    from scopeflow.track.detect import pixel_noise

    tp = _tp()
    print("\n## 1. Realism: radial profiles of real beads vs the simulator")
    print(f"{'movie':<28} {'beads':>5} {'contrast/bg':>11} {'noise/bg':>8} | best simulated "
          "profile (kind, diameter, defocus, halo) and rms residual / peak contrast")
    for name, d, mm in (("trackpy_bulk_water", 11, 20), ("trackpy_reference_sequence", 9, 140)):
        path = SHARED / name / "frames"
        if not path.is_dir():
            print(f"{name}: skipped ({path} not found; set SCOPEFLOW_SHARED_DATA)")
            continue
        fr = read_frames(path)[0]
        f = tp.locate(fr, d, invert=True, minmass=mm)
        f = f[f["mass"] > f["mass"].median()]  # the well-formed half
        _, prof = measured_radial_profile(fr, f[["y", "x"]].to_numpy(), 14)
        best = fit_profile_to(prof, diameters=np.arange(4.0, 16.01, 0.5))
        bg = float(np.median(fr))
        print(f"{name:<28} {len(f):5d} {abs(prof[0]) / bg:11.3f} {pixel_noise(fr) / bg:8.4f} | "
              f"{best['kind']} d={best['diameter_px']:.1f} px defocus={best['defocus']:.2f} "
              f"halo={best['halo']:.3f}: rms {100 * best['rel_rms']:.1f} % of the contrast")
        print(f"{'':<28} measured profile r=0..13 (ADU - median): "
              + " ".join(f"{v:+.1f}" for v in prof))
    m, _ = simulate_appearance_movie("absorbing", 1, (256, 256), 25, 6.0, seed=0)
    bg = float(np.median(m[0]))
    print(f"{'simulated absorbing 6 px':<28} {'':>5} {0.15:11.3f} {pixel_noise(m[0]) / bg:8.4f} | "
          "(simulator defaults: contrast 0.15, 2000 photons/px, 8-bit)")


def _trackpy_scan(movie, truth, diam, invert, n_frames):
    """trackpy.locate at each odd diameter; minmass tuned on the truth for the best F1."""
    tp = _tp()
    dmax = float(np.max(diam))
    lo = max(3, int(0.5 * float(np.min(diam))) | 1)
    hi = int(1.6 * dmax) | 1
    rows = []
    for dd in range(lo, hi + 1, 2 if hi - lo < 16 else 4):
        t0 = time.perf_counter()
        f = tp.batch(list(movie), dd, invert=invert, minmass=0, processes=1)
        dt = time.perf_counter() - t0
        best = None
        for q in np.linspace(0, 95, 20):
            mm = np.percentile(f["mass"], q) if len(f) else 0
            sc = score_frames(f[f["mass"] >= mm], truth, n_frames)
            if best is None or sc["f1"] > best["f1"]:
                best = dict(sc, mm=mm)
        rows.append(dict(d=dd, dt=dt, **best))
    return rows


def appearance_section(n_frames: int, with_trackpy: bool = True,
                       with_beadnet: bool = False) -> None:
    from scopeflow.simulate.bead_appearance import simulate_appearance_movie
    from scopeflow.track.localize import locate_stack

    print(f"\n## 2. Appearance classes ({n_frames} frames 256², 25 beads, steps 0.7 px; "
          "match ≤ r/4; trackpy diameter scanned, minmass tuned on the truth)")
    print(f"{'class':<34} | {'method':<32} {'one/bead':>8} {'F1':>6} {'unbroken%':>9} "
          f"{'RMSE px':>8} {'s':>6}")
    for label, kind, diam, kw in CLASSES:
        movie, truth = simulate_appearance_movie(kind, n_frames, (256, 256), 25, diam, seed=5,
                                                 **kw)
        t0 = time.perf_counter()
        locs = locate_stack(movie, workers=1)
        dt = time.perf_counter() - t0
        sc = score_frames(locs, truth, n_frames)
        unb = unbroken_tracks(locs, truth, sc["pairs"], 4.0)
        cls = locs.attrs.get("classes", [])
        what = "+".join(f"{c['mode'][:4]} r{c['radius_px']:.0f}" for c in cls)
        print(f"{label:<34} | {'scopeflow auto (' + what + ')':<32} {100 * sc['one']:7.1f}% "
              f"{sc['f1']:6.3f} {unb:9.1f} {sc['rmse']:8.4f} {dt:6.1f}")
        if with_beadnet:  # the shipped U-Net as candidate detector (profile gaussian)
            t0 = time.perf_counter()
            lb = locate_stack(movie, model="beadnet", workers=1)
            dt = time.perf_counter() - t0
            sb = score_frames(lb, truth, n_frames)
            ub = unbroken_tracks(lb, truth, sb["pairs"], 4.0)
            print(f"{'':<34} | {'scopeflow BeadNet':<32} {100 * sb['one']:7.1f}% "
                  f"{sb['f1']:6.3f} {ub:9.1f} {sb['rmse']:8.4f} {dt:6.1f}")
        if not with_trackpy:
            continue
        invert = kind in ("brightfield_dark", "absorbing")
        rows = _trackpy_scan(movie, truth, diam, invert, n_frames)
        bf = max(rows, key=lambda r: (r["f1"], -r["rmse"]))
        good = [r for r in rows if r["f1"] >= 0.9] or rows
        br = min(good, key=lambda r: r["rmse"])
        for tag, r in (("best F1", bf), ("best RMSE", br)):
            name = f"trackpy d={r['d']} {tag}" + (" inv" if invert else "")
            print(f"{'':<34} | {name:<32} "
                  f"{100 * r['one']:7.1f}% {r['f1']:6.3f} {'':>9} {r['rmse']:8.4f} "
                  f"{r['dt']:6.1f}")


def spots_section(n_spots: int) -> None:
    from scopeflow.simulate.beads import crlb_gaussian, simulate_spots
    from scopeflow.track.localize import locate_stack

    tp = _tp()
    print(f"\n## 3. Gaussian spots (σ 1.5 px, b 10, {n_spots} per N, one core)")
    print(f"{'N':>5} {'CRLB':>7} | {'method':<26} {'RMSE/CRLB':>9} {'ms/frame':>8} "
          f"{'speed vs tp':>11}")
    for n_ph in (200, 1000, 5000):
        stack, truth = simulate_spots(n_spots, n_ph, seed=0)
        crlb = crlb_gaussian(1.5, n_ph, 10, 15)
        t0 = time.perf_counter()
        locs = locate_stack(stack, workers=1)
        dt_sf = (time.perf_counter() - t0) / n_spots
        best = locs.loc[locs.groupby("frame")["snr"].idxmax()].set_index("frame")
        tr = truth.set_index("frame").loc[best.index]
        e = np.concatenate([best["y"] - tr["y"], best["x"] - tr["x"]])
        tp.locate(stack[0], 9)  # warm-up (numba JIT)
        t0 = time.perf_counter()
        f = tp.batch(list(stack), 9, processes=1)
        dt_tp = (time.perf_counter() - t0) / n_spots
        fb = f.loc[f.groupby("frame")["mass"].idxmax()].set_index("frame")
        tt = truth.set_index("frame").loc[fb.index]
        e_tp = np.concatenate([fb["y"] - tt["y"], fb["x"] - tt["x"]])
        print(f"{n_ph:5d} {crlb:7.4f} | {'scopeflow auto':<26} "
              f"{np.sqrt(np.mean(e**2)) / crlb:9.3f} {1e3 * dt_sf:8.2f} "
              f"{dt_tp / dt_sf:10.2f}x")
        print(f"{'':5} {'':7} | {'trackpy.locate d=9':<26} "
              f"{np.sqrt(np.mean(e_tp**2)) / crlb:9.3f} {1e3 * dt_tp:8.2f}")


def bulk_water_section() -> None:
    from scopeflow.track import read_frames
    from scopeflow.track.analysis import track_pipeline
    from scopeflow.track.localize import locate_stack

    path = SHARED / "trackpy_bulk_water" / "frames"
    print("\n## 4. trackpy_bulk_water vs trackpy's walkthrough recipe (same 30 frames)")
    if not path.is_dir():
        print(f"skipped: {path} not found (set SCOPEFLOW_SHARED_DATA)")
        return
    tp = _tp()
    frames = read_frames(path)
    f = tp.batch(list(frames), 11, invert=True, minmass=20, processes=1)
    gate = (f["mass"] > 50) & (f["size"] < 2.6) & (f["ecc"] < 0.3)
    print("Stokes–Einstein, 1.000 µm sphere in water: " + ", ".join(
        f"{c} °C {stokes_einstein_um2_s(c):.3f}" for c in (18, 19, 20, 22, 25))
        + f" µm²/s; reference used below {D_STOKES_EINSTEIN:.3f} (walkthrough A = 1.66)")
    print(f"trackpy walkthrough: {len(f) / len(frames):.1f} features/frame "
          f"({gate.mean() * 100:.0f} % well-formed: mass > 50, size < 2.6, ecc < 0.3)")
    print("D: link (search range 5 px, memory 3), tracks of >= min_length frames (default "
          "auto = fit_lags 10 + 1 = 11), drift, MSD, 10-lag fit; the former fixed min_length "
          "25 (the walkthrough's) beside it")
    print(f"{'scopeflow options':<34} {'feat/frame':>10} {'matched ≤1px':>12} {'extra':>7} "
          f"{'matched (well-formed)':>21} {'D µm²/s':>8} {'vs S-E':>7} {'s':>5} "
          f"{'D s.e. (95 % interval)':>24} {'min_length 25: D, vs S-E':>25}")

    def d_row(locs):
        res = track_pipeline(locs, 100 / 285, 24.0, search_range_px=5, memory=3)
        s = res["summary"]
        old = track_pipeline(locs, 100 / 285, 24.0, search_range_px=5, memory=3,
                             min_length=25)["summary"]["D_um2_s"]
        return s["D_um2_s"], (f"{s['D_se_um2_s']:.4f} ({s['D_ci_low_um2_s']:.3f}-"
                              f"{s['D_ci_high_um2_s']:.3f})"), \
            f"{old:.4f} {100 * (old / D_STOKES_EINSTEIN - 1):+.1f}%"

    for label, kw in (("default (nothing given)", {}),
                      ("--diameter-px 11 --minmass 20", dict(diameter_px=11, minmass=20))):
        t0 = time.perf_counter()
        locs = locate_stack(frames, workers=1, **kw)
        dt = time.perf_counter() - t0
        m = m_good = n_sf = 0
        for i in range(len(frames)):
            a = f[f["frame"] == i]
            b = locs.loc[locs["frame"] == i, ["y", "x"]].to_numpy()
            n_sf += len(b)
            if not len(b):
                continue
            d, _ = cKDTree(b).query(a[["y", "x"]].to_numpy())
            m += int((d <= 1).sum())
            m_good += int((d[gate[a.index].to_numpy()] <= 1).sum())
        dd, ci, old = d_row(locs)
        print(f"{label:<34} {n_sf / len(frames):10.1f} {100 * m / len(f):11.1f}% "
              f"{100 * (n_sf - m) / len(f):6.1f}% {100 * m_good / max(gate.sum(), 1):20.1f}% "
              f"{dd:8.4f} {100 * (dd / D_STOKES_EINSTEIN - 1):+6.1f}% {dt:5.1f} {ci:>24} "
              f"{old:>25}")
    dd, ci, old = d_row(f[["frame", "y", "x"]])
    print(f"{'trackpy features, same linker/MSD':<34} {len(f) / len(frames):10.1f} {'':>12} "
          f"{'':>7} {'':>21} {dd:8.4f} {100 * (dd / D_STOKES_EINSTEIN - 1):+6.1f}% {'':>5} "
          f"{ci:>24} {old:>25}")


def _timed(fn):
    a, b = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - a, time.process_time() - b


def speed_section(reps: int) -> None:
    from scopeflow.simulate.beads import simulate_movie
    from scopeflow.track import read_frames
    from scopeflow.track.localize import locate_stack

    tp = _tp()
    print("\n## 5. Speed, one core (workers=1), trackpy.locate in the same run")
    movies = []
    path = SHARED / "trackpy_bulk_water" / "frames"
    if path.is_dir():
        movies.append(("bulk_water", read_frames(path), dict(diameter=11, invert=True,
                                                             minmass=20),
                       [("default (nothing given)", {}),
                        ("--diameter-px 11 --minmass 20", dict(diameter_px=11, minmass=20))]))
    else:
        print(f"bulk_water skipped: {path} not found (set SCOPEFLOW_SHARED_DATA)")
    sim, _ = simulate_movie(30, (512, 512), 400, 0.4, 0.1, 10.0, photons=1000.0, seed=3,
                            enter_leave=False)
    movies.append(("Gaussian spots", sim, dict(diameter=9, minmass=60),
                   [("default (nothing given)", {})]))
    print(f"{'movie':<15} {'scopeflow':<28} {'row':<22} {'ms/frame':>9} {'CPU ms':>7} "
          f"{'tp ms':>7} {'tp CPU':>7} {'ratio':>6} {'CPU ratio':>9}")
    for name, frames, tp_kw, variants in movies:
        n = len(frames)
        tp.locate(frames[0], **tp_kw)  # warm-up (numba JIT)
        for label, kw in variants:
            plan = locate_stack(frames[:6], workers=1, **kw)
            fixed = dict(kw, classes=plan.attrs["classes"])
            locate_stack(frames[:2], workers=1, **fixed)  # warm-up
            w_tp, c_tp, w_sf, c_sf = [], [], [], []
            for i in range(n):  # per frame, alternated
                w, c = _timed(lambda i=i: tp.locate(frames[i], **tp_kw))
                w_tp.append(w)
                c_tp.append(c)
                w, c = _timed(lambda i=i: locate_stack(frames[i:i + 1], workers=1, **fixed))
                w_sf.append(w)
                c_sf.append(c)
            rows = [("per frame, model fixed", np.median(w_sf), np.median(c_sf),
                     np.median(w_tp), np.median(c_tp))]
            W = [[], [], [], []]
            for _ in range(reps):  # whole movie as a user runs it, alternated
                w, c = _timed(lambda: [tp.locate(f, **tp_kw) for f in frames])
                W[0].append(w / n)
                W[1].append(c / n)
                w, c = _timed(lambda kw=kw: locate_stack(frames, workers=1, **kw))
                W[2].append(w / n)
                W[3].append(c / n)
            rows.append(("whole movie (+ model)", np.median(W[2]), np.median(W[3]),
                         np.median(W[0]), np.median(W[1])))
            for row, ws, cs, wt, ct in rows:
                print(f"{name:<15} {label:<28} {row:<22} {1e3 * ws:9.1f} {1e3 * cs:7.1f} "
                      f"{1e3 * wt:7.1f} {1e3 * ct:7.1f} {wt / ws:6.2f} {ct / cs:9.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames/spots (smoke run)")
    ap.add_argument("--only", choices=["realism", "appearance", "spots", "bulk_water", "speed"],
                    action="append", help="run only these sections (repeatable)")
    ap.add_argument("--no-trackpy-scan", action="store_true",
                    help="appearance section: scopeflow rows only (skip trackpy's diameter scan)")
    ap.add_argument("--beadnet", action="store_true",
                    help="appearance section: also the BeadNet detector (track.model: beadnet)")
    args = ap.parse_args(argv)
    sections = args.only or ["realism", "appearance", "spots", "bulk_water", "speed"]
    t0 = time.perf_counter()
    if "realism" in sections:
        realism_section()
    if "appearance" in sections:
        appearance_section(10 if args.quick else 30, not args.no_trackpy_scan, args.beadnet)
    if "spots" in sections:
        spots_section(100 if args.quick else 500)
    if "bulk_water" in sections:
        bulk_water_section()
    if "speed" in sections:
        speed_section(1 if args.quick else 3)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
