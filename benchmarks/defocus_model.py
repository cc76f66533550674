"""Validation of the learned defocus model (``models/defocus.pt``).

1. **Simulated, held back** (seeds never used in training): DPC and brightfield smears
   (384², NA 0.4, σ = 1) at Δz ∈ {0, ±5, ±10, ±15, ±25} µm, 3 seeds each; predicted |Δz|
   per true |Δz|, mean absolute error and Spearman rank correlation.
2. **Real brightfield, sephaCe** (``/work/shared/data/sephace_brightfield_defocus``): 2 sets ×
   2 series ("fine": in focus and ≈ ±10 µm; "init": in focus and ≈ ±25 µm), 1024×1344 px at
   ≈0.200 µm/px, 40× air objective, adherent cells. Each image is scored with
   ``defocus_score(image, pixel_size_um=0.2)`` (resampled to the model's 0.333 µm/px) and,
   for comparison, without resampling. Reported: the values, whether the in-focus image scores
   lowest in its series, and whether the ±25 µm images score above the ±10 µm ones of the same
   set. This is a domain shift (brightfield, other objective and specimen), so the values are
   not µm; only the ordering is meaningful.

Usage::

    python benchmarks/defocus_model.py [--weights PT] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from scopeflow.qc.defocus import defocus_score, simulate_defocus_views

SEPHACE = Path("/work/shared/data/sephace_brightfield_defocus")
DZ = [0.0, 5.0, -5.0, 10.0, -10.0, 15.0, -15.0, 25.0, -25.0]


def simulated(weights) -> dict:
    rows = []
    for i, dz in enumerate(DZ):
        for k in range(3):
            views = simulate_defocus_views(9000 + 10 * i + k, dz, shape=(384, 384))
            for mod, img in views.items():
                rows.append((mod, abs(dz), defocus_score(img, weights=weights)))
    out = {}
    print("simulated held-back (NA 0.4, sigma 1): predicted |dz| (um), mean +- sd over 6 images")
    print(f"{'|dz| um':>8} " + " ".join(f"{m:>16}" for m in ("dpc", "brightfield")))
    for a in sorted({r[1] for r in rows}):
        cells = []
        for mod in ("dpc", "brightfield"):
            v = np.array([r[2] for r in rows if r[0] == mod and r[1] == a])
            out.setdefault(mod, {})[f"{a:g}"] = {"mean": float(v.mean()), "sd": float(v.std())}
            cells.append(f"{v.mean():8.2f} +- {v.std():5.2f}")
        print(f"{a:>8g} " + " ".join(f"{c:>16}" for c in cells))
    for mod in ("dpc", "brightfield"):
        t = np.array([r[1] for r in rows if r[0] == mod])
        p = np.array([r[2] for r in rows if r[0] == mod])
        out[mod]["mae_um"] = float(np.mean(np.abs(p - t)))
        out[mod]["spearman"] = float(spearmanr(t, p).statistic)
        print(f"  {mod}: MAE {out[mod]['mae_um']:.2f} um, Spearman {out[mod]['spearman']:.3f}")
    return out


def sephace(weights) -> dict:
    import imageio.v3 as iio

    res = {}
    print("\nsephaCe brightfield (real, domain shift): score per image (resampled 0.2 -> 0.333 "
          "um/px | native pixels)")
    n_focus_ok = n_series = n_far_ok = n_far = 0
    for set_dir in sorted(p for p in SEPHACE.iterdir() if p.is_dir()):
        per_set = {}
        for series in ("fine", "init"):
            files = sorted(set_dir.glob(f"{series}_*.png"))
            z = np.array([float(re.search(r"Z(\d+\.\d+)", f.name).group(1)) for f in files])
            z_focus = z[np.argsort(z)[1]]  # the middle plane is the in-focus image
            rows = []
            for f, zi in zip(files, z, strict=True):
                img = iio.imread(f).astype(np.float32) / 255.0
                s_rs = defocus_score(img, weights=weights, pixel_size_um=0.2)
                s_nat = defocus_score(img, weights=weights)
                rows.append({"file": f.name, "offset_um": round(float(zi - z_focus), 2),
                             "score": s_rs, "score_native": s_nat})
                print(f"  {set_dir.name} {series:<5} dz {zi - z_focus:+7.2f} um: "
                      f"{s_rs:7.2f} | {s_nat:7.2f}")
            foc = [r for r in rows if r["offset_um"] == 0][0]
            others = [r for r in rows if r["offset_um"] != 0]
            ok = all(r["score"] > foc["score"] for r in others)
            ok_nat = all(r["score_native"] > foc["score_native"] for r in others)
            n_focus_ok += ok
            n_series += 1
            print(f"    in-focus scores lowest: {ok} (native pixels: {ok_nat})")
            per_set[series] = {"images": rows, "focus_lowest": ok, "focus_lowest_native": ok_nat}
        fine = [r["score"] for r in per_set["fine"]["images"] if r["offset_um"] != 0]
        init = [r["score"] for r in per_set["init"]["images"] if r["offset_um"] != 0]
        pairs = [(a, b) for a in init for b in fine]
        good = sum(a > b for a, b in pairs)
        n_far_ok += good
        n_far += len(pairs)
        per_set["25_above_10_pairs"] = f"{good}/{len(pairs)}"
        print(f"    {set_dir.name}: +-25 um scored above +-10 um in {good}/{len(pairs)} pairs")
        res[set_dir.name] = per_set
    res["summary"] = {"focus_lowest_series": f"{n_focus_ok}/{n_series}",
                      "25_above_10_pairs": f"{n_far_ok}/{n_far}"}
    print(f"summary: in focus lowest in {n_focus_ok}/{n_series} series; "
          f"+-25 above +-10 in {n_far_ok}/{n_far} pairs")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = {"simulated": simulated(args.weights), "sephace": sephace(args.weights)}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
