"""Held-back accuracy of the per-cell quality classifier (``models/rbc_quality.pt``).

Held-back images (never used in training): real ``dpc_1024_00`` and ``dpc_2048_01`` (U-Net
cells labelled by matching the reference masks, plus corrupted contours of their good cells)
and 12 simulated 384² smears with seeds 5000–5011 (6 in focus, 6 defocused by 6–30 µm).
See :mod:`scopeflow.qc.quality_labels` for how labels are made.

Prints the label mix, balanced accuracy (threshold 0.5) and ROC AUC overall and per subset,
and the fraction of each kind of cell called good.

Usage::

    python benchmarks/cell_classifier.py [--weights PT] [--cache NPZ] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from scopeflow.qc.cell_classifier import predict_crops
from scopeflow.qc.quality_labels import build_examples
from scopeflow.models.training import roc_auc
from scopeflow.qc.train_quality import balanced_accuracy


def _scores(y, p) -> dict:
    y = np.asarray(y).astype(bool)
    out = {"n": int(y.size), "n_good": int(y.sum()), "n_bad": int((~y).sum())}
    if y.any() and (~y).any():
        out["balanced_accuracy"] = float(balanced_accuracy(y, p))
        out["roc_auc"] = float(roc_auc(y, p))
    out["recall_good"] = float(np.mean(p[y] >= 0.5)) if y.any() else float("nan")
    out["recall_bad"] = float(np.mean(p[~y] < 0.5)) if (~y).any() else float("nan")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="weights (default: shipped)")
    ap.add_argument("--cache", default=None, help="npz cache of the held-back crops")
    ap.add_argument("--json", default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            data = {k: z[k] for k in ("x", "y", "kind", "source")}
    else:
        data = build_examples("heldout")
        if cache is not None:
            np.savez(cache, **data)
    p = predict_crops(data["x"], weights=args.weights)
    y, kind, src = data["y"].astype(bool), data["kind"], data["source"]
    is_sim = np.char.startswith(src.astype(str), "sim")
    is_cor = np.char.startswith(kind.astype(str), "corrupt:")
    subsets = {
        "all held-back": np.ones(len(y), bool),
        "real images, U-Net cells only (no synthetic)": ~is_sim & ~is_cor,
        "real images + corrupted contours": ~is_sim,
        "simulated smears only": is_sim,
    }
    for s in np.unique(src[~is_sim]):
        subsets[f"{s} (+ its corruptions)"] = src == s
    res = {"subsets": {}, "kinds": {}}
    print(f"{'subset':<48} {'n':>6} {'good':>6} {'bad':>6} {'bal.acc':>8} {'AUC':>7} "
          f"{'rec.good':>8} {'rec.bad':>8}")
    for name, m in subsets.items():
        r = _scores(y[m], p[m])
        res["subsets"][name] = r
        print(f"{name:<48} {r['n']:>6} {r['n_good']:>6} {r['n_bad']:>6} "
              f"{r.get('balanced_accuracy', float('nan')):>8.4f} "
              f"{r.get('roc_auc', float('nan')):>7.4f} "
              f"{r['recall_good']:>8.4f} {r['recall_bad']:>8.4f}")
    print("\nper kind (label; where from; n; fraction called good at p >= 0.5):")
    for k in np.unique(kind):
        for where, m0 in (("real", ~is_sim), ("sim", is_sim)):
            m = (kind == k) & m0
            if not m.any():
                continue
            lab = "good" if y[m].all() else "bad"
            frac = float(np.mean(p[m] >= 0.5))
            res["kinds"][f"{where}:{k}"] = {"label": lab, "n": int(m.sum()), "called_good": frac}
            print(f"  {k:<16} {lab:<5} {where:<5} n={int(m.sum()):>5}  called good {frac:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
