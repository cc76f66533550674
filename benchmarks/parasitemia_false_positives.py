"""False-positive budget on 0 parasites/µL slides, tested on many simulated negative red cells.

The budget (``parasites.fp_budget_per_ul``, default 50/µL = 50 false calls per 5·10⁶ red cells,
i.e. 10⁻⁵ per cell) can only be tested on ≥ ~4·10⁵ negative cells: with 0 false calls in n
cells the exact 95 % upper bound of the rate is 3.69/n. What is simulated
(:func:`scopeflow.parasites.coverage.negative_cell_calls`): ``--layouts`` independent
``--size``² cell layouts (smear simulator: DPC + true labels), each with ``--frames``
independent 0/µL fluorescence frames (platelets, white-cell nuclei, debris, stain speckle at
the simulator's default densities, new placements and photon noise every frame); every frame
goes through the real spot detection, the candidates inside cells through the shipped
classifier at its operating threshold and its OOD flag. All cells count (true labels, no QC).

Prints the cells, candidates, classifier calls inside cells, calls the stage counts (not
flagged OOD), the false-call rate per 5·10⁶ RBC with its exact 95 % upper bound against the
budget, and the estimate of "slides" of ``--slide-rbc`` cells (consecutive frames) against the
budget. Stop with Ctrl-C or SIGTERM: what has run is summarised.

Usage::

    python benchmarks/parasitemia_false_positives.py [--layouts 8] [--frames 45] [--size 1024]
        [--budget 50] [--slide-rbc 1e5] [--json OUT]
    python benchmarks/parasitemia_false_positives.py --from-json OUT [OUT2 ...]

``--json`` also stores, per frame, the ``p_parasite`` of every counted candidate (inside a cell,
not OOD, p ≥ 0.05): ``--from-json`` re-summarises saved runs at the classifier's *current*
threshold (the network is unchanged when only the threshold is re-fitted, so this equals a new
run on the same frames).
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections import Counter

import numpy as np
import pandas as pd
import torch

from scopeflow.parasites.coverage import negative_cell_calls
from scopeflow.parasites.parasitemia import density_interval, poisson_interval


def recount(df: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Rows with ``counted`` re-computed at ``threshold`` from their ``p_counted``."""
    df = df.copy()
    df["counted"] = [int((np.asarray(v) >= threshold).sum()) for v in df["p_counted"]]
    return df


def summarize(df: pd.DataFrame, budget: float, slide_rbc: float, rbc_per_ul: float = 5e6) -> dict:
    """Rates and bounds of :func:`negative_cell_calls` rows."""
    n = int(df["n_cells"].sum())
    out = {"frames": int(len(df)), "n_cells": n, "n_candidates": int(df["n_candidates"].sum()),
           "n_in_cells": int(df["n_in_cells"].sum()), "budget_per_ul": budget}
    for col in ("calls", "counted"):
        k = int(df[col].sum())
        up = float(poisson_interval(k)[1][()])
        out[col] = k
        out[f"{col}_per_5e6_rbc"] = k / n * rbc_per_ul if n else float("nan")
        out[f"{col}_per_5e6_rbc_upper95"] = up / n * rbc_per_ul if n else float("nan")
        out[f"{col}_budget_shown"] = bool(n and up / n * rbc_per_ul <= budget)
    out["calls_ood"] = int(df["calls_ood"].sum())
    out["call_kinds"] = dict(Counter(k for s in df["kinds"] if s for k in s.split(";")))
    # slides: consecutive frames until slide_rbc cells
    slide = (df["n_cells"].cumsum() - 1) // slide_rbc
    g = df.groupby(slide)[["n_cells", "counted"]].sum()
    g = g[g["n_cells"] >= 0.5 * slide_rbc]
    if len(g):
        est, _, hi = density_interval(g["counted"].to_numpy(), g["n_cells"].to_numpy(),
                                      rbc_per_ul=rbc_per_ul)
        out["slides"] = int(len(g))
        out["slide_mean_rbc"] = float(g["n_cells"].mean())
        out["slides_estimate_within_budget"] = float(np.mean(est <= budget))
        out["slides_max_estimate_per_ul"] = float(est.max())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layouts", type=int, default=8)
    ap.add_argument("--frames", type=int, default=45, help="fluorescence frames per layout")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=50.0, help="false-positive budget (/uL)")
    ap.add_argument("--slide-rbc", type=float, default=1e5, help="counted RBC per simulated slide")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--from-json", nargs="+", default=None,
                    help="re-summarise saved --json runs at the current threshold")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.from_json:
        from scopeflow.parasites.classifier import load_parasite_model

        thr = float(load_parasite_model()[0].threshold)
        frames = []
        for k, path in enumerate(args.from_json):
            with open(path) as fh:
                frames += [dict(r, layout=f"{k}:{r['layout']}") for r in json.load(fh)["frames"]]
        df = recount(pd.DataFrame(frames), thr)
        s = summarize(df, args.budget, args.slide_rbc)
        s["threshold"] = thr
        s["note"] = "calls, calls_ood: at the threshold of the saved runs; counted: at this one"
        report(s, args.budget)
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    t0 = time.perf_counter()
    rows = []

    def progress(r):
        rows.append(r)
        if len(rows) % 20 == 0:
            n = sum(x["n_cells"] for x in rows)
            print(f"  {len(rows)} frames, {n} cells, {sum(x['calls'] for x in rows)} calls "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    try:
        negative_cell_calls(args.layouts, args.frames, size=args.size, seed=args.seed,
                            progress=progress)
    except KeyboardInterrupt:
        print("interrupted: summarising the frames that ran")
    df = pd.DataFrame(rows)
    s = summarize(df, args.budget, args.slide_rbc)
    s["seconds"] = time.perf_counter() - t0
    report(s, args.budget)
    if args.json:
        df["p_counted"] = [np.asarray(v).tolist() for v in df["p_counted"]]
        with open(args.json, "w") as fh:
            json.dump({"summary": s, "frames": df.to_dict("records"), "args": vars(args)},
                      fh, indent=1)


def report(s: dict, budget: float) -> None:
    """Print a :func:`summarize` result."""
    print(json.dumps(s, indent=1))
    print(f"0/uL: {s['counted']} counted false calls in {s['n_cells']:,} negative cells "
          f"({s['calls']} classifier calls, {s['calls_ood']} of them flagged OOD) = "
          f"{s['counted_per_5e6_rbc']:.1f} per 5e6 RBC, exact 95 % upper bound "
          f"{s['counted_per_5e6_rbc_upper95']:.1f} per 5e6 RBC (= /uL) vs budget "
          f"{budget:g}/uL: "
          f"{'shown' if s['counted_budget_shown'] else 'NOT shown'}")
    if "slides" in s:
        print(f"{s['slides']} slides of ~{s['slide_mean_rbc']:,.0f} RBC: "
              f"{100 * s['slides_estimate_within_budget']:.1f} % estimate <= budget, "
              f"max {s['slides_max_estimate_per_ul']:.1f}/uL")


if __name__ == "__main__":
    main()
