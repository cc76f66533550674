"""Spot detection on a downsampled fluorescence frame (as Octopi does): speed and what it costs.

For each factor d in ``--factors`` (``parasites.downsample``), the same simulated FOVs
(``--size``² px, 0.333 µm/px; half infected at ``--fov-density`` parasites/µL, half negative;
all with the simulator's confounders) go through the real path of
:func:`scopeflow.parasites.coverage.fov_calls` (flatfield → spot detection on the d × d block
mean → full-resolution crops → shipped classifier + OOD flag). Prints per factor: detection
seconds per FOV (and the ratio to d = 1, timed in the same run on the same frames), candidates
per FOV, fraction of rings with a candidate within 2 µm, calls per ring (the path's
sensitivity) and counted false calls in cells without a ring.

Usage::

    python benchmarks/parasitemia_downsample.py [--fovs 6] [--size 1024] [--factors 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from scopeflow.parasites.classifier import load_parasite_model
from scopeflow.parasites.coverage import _flatfielded, calibrate, fov_calls
from scopeflow.parasites.detect import detect_spots
from scopeflow.parasites.ood import load_ood_reference
from scopeflow.simulate.parasites import simulate_fluorescence
from scopeflow.simulate.smear import simulate_fov

PS = 0.333


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fovs", type=int, default=6)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--fov-density", type=float, default=4e5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = load_parasite_model()
    ref = load_ood_reference()
    seeds = list(range(3000, 3000 + args.fovs))
    dens = [args.fov_density if k % 2 == 0 else 0.0 for k in range(args.fovs)]
    # detection time alone, on the same frames for every factor
    frames = []
    for s, lam in zip(seeds, dens, strict=True):
        sim = simulate_fov((args.size, args.size), pixel_size_um=PS, seed=s)
        fl = simulate_fluorescence(sim["labels"], PS, seed=s + 7919, parasites_per_ul=lam)
        frames.append((_flatfielded(fl["fluorescence"], PS), sim["labels"], fl["truth"]))
    rows = []
    for d in args.factors:
        t = []
        found = []
        n_cand = 0
        for frame, lab, truth in frames:
            t0 = time.perf_counter()
            sp = detect_spots(frame, PS, labels=lab, downsample=d)
            t.append(time.perf_counter() - t0)
            n_cand += len(sp)
            rings = truth[truth["kind"] == "ring"]
            if len(rings) and len(sp):
                dd = np.hypot(rings["y"].to_numpy()[:, None] - sp["y"].to_numpy()[None],
                              rings["x"].to_numpy()[:, None] - sp["x"].to_numpy()[None])
                found += list(dd.min(axis=1) <= 2.0 / PS)
        res = [fov_calls(s, lam, size=args.size, model=model, reference=ref, downsample=d)
               for s, lam in zip(seeds, dens, strict=True)]
        c = calibrate(res)
        rows.append({"downsample": d, "detect_s_per_fov": float(np.median(t)),
                     "candidates_per_fov": n_cand / len(frames),
                     "rings_found": float(np.mean(found)) if found else float("nan"),
                     "calls_per_ring": c["sensitivity"], "n_rings": c["n_rings"],
                     "false_calls": c["fp_calls"], "n_cells": c["n_cells"]})
    base = rows[0]["detect_s_per_fov"]
    for r in rows:
        r["speedup_vs_first"] = base / r["detect_s_per_fov"]
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "args": vars(args)}, fh, indent=1)


if __name__ == "__main__":
    main()
