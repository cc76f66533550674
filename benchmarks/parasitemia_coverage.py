"""Coverage of the parasitemia interval on simulated slides (issue 21).

What is simulated (see :mod:`scopeflow.parasites.coverage`): FOVs of ``--size``² px run
through the real detection path (simulated DPC + fluorescence → spot detection → crops → the
shipped classifier), in two independent sets: a *calibration* set (seeds 1000+) gives the
sensitivity (calls per parasite) and the false calls per 5·10⁶ RBC that the estimate corrects
for, an *evaluation* set (seeds 2000+; ``--seed S`` shifts both by 10,000·S for fresh FOVs) gives the per-parasite call counts and per-FOV false
calls resampled into whole slides of ``--n-rbc`` counted cells at 0, 50, 200, 1,000 and
20,000 parasites/µL (``--repeats`` slides each). Infected FOVs are simulated at
``--fov-density`` parasites/µL so that a few FOVs hold enough rings; every FOV also holds the
confounders (platelets, white-cell nuclei, debris, speckle).

Prints the calibration, per-density coverage of the 95 % interval, the estimate on 0/µL slides
against the false-positive budget, and the detection limit (smallest density whose slides are
called positive — interval above the budget — in ≥ 95 % of repeats).

Usage::

    python benchmarks/parasitemia_coverage.py [--fovs 12] [--size 512] [--repeats 2000] [--seed 0]
        [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np
import pandas as pd
import torch

from scopeflow.parasites.classifier import load_parasite_model
from scopeflow.parasites.coverage import calibrate, fov_calls, simulate_slides


def _set(seeds, density, size, model):
    return [fov_calls(s, density if k % 2 == 0 else 0.0, size=size, model=model)
            for k, s in enumerate(seeds)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fovs", type=int, default=12, help="FOVs per set (half infected, half negative)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fov-density", type=float, default=4e5,
                    help="parasites/uL of the infected FOVs (default 4e5 = 8 %% of cells)")
    ap.add_argument("--n-rbc", type=float, default=1e6, help="counted RBC per slide")
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--budget", type=float, default=50.0, help="false-positive budget (/uL)")
    ap.add_argument("--seed", type=int, default=0,
                    help="FOV seeds 1000+ / 2000+ shifted by 10000 x this (fresh FOVs)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = load_parasite_model()
    t0 = time.perf_counter()
    off = 10000 * args.seed
    cal = _set(range(off + 1000, off + 1000 + args.fovs), args.fov_density, args.size, model)
    ev = _set(range(off + 2000, off + 2000 + args.fovs), args.fov_density, args.size, model)
    print(f"threshold {float(model.threshold):.4f}")
    c_cal, c_ev = calibrate(cal), calibrate(ev)
    print(f"FOVs through the real path: {time.perf_counter() - t0:.0f} s")
    print("calibration set:", json.dumps(c_cal))
    print("evaluation set: ", json.dumps(c_ev))
    print("false calls by nearest truth object (both sets):",
          dict(Counter(k for r in cal + ev for k in r["fp_kinds"])))
    print("candidates per cell:", round(sum(r["n_candidates"] for r in cal + ev)
                                        / sum(r["n_cells"] for r in cal + ev), 4))
    from scopeflow.parasites.parasitemia import poisson_interval

    n_all = sum(r["n_cells"] for r in cal + ev)
    fp_all = sum(r["fp_calls"] for r in cal + ev)
    up = float(poisson_interval(fp_all)[1][()]) / n_all * 5e6
    print(f"false calls in cells without a ring: {fp_all} in {n_all} cells = "
          f"{fp_all / n_all * 5e6:.1f} per 5e6 RBC (95 % upper bound {up:.0f} per 5e6 RBC)")
    dens = [0, 50, 200, 1000, 20000]
    cov = simulate_slides(dens, ev, c_cal, n_rbc=args.n_rbc, repeats=args.repeats,
                          fp_budget_per_ul=args.budget, seed=args.seed)
    exact = simulate_slides(dens, ev, c_cal, n_rbc=args.n_rbc, repeats=args.repeats,
                            fp_budget_per_ul=args.budget, fold_sensitivity=False, seed=args.seed)
    cov["coverage_calibration_as_exact"] = exact["coverage"]
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(cov.round(4).to_string(index=False))
    grid = [10, 20, 30, 40, 50, 60, 80, 100, 120, 150, 200, 300]
    lim = simulate_slides(grid, ev, c_cal, n_rbc=args.n_rbc, repeats=max(400, args.repeats // 4),
                          fp_budget_per_ul=args.budget, seed=args.seed + 1)
    ok = lim[lim["detected_fraction"] >= 0.95]
    dl = float(ok["parasites_per_ul"].min()) if len(ok) else float("nan")
    print(f"detection limit (>= 95 % of {args.n_rbc:.0f}-RBC slides called positive, budget "
          f"{args.budget:g}/uL): {dl:g} parasites/uL")
    print(lim[["parasites_per_ul", "detected_fraction"]].to_string(index=False))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"calibration": c_cal, "evaluation": c_ev, "coverage": cov.to_dict("records"),
                       "detection_limit_per_ul": dl, "limit_scan": lim.to_dict("records"),
                       "args": vars(args)}, fh, indent=1)


if __name__ == "__main__":
    main()
