"""Segmentation accuracy on the real Octopi reference data and on simulator truth.

Prints, per image and method, binary IoU, Dice, instance F1@0.5, mean AP (IoU 0.5:0.95) and
count error, as ``scopeflow evaluate`` computes them, plus the harness mean.

    python benchmarks/segment_accuracy.py [--methods classical unet] [--chunk 1024]

Real data are looked up in $SCOPEFLOW_SHARED_DATA or ../shared/data next to the repository.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from scopeflow.evaluate import evaluate
from scopeflow.io.images import read_gray, read_labels
from scopeflow.segment import make_predictor
from scopeflow.segment.chunked import segment_image

REPO = Path(__file__).resolve().parents[1]
KEYS = ("binary_iou", "dice", "f1", "mean_ap", "count_error")


def real_pairs(shared: Path) -> list[tuple[str, Path, Path]]:
    pairs = []
    m2 = shared / "octopi_rbc_dpc_m2unet"
    for img in sorted((m2 / "images").glob("*.png")):
        pairs.append((img.stem, img, m2 / "masks" / f"{img.stem}_mask.png"))
    h = shared / "octopi_rbc_dpc_harness"
    for img in sorted((h / "images").glob("*_dpc.png")):
        stem = img.stem.removesuffix("_dpc")
        pairs.append((f"harness {stem}", img, h / "masks" / f"{stem}_mask.png"))
    return pairs


def simulated(n: int = 2, size: int = 1024):
    from scopeflow.smear.dpc import dpc_octopi
    from scopeflow.simulate import simulate_fov

    for seed in range(n):
        r = simulate_fov(shape=(size, size), seed=100 + seed)
        yield f"simulated seed {100 + seed}", dpc_octopi(r["left"], r["right"], r["ff_left"], r["ff_right"]), r["labels"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["classical", "unet"])
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--simulated", type=int, default=2, help="simulated FOVs (0 = none)")
    args = parser.parse_args(argv)
    shared = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    cases = [(name, read_gray(i), read_labels(m)) for name, i, m in real_pairs(shared)] if shared.is_dir() else []
    cases += list(simulated(args.simulated))
    print(f"{'image':<24} {'method':<10} " + " ".join(f"{k:>11}" for k in KEYS))
    for method in args.methods:
        try:
            predictor = make_predictor(method, pixel_size_um=0.333)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other methods
            print(f"{method}: unavailable ({exc})")
            continue
        harness = []
        for name, image, ref in cases:
            m = evaluate(segment_image(image, predictor, chunk=args.chunk), ref)
            print(f"{name:<24} {method:<10} " + " ".join(f"{m[k]:>11.3f}" for k in KEYS), flush=True)
            if name.startswith("harness"):
                harness.append([m[k] for k in KEYS])
        if harness:
            mean = np.mean(harness, axis=0)
            print(f"{'harness mean (10)':<24} {method:<10} " + " ".join(f"{v:>11.3f}" for v in mean))


if __name__ == "__main__":
    main()
