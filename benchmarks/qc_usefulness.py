"""Is per-cell QC useful? U-Net segmentation of real Octopi DPC images, QC flags, and the
best IoU of every predicted cell with the reference masks.

Samples: ``octopi_rbc_dpc_m2unet/images/dpc_1024_00.png`` (one FOV, never trained on) and the
10 crops of ``octopi_rbc_dpc_harness`` (one sample of 10 FOVs); pixel size 0.333 um.
Prints, per population, the mean IoU of kept vs rejected cells and the fraction of cells
matched at IoU >= 0.8 that QC keeps:

* ``non-border cells, qc_pass`` (the headline): border cells are rejected by policy (their
  size is cut) and their reference masks are cut by the same edge, so IoU cannot judge them;
* ``all cells, reasons other than border``: the quality checks on every predicted cell;
* ``all cells, qc_pass``: for completeness.

Run: ``python benchmarks/qc_usefulness.py [--threads 1]`` (~20 s on one CPU thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DATA = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
PIXEL_SIZE_UM = 0.333


def load_samples(data: Path = DATA) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """{sample: [(fov, dpc in [0, 1], reference mask), ...]} of the two Octopi data sets."""
    import imageio.v3 as iio

    big = data / "octopi_rbc_dpc_m2unet"
    harness = data / "octopi_rbc_dpc_harness"
    samples = {"octopi_1024": [("dpc_1024_00", iio.imread(big / "images/dpc_1024_00.png"),
                                iio.imread(big / "masks/dpc_1024_00_mask.png"))], "harness": []}
    for img in sorted((harness / "images").glob("*_dpc.png")):
        stem = img.name[: -len("_dpc.png")]
        samples["harness"].append((stem, iio.imread(img), iio.imread(harness / "masks" / f"{stem}_mask.png")))
    return {k: [(n, i.astype(np.float32) / 255, m) for n, i, m in v] for k, v in samples.items()}


def run(threads: int = 1, data: Path = DATA):
    """Segment, measure, flag; return the cell table with ``iou`` and the three scores."""
    import pandas as pd
    import torch

    torch.set_num_threads(threads)
    from scopeflow.evaluate.usefulness import best_iou, flag_sample, usefulness
    from scopeflow.segment import make_predictor
    from scopeflow.segment.chunked import segment_image

    predictor = make_predictor("unet", device="cpu", threads=threads)
    tables = []
    for sample, fovs in load_samples(data).items():
        labels = [np.asarray(segment_image(img, predictor, None, num_workers=1)) for _, img, _ in fovs]
        cells, _ = flag_sample([i for _, i, _ in fovs], labels, [n for n, _, _ in fovs], PIXEL_SIZE_UM,
                               sample=sample)
        ious = []
        for (name, _, ref), lab in zip(fovs, labels):
            ids = cells.loc[cells["fov"] == name, "cell_id"].to_numpy()
            ious.append(best_iou(lab, ref, ids))
        cells["iou"] = np.concatenate(ious)
        tables.append(cells)
    cells = pd.concat(tables, ignore_index=True)
    interior = ~cells["touches_border"].to_numpy(bool)
    other = ~cells["qc_reason"].astype(str).str.replace(r"(^|;)border(;|$)", r"\1", regex=True).str.strip(";").ne("")
    scores = {
        "non-border cells, qc_pass": usefulness(cells["iou"][interior], cells["qc_pass"][interior]),
        "all cells, reasons other than border": usefulness(cells["iou"], other.to_numpy()),
        "all cells, qc_pass": usefulness(cells["iou"], cells["qc_pass"]),
    }
    return cells, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    cells, scores = run(args.threads)
    print(f"{len(cells)} predicted cells ({cells['sample'].value_counts().to_dict()}), "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"{'population':40s} {'n':>5} {'kept':>5} {'IoU kept':>9} {'IoU rej':>8} {'delta':>6} {'IoU>=0.8 kept':>14}")
    for name, s in scores.items():
        print(f"{name:40s} {s['n']:5d} {s['n_kept']:5d} {s['mean_iou_kept']:9.3f} {s['mean_iou_rejected']:8.3f} "
              f"{s['delta_mean_iou']:6.3f} {s['good_kept_fraction']:14.3f}")
    reasons = cells["qc_reason"].astype(str).str.split(";").explode()
    reasons = reasons[reasons != ""]
    print("rejections by reason (a cell can have several):")
    for reason, n in reasons.value_counts().items():
        sel = cells["qc_reason"].astype(str).str.split(";").apply(lambda r, x=reason: x in r)
        print(f"  {reason:14s} {n:5d} cells, mean IoU {cells['iou'][sel].mean():.3f}")


if __name__ == "__main__":
    main()
