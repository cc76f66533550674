"""Train the M2U-Net recipe on another modality and report instance scores.

Generality check of ``scopeflow train`` (:func:`scopeflow.segment.train.train`)
outside Octopi DPC: the same network, 3-class head (background / body / contour
made from the instance masks) and loss, trained from scratch, then scored with
:func:`scopeflow.evaluate.evaluate` (binary IoU, Dice, instance F1 at IoU ≥ 0.5,
mean AP over IoU 0.5:0.95, count error) on held-out pixels.

Datasets (``../shared/data``, see each folder's SOURCE.md):

* ``stardist``: ``stardist_dsb2018_nuclei`` — one 512² DSB-2018 fluorescence
  nuclei image (uint16 holding 8-bit values, divided by 255 into a float TIFF)
  with 125 instance-labelled nuclei. Train on the left 60 % (x < 307), test on
  the right 40 % (nuclei cut by the split are partial in both halves).
* ``omnipose``: ``omnipose_bacteria_phase`` — three phase-contrast bacteria
  images (uint16) with Omnipose instance masks (``*_cp_masks.tif``, model output,
  not manual). Train on two, test on the third (default: test
  ``ec_5I_t141xy5c1``, 159 cells; ``--folds all`` runs the three leave-one-out
  folds). The raw files go straight into ``scopeflow train`` (masks paired by the
  Cellpose ``_cp_masks`` suffix).

Both modalities are orientation-free, so ``--orient dihedral``; bacteria are
≈ 10 px wide, so their contour ring is 1 px (nuclei: 2 px). Predictions are
decoded with :func:`scopeflow.segment.decode.decode_maps` defaults (``t_body`` 0.5)
without the RBC size limit (bacteria reach 156 px).

For context the script also prints a generic classical baseline written here
(Gaussian σ 1 px, Otsu threshold with the modality's polarity — bright nuclei,
dark bacteria —, hole filling, seeded watershed on the distance transform). The
project's :class:`scopeflow.segment.classical.ClassicalPredictor` integrates a DPC
derivative and does not apply to fluorescence or phase-contrast images.

Real data are looked up in $SCOPEFLOW_SHARED_DATA or ../shared/data next to the repository.

Usage::

    python benchmarks/train_other_modality.py                 # both datasets, 150 steps
    python benchmarks/train_other_modality.py --dataset omnipose --folds all
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from scopeflow.evaluate import evaluate
from scopeflow.models.m2unet import M2UNet
from scopeflow.segment.train import train
from scopeflow.segment.train_data import read_image, read_instances
from scopeflow.models.m2unet_files import load_weights
from scopeflow.segment.decode import decode_maps

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
METRICS = ("binary_iou", "dice", "f1", "mean_ap", "count_error", "n_pred", "n_ref")
OMNI = ("caulo_15", "e1t1_crop", "ec_5I_t141xy5c1")


# ------------------------------------------------------------------------ datasets
def stardist_split(work: Path) -> dict:
    """Write the left 60 % as a training pair; return paths and the test arrays."""
    import tifffile

    src = SHARED / "stardist_dsb2018_nuclei"
    img = tifffile.imread(src / "img2d.tif").astype(np.float32) / 255.0
    lab = tifffile.imread(src / "mask2d.tif").astype(np.int32)
    cut = int(round(0.6 * img.shape[1]))
    d = work / "stardist"
    (d / "images").mkdir(parents=True, exist_ok=True)
    (d / "masks").mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(d / "images" / "nuclei_left.tif", img[:, :cut])
    tifffile.imwrite(d / "masks" / "nuclei_left_mask.tif", lab[:, :cut].astype(np.uint16))
    return {
        "name": "stardist", "fold": f"train x<{cut}, test x>={cut}",
        "images": [d / "images"], "masks": [d / "masks"],
        "test": [("nuclei_right", img[:, cut:], lab[:, cut:])],
        "contour_width": 2, "bright": True, "min_distance": 5,
        "n_train_cells": len(np.unique(lab[:, :cut])) - 1,
    }


def omnipose_fold(test: str) -> dict:
    """Train on the two other images (raw files), test on ``test``."""
    src = SHARED / "omnipose_bacteria_phase"
    train_names = [n for n in OMNI if n != test]
    n_train = sum(len(np.unique(read_instances(src / "masks" / f"{n}_cp_masks.tif"))) - 1
                  for n in train_names)
    return {
        "name": "omnipose", "fold": f"train {'+'.join(train_names)}, test {test}",
        "images": [src / "images" / f"{n}.tif" for n in train_names],
        "masks": [src / "masks"],
        "test": [(test, read_image(src / "images" / f"{test}.tif"),
                  read_instances(src / "masks" / f"{test}_cp_masks.tif"))],
        "contour_width": 1, "bright": False, "min_distance": 3, "n_train_cells": n_train,
    }


# -------------------------------------------------------------------------- models
def predict_maps(weights: Path, image: np.ndarray) -> np.ndarray:
    """Whole-image probability maps (3, h, w) with whole-image z-scoring."""
    obj = load_weights(weights)
    net = M2UNet(1, int(obj["meta"]["out_channels"]))
    net.load_state_dict(obj["state_dict"])
    net.eval()
    z = (image - image.mean()) / max(float(image.std()), 1e-6)
    with torch.inference_mode():
        logits = net(torch.from_numpy(z.astype(np.float32))[None, None])
    return torch.softmax(logits, 1)[0].numpy()


def classical(image: np.ndarray, bright: bool, min_distance: int) -> np.ndarray:
    """Generic Otsu + distance-transform watershed instances."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    sm = ndi.gaussian_filter(image.astype(np.float64), 1.0)
    t = threshold_otsu(sm)
    fg = sm > t if bright else sm < t
    comp, _ = ndi.label(fg)
    fg = ndi.binary_fill_holes((np.bincount(comp.ravel()) >= 15)[comp] & fg)
    dist = ndi.distance_transform_edt(fg)
    comp, _ = ndi.label(fg)
    peaks = peak_local_max(ndi.gaussian_filter(dist, 1.0), min_distance=min_distance,
                           labels=comp, exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=fg).astype(np.int32)


