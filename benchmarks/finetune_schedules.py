"""Fine-tuning freeze schedules for a differently lit microscope (shifted DPC domain).

A lab whose microscope is lit differently labels a few images and fine-tunes the
shipped M2U-Net (``src/scopeflow/models/m2unet_rbc_dpc.pt``). This benchmark
simulates that on the real Octopi data with a deterministic image-domain shift,
fine-tunes with each freeze schedule under the same budget (steps, batch, crop,
seed, data), and scores the held-out field ``dpc_1024_00`` under the same shift.

Shifts (applied to a whole field of view, before cropping):

* ``lighting``: a dim, slightly defocused, unevenly lit DPC. On the z-scored DPC
  ``d``: Gaussian blur σ = 1.5 px (defocus), compressive response ``tanh(d / 1.5)``
  (saturating detector / weaker illumination NA), a smooth background
  ``0.7 · sin(3u + 2v)`` (u, v = x, y / field size; unequal LED halves) and
  Gaussian noise σ = 0.4 (fixed per field, seeded by its name); written back as
  ``0.5 + 0.05 · d`` clipped to [0, 1].
* ``dpc_y``: the DPC relief runs along y (top/bottom illumination): image and
  masks are rotated by 90°. Fine-tuning uses ``--orient dpc_y`` (x-flips only).

Schedules (``scopeflow train --freeze``): ``zero_shot`` (no training),
``head_only`` (1×1 head), ``encoder`` (encoder frozen: decoder + head trained; the
same as ``decoder_only``), ``all`` (``--freeze none``), ``encoder_then_all``
(half the steps with the encoder frozen, then half with everything, each a
``scopeflow train`` call), and ``scratch`` (random init, all trained, the shipped
recipe's lr 1e-2). Frozen modules stay in eval mode, so their BatchNorm
statistics stay those of the source domain.

Training set: three 512² crops of the shifted ``dpc_2048_00`` / ``dpc_2048_01``
(≈ 750 cells), 3-class head with a 2-px contour as for the shipped model, no
validation set (a lab with three labelled crops has none), the final weights are
scored. Test: the whole shifted ``dpc_1024_00`` (1014 cells, never trained on by
the shipped model either), decoded with the shipped model's ``t_body`` 0.8 for every
model, scored with :func:`scopeflow.evaluate.evaluate`.

Real data are looked up in $SCOPEFLOW_SHARED_DATA or ../shared/data next to the repository.

Usage::

    python benchmarks/finetune_schedules.py                       # both shifts, seed 0
    python benchmarks/finetune_schedules.py --shift lighting --seeds 0 1

Prints one Markdown table per shift plus the ``scopeflow train`` command of each run;
``--json`` writes all rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from scopeflow.evaluate import evaluate
from scopeflow.segment.train import train
from scopeflow.segment.train_data import read_image, read_instances
from scopeflow.models.m2unet_files import DEFAULT_WEIGHTS
from scopeflow.segment.unet import UNetPredictor

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
DATA = SHARED / "octopi_rbc_dpc_m2unet"
TEST = "dpc_1024_00"
#: (field, y0, x0) of the 512² fine-tuning crops (in the shifted field's frame).
CROPS = (("dpc_2048_00", 256, 256), ("dpc_2048_00", 1280, 1280), ("dpc_2048_01", 768, 1024))
CROP = 512
SCHEDULES = ("zero_shot", "head_only", "encoder", "all", "encoder_then_all", "scratch")
METRICS = ("binary_iou", "dice", "f1", "mean_ap", "count_error")


# --------------------------------------------------------------------------- shifts
def shift_lighting(image: np.ndarray, labels: np.ndarray, name: str):
    """Dim, defocused, unevenly lit DPC (labels unchanged); deterministic per ``name``."""
    im = image.astype(np.float64)
    d = (im - im.mean()) / max(im.std(), 1e-6)
    d = ndi.gaussian_filter(d, 1.5)
    d = np.tanh(d / 1.5)
    h, w = d.shape
    v, u = np.mgrid[0:h, 0:w] / float(max(h, w))
    d = d + 0.7 * np.sin(3.0 * u + 2.0 * v)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    d = d + 0.4 * rng.standard_normal(d.shape)
    return np.clip(0.5 + 0.05 * d, 0.0, 1.0).astype(np.float32), labels


def shift_dpc_y(image: np.ndarray, labels: np.ndarray, name: str):
    """DPC relief along y (top/bottom illumination): rotate image and labels by 90°."""
    return np.ascontiguousarray(np.rot90(image)), np.ascontiguousarray(np.rot90(labels))


SHIFTS = {"lighting": (shift_lighting, "dpc_x"), "dpc_y": (shift_dpc_y, "dpc_y")}


def load_field(name: str, shift: str) -> tuple[np.ndarray, np.ndarray]:
    """Shifted image (float32 [0, 1]) and instance labels of one field of view."""
    im = read_image(DATA / "images" / f"{name}.png")
    lab = read_instances(DATA / "masks" / f"{name}_mask.png")
    return SHIFTS[shift][0](im, lab, name)


def write_train_set(shift: str, folder: Path) -> tuple[Path, Path, int]:
    """Write the shifted 512² crops (float32 TIFF) and masks (0/255 PNG); return dirs, cells."""
    import imageio.v3 as iio
    import tifffile

    img_dir, mask_dir = folder / "images", folder / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cells = 0
    for name, y0, x0 in CROPS:
        if name not in fields:
            fields[name] = load_field(name, shift)
        im, lab = fields[name]
        ci, cl = im[y0 : y0 + CROP, x0 : x0 + CROP], lab[y0 : y0 + CROP, x0 : x0 + CROP]
        stem = f"{name}_{y0}_{x0}"
        tifffile.imwrite(img_dir / f"{stem}.tif", ci.astype(np.float32))
        iio.imwrite(mask_dir / f"{stem}_mask.png", ((cl > 0) * 255).astype(np.uint8))
        cells += len(np.unique(cl)) - 1
    return img_dir, mask_dir, cells


# ------------------------------------------------------------------------ training
def _cli(kw: dict) -> str:
    """The ``scopeflow train`` command equivalent to a :func:`train` call."""
    args = ["--images", str(kw["images"]), "--masks", str(kw["masks"]), "--out", str(kw["out"]),
            "--val-fraction", "0", "--head", "3class", "--contour-width", "2",
            "--orient", kw["orient"], "--steps", str(kw["steps"]), "--warmup", str(kw["warmup"]),
            "--crop", str(kw["crop"]), "--batch-size", str(kw["batch_size"]),
            "--lr", f"{kw['lr']:g}", "--seed", str(kw["seed"]), "--threads", str(kw["threads"])]
    if kw.get("init_weights"):
        args += ["--init-weights", str(kw["init_weights"])]
    if kw.get("freeze", "none") != "none":
        args += ["--freeze", kw["freeze"]]
    return "scopeflow train " + shlex.join(args) + " --no-progress"


def run_schedule(schedule: str, shift: str, imgs: Path, masks: Path, work: Path, seed: int,
                 a: argparse.Namespace) -> tuple[Path, list[str], float, float]:
    """Train one schedule; return (weights, commands, seconds, final train loss)."""
    base = dict(images=imgs, masks=masks, orient=SHIFTS[shift][1], crop=a.crop,
                batch_size=a.batch_size, seed=seed, threads=a.threads, warmup=a.warmup)
    stages: list[dict] = []
    out = work / f"{shift}_{schedule}_s{seed}.pt"
    if schedule in ("head_only", "encoder", "all"):
        freeze = "none" if schedule == "all" else schedule
        stages.append(dict(base, out=out, steps=a.steps, lr=a.lr, init_weights=DEFAULT_WEIGHTS,
                           freeze=freeze))
    elif schedule == "encoder_then_all":
        half = a.steps // 2
        mid = work / f"{shift}_{schedule}_s{seed}_stage1.pt"
        stages.append(dict(base, out=mid, steps=half, lr=a.lr, init_weights=DEFAULT_WEIGHTS,
                           freeze="encoder"))
        stages.append(dict(base, out=out, steps=a.steps - half, lr=a.lr, init_weights=mid,
                           freeze="none", warmup=min(a.warmup, (a.steps - half) // 4)))
    elif schedule == "scratch":
        stages.append(dict(base, out=out, steps=a.steps, lr=a.scratch_lr, init_weights=None,
                           freeze="none"))
    else:
        raise ValueError(schedule)
    t0, cmds, loss = time.perf_counter(), [], float("nan")
    for kw in stages:
        cmds.append(_cli(kw))
        res = train(
            kw["images"], kw["masks"], kw["out"], val_fraction=0.0, head="3class",
            contour_width=2, orient=kw["orient"], steps=kw["steps"], warmup=kw["warmup"],
            crop=kw["crop"], batch_size=kw["batch_size"], lr=kw["lr"], seed=kw["seed"],
            init_weights=kw["init_weights"], freeze=kw["freeze"], threads=kw["threads"],
            val_every=kw["steps"], progress=False, command=cmds[-1],
        )
        loss = float(res["history"][-1]["loss"]) if res["history"] else loss
    return out, cmds, time.perf_counter() - t0, loss


def score(weights: Path, image: np.ndarray, labels: np.ndarray, threads: int) -> dict:
    """Whole-image prediction with ``t_body`` 0.8 (the shipped decode), scored."""
    pred, _ = UNetPredictor(weights, device="cpu", threads=threads, t_body=0.8).segment(image)
    return evaluate(pred, labels)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shift", nargs="+", choices=tuple(SHIFTS), default=list(SHIFTS))
    p.add_argument("--schedules", nargs="+", choices=SCHEDULES, default=list(SCHEDULES))
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3, help="fine-tuning lr")
    p.add_argument("--scratch-lr", type=float, default=1e-2, help="lr of the from-scratch run")
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="folder for crops and weights (default: temp)")
    p.add_argument("--json", default=None, help="write all rows to this JSON file")
    a = p.parse_args(argv)
    if not DATA.is_dir():
        print(f"data not found: {DATA}", file=sys.stderr)
        return 1
    tmp = None
    if a.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="finetune_")
        work = Path(tmp.name)
    else:
        work = Path(a.work)
        work.mkdir(parents=True, exist_ok=True)
    rows = []
    for shift in a.shift:
        imgs, masks, cells = write_train_set(shift, work / f"data_{shift}")
        test_im, test_lab = load_field(TEST, shift)
        print(f"\n## shift {shift}: fine-tune on {len(CROPS)} crops of {CROP}² ({cells} cells), "
              f"test {TEST} ({len(np.unique(test_lab)) - 1} cells); {a.steps} steps × "
              f"{a.batch_size} × {a.crop}², lr {a.lr:g} (scratch {a.scratch_lr:g}), "
              f"orient {SHIFTS[shift][1]}", flush=True)
        for schedule in a.schedules:
            for seed in (a.seeds if schedule != "zero_shot" else [0]):
                if schedule == "zero_shot":
                    weights, cmds, sec, loss = DEFAULT_WEIGHTS, [], 0.0, float("nan")
                else:
                    weights, cmds, sec, loss = run_schedule(schedule, shift, imgs, masks, work,
                                                            seed, a)
                r = score(weights, test_im, test_lab, a.threads)
                row = {"shift": shift, "schedule": schedule, "seed": seed, "train_s": sec,
                       "train_loss": loss, "commands": cmds,
                       **{k: float(r[k]) for k in (*METRICS, "n_pred", "n_ref")}}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "commands"}), flush=True)
                for c in cmds:
                    print("  " + c, flush=True)
    # summary tables (mean over seeds)
    for shift in a.shift:
        print(f"\n### shift {shift} (test {TEST}; mean over seeds {a.seeds})\n")
        print("| schedule | seeds | binary IoU | Dice | F1@0.5 | mean AP | count error | "
              "train s |")
        print("|---|---|---|---|---|---|---|---|")
        for schedule in a.schedules:
            sel = [r for r in rows if r["shift"] == shift and r["schedule"] == schedule]
            if not sel:
                continue
            m = {k: np.mean([r[k] for r in sel]) for k in (*METRICS, "train_s")}
            f1s = "/".join(f"{r['f1']:.3f}" for r in sel)
            print(f"| {schedule} | {len(sel)} | {m['binary_iou']:.3f} | {m['dice']:.3f} | "
                  f"{m['f1']:.3f}" + (f" ({f1s})" if len(sel) > 1 else "") +
                  f" | {m['mean_ap']:.3f} | {100 * m['count_error']:+.1f} % | "
                  f"{m['train_s']:.0f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
