"""Localisation throughput (frames/s) on trackpy bulk_water: scopeflow vs trackpy.locate.

Same 30 frames (424×640, green channel), same process, 2 threads (torch; trackpy's python
engine is single-threaded numpy). Per-frame times are taken interleaved (trackpy, then
scopeflow, frame by frame) so that load from other processes hits both alike; the median
is reported. scopeflow per frame = detection + crop extraction + xcorr + MLE for all beads
of the frame with σ fixed by a pilot pass (the pilot's cost is reported separately, and the
whole-stack ``locate_stack`` time including it).

Run: ``python benchmarks/track_speed.py [--threads 2]``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


def main(argv=None) -> int:
    import argparse

    import torch
    import trackpy as tp

    from scopeflow.track import read_frames
    from scopeflow.track.beadnet import BeadNet
    from scopeflow.track.localize import locate_stack

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    threads = ap.parse_args(argv).threads
    torch.set_num_threads(threads)
    tp.quiet()
    path = SHARED / "trackpy_bulk_water" / "frames"
    if not path.is_dir():
        print(f"skipped: {path} not found (set SCOPEFLOW_SHARED_DATA)")
        return 0
    frames = read_frames(path)
    n = len(frames)
    engine = "numba" if _has_numba() else "python"
    print(f"# localisation throughput, bulk_water {n} frames {frames.shape[1]}×{frames.shape[2]}"
          f", {threads} torch thread(s), trackpy engine={engine}")
    t0 = time.perf_counter()
    pilot = locate_stack(frames[:5])
    t_pilot = time.perf_counter() - t0
    sigma = pilot.attrs["sigma_px"]
    net = BeadNet.load(threads=threads)
    pilot_net = locate_stack(frames[:5], net)
    sigma_net = pilot_net.attrs["sigma_px"]
    # warm-up
    tp.locate(frames[0], 11, invert=True, minmass=20)
    locate_stack(frames[:1], sigma_px=sigma, pilot_frames=1)
    locate_stack(frames[:1], net, sigma_px=sigma_net, pilot_frames=1)
    tt, tm, tn, tnet = [], [], [], []
    counts = {"tp": 0, "mf": 0, "net": 0}
    for i in range(n):
        a = time.perf_counter()
        f = tp.locate(frames[i], 11, invert=True, minmass=20)
        b = time.perf_counter()
        loc = locate_stack(frames[i : i + 1], sigma_px=sigma, invert=True, pilot_frames=1)
        c = time.perf_counter()
        locn = locate_stack(frames[i : i + 1], net, sigma_px=sigma_net, pilot_frames=1)
        d = time.perf_counter()
        net(frames[i])
        e = time.perf_counter()
        tt.append(b - a)
        tm.append(c - b)
        tn.append(d - c)
        tnet.append(e - d)
        counts["tp"] += len(f)
        counts["mf"] += len(loc)
        counts["net"] += len(locn)
    t_tp, t_mf, t_n, t_net = (float(np.median(x)) for x in (tt, tm, tn, tnet))
    # whole movie, as a user runs it (scopeflow includes its pilot σ estimate); alternated,
    # best of 2 each
    w_tp, w_sf = [], []
    for _ in range(2):
        t0 = time.perf_counter()
        tp.batch(list(frames), 11, invert=True, minmass=20, processes=1)
        t1 = time.perf_counter()
        locate_stack(frames)
        t2 = time.perf_counter()
        w_tp.append((t1 - t0) / n)
        w_sf.append((t2 - t1) / n)
    whole_tp, whole = min(w_tp), min(w_sf)
    print(f"{'method':<52} {'ms/frame':>9} {'frames/s':>9} {'vs trackpy':>10} {'feat/frame':>10}")
    print(f"{'trackpy.locate(d=11, invert, minmass=20)':<52} {1000 * t_tp:9.1f} {1 / t_tp:9.2f} "
          f"{1.0:10.2f} {counts['tp'] / n:10.1f}")
    print(f"{'scopeflow matched filter + xcorr + MLE':<52} {1000 * t_mf:9.1f} {1 / t_mf:9.2f} "
          f"{t_tp / t_mf:10.2f} {counts['mf'] / n:10.1f}")
    print(f"{'whole movie: trackpy.batch':<52} {1000 * whole_tp:9.1f} {1 / whole_tp:9.2f} "
          f"{1.0:10.2f}")
    print(f"{'whole movie: scopeflow locate_stack (incl. pilot σ)':<52} {1000 * whole:9.1f} "
          f"{1 / whole:9.2f} {whole_tp / whole:10.2f}")
    print(f"{'scopeflow BeadNet + xcorr + MLE':<52} {1000 * t_n:9.1f} {1 / t_n:9.2f} "
          f"{t_tp / t_n:10.2f} {counts['net'] / n:10.1f}")
    print(f"{'  of which BeadNet forward (M2U-Net, eager CPU)':<52} {1000 * t_net:9.1f}")
    print(f"{'  refinement only (BeadNet total − forward)':<52} {1000 * (t_n - t_net):9.1f} "
          f"{1 / max(t_n - t_net, 1e-9):9.2f} {t_tp / max(t_n - t_net, 1e-9):10.2f}")
    print(f"pilot σ estimate (5 frames): {t_pilot:.2f} s; σ = {sigma:.3f} px "
          f"(BeadNet pilot σ = {sigma_net:.3f})")
    return 0


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401

        return True
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
