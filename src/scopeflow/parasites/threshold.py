"""The classifier's operating threshold from negative slides (Octopi's rule).

The crop-level threshold chosen at training time (specificity 0.99 on the cross-validated
negative crops, :func:`scopeflow.parasites.train.choose_threshold`) says nothing about how many
false calls a negative *slide* gives per red cell: that depends on how often parasite-like
objects (debris, speckle on a cell ...) occur per cell. Octopi therefore sets the threshold on
negative slides so that they give a chosen number of false positives per 5·10⁶ red cells. Here:

1. **Target** (:func:`fp_target_per_5e6_rbc`): the highest false-call rate per 5·10⁶ RBC at
   which a 0/µL slide of ``slide_rbc`` counted red cells (default 10⁵) reads at most the
   false-positive budget ``parasites.fp_budget_per_ul`` (default 50/µL) with probability
   ≥ ``prob`` (0.95). With the defaults the budget is ⌊50·10⁵/5·10⁶⌋ = 1 call, the largest
   Poisson mean with P(X ≤ 1) ≥ 0.95 is 0.355, i.e. **17.8 false calls per 5·10⁶ RBC**.
   Larger slides meet the budget with more margin.
2. **Negative slides** (:func:`scopeflow.parasites.coverage.negative_cell_calls`): simulated
   0/µL fields (smear simulator cells; platelets, white-cell nuclei, debris, stain speckle)
   through the real spot detection, crops, classifier and OOD flag; the calibrated
   probabilities of the candidates inside cells that are not flagged OOD are kept. To reach the
   rare tail in reasonable time the confounders are simulated at ``enrich`` × their default
   densities and the cells are counted ``enrich`` times (calls per red cell scale with the
   confounders' density while they rarely overlap).
3. **Threshold** (:func:`slide_threshold`): the lowest calibrated probability, not below the
   crop-level threshold, at which the negative slides' calls per 5·10⁶ (effective) RBC are at
   most the target.

The slides used here must be disjoint from those the false-positive benchmark evaluates on
(``benchmarks/parasitemia_false_positives.py`` uses seeds 0, 1, ...; ``fit-parasite-threshold``
defaults to seed 500, whose cell layouts and frames differ).

:func:`set_threshold` writes the threshold into the weights (the ``threshold`` buffer; the
rule, the crop-level threshold and the measurement go to the metadata), records the new
sha256 in the model card and re-binds the OOD reference (same features) to the new file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from scopeflow.parasites.classifier import DEFAULT_WEIGHTS

__all__ = [
    "THRESHOLD_DEFAULTS",
    "fit_threshold_main",
    "fp_target_per_5e6_rbc",
    "set_threshold",
    "slide_threshold",
    "threshold_record",
]

#: Recipe defaults of ``scopeflow fit-parasite-threshold``.
THRESHOLD_DEFAULTS = {"slide_rbc": 1e5, "prob": 0.95, "layouts": 2, "frames": 30,
                      "enrich": 10.0, "seed": 500}


def fp_target_per_5e6_rbc(budget_per_ul: float, slide_rbc: float = THRESHOLD_DEFAULTS["slide_rbc"],
                          prob: float = THRESHOLD_DEFAULTS["prob"],
                          rbc_per_ul: float = 5e6) -> float:
    """Highest false-call rate (per 5·10⁶ RBC) at which a 0/µL slide reads within the budget.

    Parameters
    ----------
    budget_per_ul : float
        False-positive budget (parasites/µL; ``parasites.fp_budget_per_ul``).
    slide_rbc : float
        Counted red cells of the smallest slide the guarantee should hold for.
    prob : float
        Probability that such a slide's uncorrected density is at most the budget.
    rbc_per_ul : float
        Red cells per µL (the density is calls / slide_rbc × rbc_per_ul).

    Returns
    -------
    float
        Rate r with P(Poisson(r·slide_rbc/5·10⁶) ≤ ⌊budget·slide_rbc/rbc_per_ul⌋) = prob.
    """
    allowed = int(np.floor(float(budget_per_ul) * float(slide_rbc) / float(rbc_per_ul) + 1e-9))
    # P(X <= allowed) decreases in the mean: bisect for the mean where it equals prob
    lo, hi = 0.0, float(allowed) + 20.0 * np.sqrt(allowed + 1.0) + 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if stats.poisson.cdf(allowed, mid) >= prob:
            lo = mid
        else:
            hi = mid
    return float(lo * 5e6 / float(slide_rbc))


def slide_threshold(p_values: np.ndarray, n_cells: float, target_per_5e6_rbc: float,
                    floor: float) -> dict:
    """Lowest threshold ≥ ``floor`` whose false calls on negative slides meet the target.

    Parameters
    ----------
    p_values : numpy.ndarray
        Calibrated ``p_parasite`` of the counted candidates (inside cells, not OOD) of negative
        slides (at least those ≥ ``floor``).
    n_cells : float
        Red cells of those slides (effective: × the confounder enrichment).
    target_per_5e6_rbc : float
        Highest false-call rate allowed.
    floor : float
        Lowest threshold (the crop-level one).

    Returns
    -------
    dict
        ``threshold``; ``calls`` (p_values ≥ it), ``fp_per_5e6_rbc`` (their rate) and the same
        at the floor (``calls_at_floor``, ``fp_per_5e6_rbc_at_floor``).
    """
    p = np.sort(np.asarray(p_values, np.float64))[::-1]
    n = float(n_cells)
    allowed = int(np.floor(float(target_per_5e6_rbc) * n / 5e6 + 1e-9))
    at_floor = int((p >= floor).sum())
    if at_floor <= allowed:
        thr = float(floor)
    else:  # just above the (allowed + 1)-th highest probability
        thr = float(np.nextafter(p[allowed], np.inf))
    calls = int((p >= thr).sum())
    return {"threshold": thr, "calls": calls, "fp_per_5e6_rbc": calls / n * 5e6,
            "calls_at_floor": at_floor, "fp_per_5e6_rbc_at_floor": at_floor / n * 5e6,
            "allowed_calls": allowed}


def set_threshold(weights: str | Path, threshold: float, record: dict) -> str:
    """Write ``threshold`` into a parasite weights file and re-bind its OOD reference.

    Parameters
    ----------
    weights : str or Path
        Parasite classifier ``.pt`` (card beside it).
    threshold : float
        New operating threshold (calibrated probability).
    record : dict
        Stored as ``meta["slide_threshold"]`` (rule, measurement, command).

    Returns
    -------
    str
        sha256 of the rewritten weights.
    """
    from scopeflow.models.weights import save_weights
    from scopeflow.parasites.classifier import load_parasite_model
    from scopeflow.parasites.ood import load_ood_reference, save_ood_reference

    w = Path(weights)
    model, meta = load_parasite_model(w)
    ref = {k: v for k, v in load_ood_reference(w).items() if k != "model_sha256"}
    meta = dict(meta)
    meta.setdefault("crop_threshold", float(model.threshold))
    meta["slide_threshold"] = json.loads(json.dumps(record, default=float))  # plain types
    meta["threshold_rule"] = record.get("rule", meta.get("threshold_rule"))
    model.threshold.fill_(float(threshold))
    sha = save_weights(model, meta, w)
    save_ood_reference(ref, w)
    return sha


def threshold_record(df, floor: float, target: float, args: argparse.Namespace, command: str) -> dict:
    """The threshold and its record from :func:`scopeflow.parasites.coverage.negative_cell_calls`
    rows (``args``: ``enrich``, ``slide_rbc``, ``budget``, ``prob``, ``seed`` as parsed)."""
    p = (np.concatenate([np.asarray(v, np.float64) for v in df["p_counted"]]) if len(df)
         else np.zeros(0))
    n_eff = float(df["n_cells"].sum()) * float(args.enrich)
    res = slide_threshold(p, n_eff, target, floor)
    return {
        "rule": (f"lowest calibrated p >= the crop-level threshold {floor:.4f} at which simulated "
                 f"0/uL slides give <= {target:.1f} counted false calls per 5e6 RBC (a "
                 f"{args.slide_rbc:g}-RBC slide then reads <= {args.budget:g}/uL with "
                 f"probability >= {args.prob})"),
        "target_per_5e6_rbc": target, "budget_per_ul": float(args.budget),
        "n_cells": int(df["n_cells"].sum()), "enrich": float(args.enrich),
        "n_cells_effective": n_eff, "frames": int(len(df)), "seed": int(args.seed),
        "top_p": np.sort(p)[::-1][:10].round(4).tolist(), "command": command, **res,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``scopeflow fit-parasite-threshold``."""
    from scopeflow.parasites.parasitemia import PARASITEMIA_DEFAULTS

    d = THRESHOLD_DEFAULTS
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="classifier weights (.pt)")
    p.add_argument("--budget", type=float, default=PARASITEMIA_DEFAULTS["fp_budget_per_ul"],
                   help="false-positive budget (parasites/uL; parasites.fp_budget_per_ul)")
    p.add_argument("--slide-rbc", type=float, default=d["slide_rbc"],
                   help="smallest slide (counted RBC) that must read within the budget")
    p.add_argument("--prob", type=float, default=d["prob"])
    p.add_argument("--layouts", type=int, default=d["layouts"])
    p.add_argument("--frames", type=int, default=d["frames"], help="0/uL frames per layout")
    p.add_argument("--enrich", type=float, default=d["enrich"],
                   help="confounders at this multiple of their default density")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="measure and print, write nothing")


def fit_threshold_main(args: argparse.Namespace, argv: list[str]) -> int:
    """``scopeflow fit-parasite-threshold``: measure negative slides, set the threshold."""
    import torch

    from scopeflow.parasites.classifier import load_parasite_model
    from scopeflow.parasites.coverage import negative_cell_calls

    torch.set_num_threads(int(args.threads))
    model, meta = load_parasite_model(args.weights)
    floor = float(meta.get("crop_threshold", float(model.threshold)))
    target = fp_target_per_5e6_rbc(args.budget, args.slide_rbc, args.prob)
    df = negative_cell_calls(args.layouts, args.frames, seed=args.seed, enrich=args.enrich,
                             threshold=floor, model=model)
    cmd = "scopeflow fit-parasite-threshold " + " ".join(argv)
    record = threshold_record(df, floor, target, args, cmd)
    print(json.dumps(record, indent=1))
    if not args.dry_run:
        sha = set_threshold(args.weights, record["threshold"], record)
        w = Path(args.weights)
        w.with_name(w.stem + "_threshold.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"threshold {record['threshold']:.4f} written to {args.weights} (sha256 {sha}); "
              "OOD reference re-bound")
    return 0
