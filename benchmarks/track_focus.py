"""D bias of the track-length filter when beads diffuse in and out of focus (simulated truth).

Beads diffuse in 3-D in a 20 µm sample and are detected only within a 2.5 µm depth of field
(:func:`scopeflow.simulate.bead_focus.simulate_focus_localizations`; the depth gives 30-frame
track lengths like trackpy_bulk_water's: about half the bead-frames in tracks of 29–30
frames), ~300 beads in focus per frame, 100/285 µm/px, 24 fps, mean D 0.4 µm²/s, static
error 0.03 µm, 3 % of detections spurious, 1 % missed. Samples: monodisperse (D_cv 0, the
control), D spread D_cv 0.3 and 0.5 (log-normal), and focus 1.5 µm above a coverslip
(hindered diffusion near the wall, D_cv 0.15); movies of 30 and 300 frames. For each
``min_length`` rule (``auto`` = the fitted lags + 1; ``auto:auto`` with ``fit_lags`` auto
too) the localisations go through :func:`scopeflow.track.analysis.track_pipeline` (link,
stubs, drift, MSD, fit on 10 lags) and the D is compared with the movie's reference (the
mean D of its detected bead-frames, :func:`scopeflow.simulate.bead_focus.target_D`); the
paired difference from the first rule on the same movies is printed with its s.e. Also printed: spurious tracks kept (most
points spurious), tracks mixing two beads, and fragments per true visit (a bead's stretch in
focus, gaps of ≤ ``memory`` frames joined), over the tracks each rule keeps.

Run: ``OMP_NUM_THREADS=1 python benchmarks/track_focus.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

PX, FPS, D0, MEMORY = 100 / 285, 24.0, 0.4, 3


def track_quality(tracks: pd.DataFrame, memory: int = MEMORY) -> dict:
    """Spurious tracks, mixed tracks and fragments per true visit of linked simulated tracks.

    ``tracks`` carries the simulator's ``bead`` column (-1: spurious detection).
    """
    if len(tracks) == 0:
        return {"n_tracks": 0, "spurious": 0, "mixed": 0, "fragments": float("nan")}
    g = tracks.groupby("particle")["bead"]
    spurious = int((g.apply(lambda b: (b < 0).mean()) > 0.5).sum())
    real = tracks.loc[tracks["bead"] >= 0].sort_values(["bead", "frame"])
    mixed = int((real.groupby("particle")["bead"].nunique() > 1).sum())
    gap = real.groupby("bead")["frame"].diff().fillna(np.inf).to_numpy() > memory + 1
    visit = np.cumsum(gap)
    frag = real.assign(visit=visit).groupby("visit")["particle"].nunique()
    return {"n_tracks": int(g.ngroups), "spurious": spurious, "mixed": mixed,
            "fragments": float(frag.mean())}


#: sample name -> simulator options
SAMPLES = {
    "mono": {"D_cv": 0.0},
    "D_cv 0.3": {"D_cv": 0.3},
    "D_cv 0.5": {"D_cv": 0.5},
    "coverslip": {"D_cv": 0.15, "coverslip": True, "focus_um": 1.5},
}


def rule_options(rule: str) -> dict:
    """``track_pipeline`` options of a rule: ``"25"``, ``"auto"``, ``"auto:auto"`` (min:fit)."""
    ml, _, fl = rule.partition(":")
    out = {"min_length": int(ml) if ml.isdigit() else ml}
    if fl:
        out["fit_lags"] = int(fl) if fl.isdigit() else fl
    return out


def run(n_frames: int, sample: str, seeds, rules) -> pd.DataFrame:
    from scopeflow.simulate.bead_focus import simulate_focus_localizations
    from scopeflow.track.analysis import track_pipeline

    rows = []
    for seed in seeds:
        locs, truth = simulate_focus_localizations(
            n_frames, D_um2_s=D0, miss_rate=0.01, spurious_per_frame=9.0, seed=seed,
            **SAMPLES[sample])
        target = truth.attrs["target_D"]
        for rule in rules:
            res = track_pipeline(locs, PX, FPS, search_range_px=5, memory=MEMORY,
                                 n_frames=n_frames, **rule_options(rule))
            s = res["summary"]
            q = track_quality(res["tracks"])
            rows.append({"frames": n_frames, "sample": sample, "seed": seed, "rule": rule,
                         "min_length": s["min_length"], "fit_lags": s["fit_lags"],
                         "bias": s["D_um2_s"] / target - 1, "se": s["D_se_um2_s"] / target,
                         "covered": s["D_ci_low_um2_s"] <= target <= s["D_ci_high_um2_s"],
                         **q})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer movies (smoke run)")
    ap.add_argument("--rules", default="25,auto,5,auto:auto",
                    help="comma-separated min_length[:fit_lags] rules to compare")
    ap.add_argument("--samples", default=",".join(SAMPLES), help="comma-separated samples")
    args = ap.parse_args(argv)
    rules = args.rules.split(",")
    plan = [(30, 3 if args.quick else 16), (300, 1 if args.quick else 4)]
    t0 = time.process_time()
    out = []
    for n_frames, n_seeds in plan:
        for sample in args.samples.split(","):
            out.append(run(n_frames, sample, range(n_seeds), rules))
    df = pd.concat(out, ignore_index=True)
    print(f"# D bias vs the bead-frame mean D (beads in and out of a 2.5 µm focus), "
          f"{time.process_time() - t0:.0f} CPU-s")
    print(f"{'frames':>6} {'sample':>10} {'rule':>9} {'kept >=':>7} {'lags':>4} {'movies':>6} "
          f"{'D bias %':>8} {'± s.e.':>6} {'vs ' + rules[0]:>7} {'± s.e.':>6} "
          f"{'boot s.e.%':>10} {'CI covers':>9} {'tracks':>6} {'spurious':>8} {'mixed':>5} "
          f"{'frag/visit':>10}")
    for (n, sample), block in df.groupby(["frames", "sample"], sort=False):
        ref = block.loc[block["rule"] == rules[0]].set_index("seed")["bias"]
        for rule in rules:
            g = block.loc[block["rule"] == rule]
            k = len(g)
            diff = g.set_index("seed")["bias"] - ref
            sem = (lambda v: 100 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan)
            ml = g["min_length"]
            kept = f"{ml.iloc[0]}" if ml.nunique() == 1 else f"{ml.min()}-{ml.max()}"
            lags = g["fit_lags"]
            lg = f"{lags.iloc[0]}" if lags.nunique() == 1 else f"{lags.min()}-{lags.max()}"
            print(f"{n:>6} {sample:>10} {rule:>9} {kept:>7} {lg:>4} {k:>6} "
                  f"{100 * g.bias.mean():>+8.2f} {sem(g.bias):>6.2f} {100 * diff.mean():>+7.2f} "
                  f"{sem(diff):>6.2f} {100 * g.se.mean():>10.2f} "
                  f"{int(g.covered.sum()):>4}/{k:<4} {g.n_tracks.mean():>6.0f} "
                  f"{g.spurious.mean():>8.1f} {g.mixed.mean():>5.1f} {g.fragments.mean():>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
