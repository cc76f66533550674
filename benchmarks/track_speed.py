"""Localisation throughput (frames/s): scopeflow's default path vs trackpy.locate, as ratios.

Two movies, the same frames for both tools, in one process:

* trackpy ``bulk_water`` (30 frames 424×640, green channel; dark beads), trackpy as in its
  walkthrough: ``locate(frame, 11, invert=True, minmass=20)``;
* a simulated movie (30 frames 512×512, 400 Gaussian beads σ = 1.5 px, 1000 photons,
  background 10; :func:`scopeflow.simulate.beads.simulate_movie`), trackpy
  ``locate(frame, 9, minmass=60)`` (≈ the true bead count).

trackpy runs with its default engine (numba when installed, as here; on bulk_water its pure
python engine is timed too, for reference). ``trackpy.locate`` handles one frame per call
on one core, which is how users run it (``tp.batch(..., processes=1)`` is the same loop).
scopeflow = the default path (``track.model: none``): matched filter → crops →
upsampled-DFT cross-correlation → Poisson MLE (+ crowded-bead refit), σ fixed by a pilot
pass whose cost is reported separately (and included in the "as a user runs it" row).

Rows:

* **1 core vs 1 core** – per-frame times, trackpy and scopeflow (``workers=1``) alternated
  frame by frame so that load from other processes hits both alike; medians.
* **whole movie** – trackpy's per-frame loop, scopeflow with 1 thread and with 2 threads
  (frames in parallel; the compiled kernels release the GIL), alternated A B C A B C ...
  (``--reps`` rounds), medians. "2 cores vs trackpy" compares scopeflow on 2 cores with
  trackpy.locate as users run it (one call per frame, one core).
* BeadNet (``track.model: beadnet``): forward pass per frame (torch eager as shipped,
  torch channels_last, ONNX Runtime fp32), and the whole BeadNet path, on a few frames.

Run: ``python benchmarks/track_speed.py [--reps 3] [--threads 2] [--no-beadnet]``.
Speed figures are only meaningful as ratios taken in the same run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


def _med(x) -> float:
    return float(np.median(x))


def bench_movie(name, frames, tp_kw, invert, reps, threads, python_engine=False):
    """Print the 1-core and whole-movie rows for one movie; return the key ratios."""
    import trackpy as tp

    from scopeflow.track.localize import locate_stack

    n = len(frames)
    t0 = time.perf_counter()
    pilot = locate_stack(frames[:5], invert=invert, workers=1)
    t_pilot = time.perf_counter() - t0
    sigma = pilot.attrs["sigma_px"]
    # the bead model of the pilot held fixed (profile auto: its bead classes)
    ours_kw = dict(classes=pilot.attrs["classes"], invert=invert, pilot_frames=1) \
        if "classes" in pilot.attrs else dict(sigma_px=sigma, invert=invert, pilot_frames=1)
    # warm-up (JIT caches, FFT plans)
    tp.locate(frames[0], **tp_kw)
    locate_stack(frames[:2], workers=1, **ours_kw)
    locate_stack(frames[:2], workers=threads, **ours_kw)
    if python_engine:
        tp.locate(frames[0], engine="python", **tp_kw)
    # ---- 1 core vs 1 core, frame by frame, alternated
    tt, to, tpy = [], [], []
    n_tp = n_sf = 0
    for i in range(n):
        if python_engine:
            a = time.perf_counter()
            tp.locate(frames[i], engine="python", **tp_kw)
            tpy.append(time.perf_counter() - a)
        a = time.perf_counter()
        f = tp.locate(frames[i], **tp_kw)
        b = time.perf_counter()
        loc = locate_stack(frames[i : i + 1], workers=1, **ours_kw)
        c = time.perf_counter()
        tt.append(b - a)
        to.append(c - b)
        n_tp += len(f)
        n_sf += len(loc)
    t_tp, t_sf = _med(tt), _med(to)
    # ---- whole movie: trackpy loop, ours 1 thread, ours `threads` threads; alternated
    w_tp, w_1, w_n, w_user = [], [], [], []
    for _ in range(reps):
        a = time.perf_counter()
        for fr in frames:
            tp.locate(fr, **tp_kw)
        b = time.perf_counter()
        locate_stack(frames, workers=1, **ours_kw)
        c = time.perf_counter()
        locate_stack(frames, workers=threads, **ours_kw)
        d = time.perf_counter()
        locate_stack(frames, invert=invert, workers=threads)  # as a user runs it: pilot σ too
        e = time.perf_counter()
        w_tp.append((b - a) / n)
        w_1.append((c - b) / n)
        w_n.append((d - c) / n)
        w_user.append((e - d) / n)
    W_tp, W_1, W_n, W_u = _med(w_tp), _med(w_1), _med(w_n), _med(w_user)
    h, w = frames.shape[1:]
    print(f"\n## {name}: {n} frames {h}×{w}; σ = {sigma:.3f} px (pilot on 5 frames "
          f"{t_pilot:.2f} s); trackpy {tp_kw}")
    print(f"{'method':<62} {'ms/frame':>9} {'frames/s':>9} {'÷ trackpy':>10} {'feat/frame':>10}")

    def row(label, t, ref, feats=""):
        ratio = f"{ref / t:10.2f}" if ref else f"{'':>10}"
        print(f"{label:<62} {1000 * t:9.1f} {1 / t:9.2f} {ratio} {feats:>10}")

    print("# 1 core vs 1 core (per frame, alternated; median)")
    row("trackpy.locate (numba engine)", t_tp, t_tp, f"{n_tp / n:.1f}")
    if python_engine:
        row("trackpy.locate, engine='python' (reference)", _med(tpy), t_tp)
    row("scopeflow locate_stack, 1 thread (σ fixed)", t_sf, t_tp, f"{n_sf / n:.1f}")
    print(f"# whole movie ({reps} alternated rounds; median)")
    row("trackpy.locate, one call per frame (1 core; = tp.batch)", W_tp, W_tp)
    row("scopeflow locate_stack, workers=1 (σ fixed)", W_1, W_tp)
    row(f"scopeflow locate_stack, workers={threads} (σ fixed)", W_n, W_tp)
    row(f"scopeflow locate_stack, workers={threads}, incl. pilot σ (as a user runs it)",
        W_u, W_tp)
    print(f"RATIO {name}: scopeflow 1 core / trackpy 1 core (throughput) = {t_tp / t_sf:.2f}×"
          f" per frame, {W_tp / W_1:.2f}× whole movie; scopeflow {threads} cores / trackpy.locate"
          f" = {W_tp / W_n:.2f}× ({W_tp / W_u:.2f}× incl. pilot σ)")
    return {"frame_1v1": t_tp / t_sf, "movie_1v1": W_tp / W_1, "movie_nv1": W_tp / W_n,
            "t_tp": t_tp, "sigma": sigma}


def bench_beadnet(frames, threads, t_tp, n_frames=6):
    """BeadNet forward variants and the whole BeadNet path on the first frames."""
    import torch

    from scopeflow.models.beadnet import BeadNet, normalize_frame
    from scopeflow.track.localize import locate_stack

    net = BeadNet.load(threads=threads)
    frames = frames[:n_frames]
    x = torch.from_numpy(normalize_frame(frames[0]))[None, None]
    eager = net.net.eval()
    cl = BeadNet.load(threads=threads).net.eval().to(memory_format=torch.channels_last)
    ort_sess = None
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "beadnet.onnx"
            torch.onnx.export(eager, x, str(path), opset_version=17, dynamo=False,
                              input_names=["x"], output_names=["y"])
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            ort_sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"(ONNX Runtime variant skipped: {type(exc).__name__}: {exc})")
    torch.set_num_threads(threads)
    variants = {"torch eager NCHW (as shipped)": lambda a: eager(a)}
    variants["torch channels_last"] = lambda a: cl(a.contiguous(memory_format=torch.channels_last))
    if ort_sess is not None:
        variants["ONNX Runtime fp32"] = lambda a: ort_sess.run(None, {"x": a.numpy()})
    inputs = [torch.from_numpy(normalize_frame(f))[None, None] for f in frames]
    times = {k: [] for k in variants}
    with torch.inference_mode():
        for f in variants.values():
            f(inputs[0])  # warm-up
        for a in inputs:  # alternated
            for k, f in variants.items():
                t0 = time.perf_counter()
                f(a)
                times[k].append(time.perf_counter() - t0)
    pilot = locate_stack(frames[:5], net, workers=1)
    sig_net = pilot.attrs["sigma_px"]
    tn = []
    for i in range(len(frames)):
        t0 = time.perf_counter()
        locate_stack(frames[i : i + 1], net, sigma_px=sig_net, pilot_frames=1, workers=1)
        tn.append(time.perf_counter() - t0)
    print(f"\n## BeadNet (track.model: beadnet) on {len(frames)} bulk_water frames, "
          f"{threads} torch/ORT thread(s); trackpy.locate = {1000 * t_tp:.1f} ms/frame above")
    print(f"{'BeadNet forward / path':<62} {'ms/frame':>9} {'frames/s':>9} {'÷ trackpy':>10}")
    for k, v in times.items():
        t = _med(v)
        print(f"{'forward: ' + k:<62} {1000 * t:9.1f} {1 / t:9.2f} {t_tp / t:10.2f}")
    t = _med(tn)
    print(f"{'whole BeadNet path (eager forward + xcorr + MLE)':<62} {1000 * t:9.1f} "
          f"{1 / t:9.2f} {t_tp / t:10.2f}")


def main(argv=None) -> int:
    import argparse

    import trackpy as tp

    from scopeflow.simulate.beads import simulate_movie
    from scopeflow.track import read_frames

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="scopeflow frame threads (and "
                    "BeadNet torch/ORT threads)")
    ap.add_argument("--reps", type=int, default=3, help="alternated whole-movie rounds")
    ap.add_argument("--no-beadnet", action="store_true", help="skip the BeadNet rows")
    args = ap.parse_args(argv)
    tp.quiet()
    from scopeflow.track import _fast

    print(f"# localisation throughput; trackpy {tp.__version__}, numba kernels: "
          f"{_fast.HAVE_NUMBA}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
          f"CPUs available: {len(os.sched_getaffinity(0))}")
    res = {}
    path = SHARED / "trackpy_bulk_water" / "frames"
    if path.is_dir():
        bw = read_frames(path)
        res["bulk_water"] = bench_movie("bulk_water", bw, dict(diameter=11, invert=True,
                                        minmass=20), True, args.reps, args.threads,
                                        python_engine=True)
    else:
        print(f"bulk_water skipped: {path} not found (set SCOPEFLOW_SHARED_DATA)")
    sim, truth = simulate_movie(30, (512, 512), 400, 0.4, 0.1, 10.0, photons=1000.0, seed=3,
                                enter_leave=False)
    print(f"\n(simulated movie: {len(truth) / len(sim):.0f} beads/frame true)")
    res["simulated"] = bench_movie("simulated", sim, dict(diameter=9, minmass=60), False,
                                   args.reps, args.threads)
    if not args.no_beadnet and "bulk_water" in res:
        bench_beadnet(bw, args.threads, res["bulk_water"]["t_tp"])
    print("\n# summary: throughput ratio scopeflow / trackpy.locate (>1 = scopeflow faster)")
    for k, r in res.items():
        print(f"{k:<12} 1 core vs 1 core: {r['frame_1v1']:.2f}× per frame, {r['movie_1v1']:.2f}×"
              f" whole movie; {args.threads} cores vs trackpy.locate: {r['movie_nv1']:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
