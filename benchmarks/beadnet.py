"""BeadNet vs the matched filter as the candidate detector, in the same run.

Both detectors feed the same placement (cross-correlation with the movie's own template,
then the maximum-likelihood fit, ``profile="auto"``); only where the candidates come from
differs: the matched filter of each bead class (``track.model: none``) or BeadNet's
centre map on the frame reduced to the beads' scale (``track.model: beadnet``).

Prints
1. Per appearance class of ``benchmarks/bead_appearances.py`` (simulated, 256², 25 beads,
   steps 0.7 px, same seeds): fraction of bead-frames with exactly one detection within the
   bead radius, detection F1 (match ≤ r/4), % of true tracks unbroken, RMSE (px), seconds,
   and the time ratio matched filter / BeadNet (> 1: BeadNet faster).
2. trackpy_bulk_water (30 real frames): % of trackpy's walkthrough features matched within
   1 px, % extra, ensemble D vs Stokes–Einstein, seconds.
3. Speed on one core: the network's forward pass (ONNX Runtime and torch) and the whole
   localisation per frame, BeadNet vs the matched filter, on bulk_water (424×640, beads
   ~9 px: no reduction) and on a 512² movie of 30 px rings (reduced ×4).

Run: ``OMP_NUM_THREADS=1 python benchmarks/beadnet.py [--quick] [--detector none|beadnet]
[--only appearance|bulk_water|speed]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bead_appearances as ba  # noqa: E402  (the classes, scoring and data paths)

DETECTORS = ("none", "beadnet")


def _locate(movie, detector, net, **kw):
    from scopeflow.track.localize import locate_stack

    t0 = time.perf_counter()
    locs = locate_stack(movie, model=None if detector == "none" else net, workers=1, **kw)
    return locs, time.perf_counter() - t0


def appearance_section(n_frames: int, detectors, net) -> None:
    from scopeflow.simulate.bead_appearance import simulate_appearance_movie

    print(f"\n## 1. Appearance classes ({n_frames} frames 256², 25 beads, match ≤ r/4)")
    print(f"{'class':<34} | {'detector':<9} {'one/bead':>8} {'F1':>6} {'unbroken%':>9} "
          f"{'RMSE px':>8} {'s':>6} {'time none/beadnet':>17}")
    worst = {d: [1.0, 1.0] for d in detectors}
    for label, kind, diam, kw in ba.CLASSES:
        movie, truth = simulate_appearance_movie(kind, n_frames, (256, 256), 25, diam, seed=5,
                                                 **kw)
        times = {}
        for det in detectors:
            locs, dt = _locate(movie, det, net)
            times[det] = dt
            sc = ba.score_frames(locs, truth, n_frames)
            unb = ba.unbroken_tracks(locs, truth, sc["pairs"], 4.0)
            worst[det] = [min(worst[det][0], sc["one"]), min(worst[det][1], sc["f1"])]
            ratio = (f"{times['none'] / times['beadnet']:17.2f}"
                     if det == "beadnet" and "none" in times else "")
            print(f"{label if det == detectors[0] else '':<34} | {det:<9} "
                  f"{100 * sc['one']:7.1f}% {sc['f1']:6.3f} {unb:9.1f} {sc['rmse']:8.4f} "
                  f"{dt:6.1f} {ratio}")
    for det, (one, f1) in worst.items():
        print(f"worst class, {det}: one/bead {100 * one:.1f} %, F1 {f1:.3f}")


def bulk_water_section(detectors, net) -> None:
    from scipy.spatial import cKDTree

    from scopeflow.track import read_frames
    from scopeflow.track.analysis import track_pipeline

    path = ba.SHARED / "trackpy_bulk_water" / "frames"
    print("\n## 2. trackpy_bulk_water vs trackpy's walkthrough (30 frames)")
    if not path.is_dir():
        print(f"skipped: {path} not found (set SCOPEFLOW_SHARED_DATA)")
        return
    tp = ba._tp()
    frames = read_frames(path)
    f = tp.batch(list(frames), 11, invert=True, minmass=20, processes=1)
    print(f"{'detector':<9} {'feat/frame':>10} {'matched ≤1px':>12} {'extra':>7} "
          f"{'D µm²/s':>8} {'vs S-E':>7} {'s':>6}")
    for det in detectors:
        locs, dt = _locate(frames, det, net)
        m = n_sf = 0
        for i in range(len(frames)):
            a = f[f["frame"] == i]
            b = locs.loc[locs["frame"] == i, ["y", "x"]].to_numpy()
            n_sf += len(b)
            if len(b):
                d, _ = cKDTree(b).query(a[["y", "x"]].to_numpy())
                m += int((d <= 1).sum())
        res = track_pipeline(locs, 100 / 285, 24.0, search_range_px=5, memory=3, min_length=25)
        dd = res["fit"].D_um2_s
        print(f"{det:<9} {n_sf / len(frames):10.1f} {100 * m / len(f):11.1f}% "
              f"{100 * (n_sf - m) / len(f):6.1f}% {dd:8.4f} "
              f"{100 * (dd / ba.D_STOKES_EINSTEIN - 1):+6.1f}% {dt:6.1f}")


def _median_time(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def speed_section(net_path, reps: int) -> None:
    from scopeflow.models.beadnet import BeadNet, scale_for_diameter
    from scopeflow.simulate.bead_appearance import simulate_appearance_movie
    from scopeflow.track import read_frames
    from scopeflow.track.localize import locate_stack

    print("\n## 3. Speed, one core (ms per frame, medians; ratio > 1: BeadNet path faster)")
    movies = []
    path = ba.SHARED / "trackpy_bulk_water" / "frames"
    if path.is_dir():
        movies.append(("bulk_water 424×640", read_frames(path)[:10]))
    rings, _ = simulate_appearance_movie("brightfield_bright", 10, (512, 512), 60, 30.0, seed=2)
    movies.append(("30 px rings 512²", rings))
    nets = {"onnx": BeadNet.load(net_path, backend="onnx", threads=1),
            "torch": BeadNet.load(net_path, backend="torch", threads=1)}
    print(f"{'movie':<20} {'scale':>5} {'fwd onnx':>9} {'fwd torch':>9} {'beadnet path':>12} "
          f"{'matched filter':>14} {'ratio':>6}")
    for name, frames in movies:
        plan = locate_stack(frames[:6], workers=1)
        fixed = dict(classes=plan.attrs["classes"])
        d = max(2 * c["radius_px"] for c in plan.attrs["classes"])
        s = scale_for_diameter(d)
        fwd = {}
        for k, n in nets.items():
            n.predict(frames[0], s)
            fwd[k] = _median_time(lambda n=n: n.predict(frames[0], s), reps)
        locate_stack(frames[:1], model=nets["onnx"], workers=1, **fixed)  # warm-up
        locate_stack(frames[:1], workers=1, **fixed)
        t_net = _median_time(lambda: locate_stack(frames, model=nets["onnx"], workers=1,
                                                  **fixed), reps) / len(frames)
        t_mf = _median_time(lambda: locate_stack(frames, workers=1, **fixed), reps) / len(frames)
        print(f"{name:<20} {s:>5} {1e3 * fwd['onnx']:9.1f} {1e3 * fwd['torch']:9.1f} "
              f"{1e3 * t_net:12.1f} {1e3 * t_mf:14.1f} {t_mf / t_net:6.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 frames per class (smoke run)")
    ap.add_argument("--detector", choices=DETECTORS, action="append",
                    help="detector(s) to measure (repeatable; default both)")
    ap.add_argument("--only", choices=["appearance", "bulk_water", "speed"], action="append")
    ap.add_argument("--weights", help="BeadNet weights (.pt with its card; default: shipped)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from scopeflow.models.beadnet import BeadNet, default_weights

    detectors = tuple(args.detector or DETECTORS)
    wpath = args.weights or default_weights()
    net = BeadNet.load(wpath, threads=1)
    print(f"BeadNet: {net}")
    sections = args.only or ["appearance", "bulk_water", "speed"]
    t0 = time.perf_counter()
    if "appearance" in sections:
        appearance_section(10 if args.quick else 30, detectors, net)
    if "bulk_water" in sections:
        bulk_water_section(detectors, net)
    if "speed" in sections:
        speed_section(wpath, 3 if args.quick else 5)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