def cli(ds: dict, out: Path, a: argparse.Namespace) -> str:
    args = ["--images", *map(str, ds["images"]), "--masks", *map(str, ds["masks"]),
            "--out", str(out), "--val-fraction", "0", "--head", "3class",
            "--contour-width", str(ds["contour_width"]), "--orient", "dihedral",
            "--steps", str(a.steps), "--warmup", str(a.warmup), "--crop", str(a.crop),
            "--batch-size", str(a.batch_size), "--lr", f"{a.lr:g}", "--seed", str(a.seed),
            "--threads", str(a.threads)]
    return "scopeflow train " + shlex.join(args) + " --no-progress"


def run(ds: dict, work: Path, a: argparse.Namespace) -> list[dict]:
    out = work / f"{ds['name']}_{ds['test'][0][0]}.pt"
    cmd = cli(ds, out, a)
    print(f"\n## {ds['name']}: {ds['fold']} ({ds['n_train_cells']} training cells)\n  {cmd}",
          flush=True)
    t0 = time.perf_counter()
    res = train(ds["images"], ds["masks"], out, val_fraction=0.0, head="3class",
                contour_width=ds["contour_width"], orient="dihedral", steps=a.steps,
                warmup=a.warmup, crop=a.crop, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                threads=a.threads, val_every=max(1, a.steps // 3), progress=False, command=cmd)
    sec = time.perf_counter() - t0
    rows = []
    for name, image, lab in ds["test"]:
        pred, _ = decode_maps(predict_maps(out, image))
        for method, labels in (("m2unet", pred),
                               ("otsu+watershed", classical(image, ds["bright"],
                                                            ds["min_distance"]))):
            r = evaluate(labels, lab)
            rows.append({"dataset": ds["name"], "fold": ds["fold"], "test": name,
                         "method": method, "train_s": sec if method == "m2unet" else 0.0,
                         "final_loss": res["history"][-1]["loss"], "command": cmd,
                         **{k: float(r[k]) for k in METRICS}})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "command"}), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", nargs="+", choices=("stardist", "omnipose"),
                   default=["stardist", "omnipose"])
    p.add_argument("--folds", choices=("one", "all"), default="one",
                   help="omnipose: test ec_5I_t141xy5c1 only, or all three leave-one-out folds")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="folder for weights (default: temp)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tmp = tempfile.TemporaryDirectory(prefix="other_modality_") if a.work is None else None
    work = Path(tmp.name if tmp else a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in a.dataset:
        if name == "stardist":
            rows += run(stardist_split(work), work, a)
        else:
            tests = OMNI if a.folds == "all" else ("ec_5I_t141xy5c1",)
            for t in tests:
                rows += run(omnipose_fold(t), work, a)
    print("\n| dataset | split | method | binary IoU | Dice | F1@0.5 | mean AP | count error | "
          "n pred / ref | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['fold']} | {r['method']} | {r['binary_iou']:.3f} | "
              f"{r['dice']:.3f} | {r['f1']:.3f} | {r['mean_ap']:.3f} | "
              f"{100 * r['count_error']:+.1f} % | {r['n_pred']:.0f} / {r['n_ref']:.0f} | "
              f"{r['train_s']:.0f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
