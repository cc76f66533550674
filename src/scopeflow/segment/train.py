"""Train (or fine-tune) the M2U-Net RBC segmenter on DPC images and masks (``scopeflow train``).

Data, targets and augmentation: :mod:`scopeflow.segment.train_data`. Loss: cross-entropy
+ soft Dice (3 classes) or BCE + soft Jaccard (1 class); AdamW with linear warm-up and
cosine decay (:mod:`scopeflow.models.training`). Every ``val_every`` steps the model is
run on the whole validation images, decoded to instances and scored with
:func:`scopeflow.evaluate.evaluate`; the best model (``select``) is written to
``out`` together with its metadata, and a resumable checkpoint (model, optimizer,
scheduler, step, RNG states, history) to ``out.with_suffix(".ckpt")``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from scopeflow.errors import ScopeflowError
from scopeflow.models.m2unet import M2UNet
from scopeflow.models.training import make_optimizer, run_steps
from scopeflow.models.weights import load_checkpoint, save_weights
from scopeflow.segment.decode import decode_maps
from scopeflow.segment.train_data import CropPool, make_target, pair_images_masks
from scopeflow.segment.unet import UNetPredictor

__all__ = ["add_arguments", "train", "train_main"]

HEADS = {"3class": 3, "1class": 1}
FREEZE = ("none", "encoder", "decoder_only", "head_only")
ORIENT = ("dihedral", "dpc_x", "dpc_y", "none")


# ----------------------------------------------------------------------------- loss
def _loss(logits: torch.Tensor, target: torch.Tensor, head: str, eps: float = 1.0) -> torch.Tensor:
    """CE + soft Dice (3 classes) or BCE + soft Jaccard (1 class)."""
    if head == "3class":
        ce = F.cross_entropy(logits, target)
        prob = torch.softmax(logits, 1)
        onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).to(prob.dtype)
        inter = (prob * onehot).sum((0, 2, 3))
        denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        dice = (2 * inter + eps) / (denom + eps)
        return ce + (1 - dice.mean())
    logit = logits[:, 0]
    bce = F.binary_cross_entropy_with_logits(logit, target)
    prob = torch.sigmoid(logit)
    inter = (prob * target).sum()
    union = prob.sum() + target.sum() - inter
    return 0.7 * bce + 0.3 * (1 - (inter + eps) / (union + eps))


# ------------------------------------------------------------------------ training
def _apply_freeze(net: M2UNet, freeze: str) -> list[torch.nn.Module]:
    """Freeze parts of the network; return the frozen modules (kept in eval mode)."""
    if freeze not in FREEZE:
        raise ValueError(f"freeze must be one of {FREEZE}, got {freeze!r}")
    frozen: list[torch.nn.Module] = []
    if freeze in ("encoder", "decoder_only"):
        frozen = net.encoder_modules()
    elif freeze == "head_only":
        frozen = net.encoder_modules() + net.decoder_modules()
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    return frozen


def _load_init(net: M2UNet, path: str | Path) -> None:
    sd = load_checkpoint(path, verify=False)["state_dict"]
    sd = sd.get("model", sd)  # a training checkpoint (.ckpt) holds the weights under "model"
    own = net.state_dict()
    skipped = [k for k, v in sd.items() if k not in own or own[k].shape != v.shape]
    net.load_state_dict({k: v for k, v in sd.items() if k not in skipped}, strict=False)
    if skipped:
        print(f"init_weights: not loaded (shape/name mismatch): {skipped}", file=sys.stderr)


def _predict_probs(net: M2UNet, z: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Whole-image forward: (logits tensor, probability maps (C, h, w))."""
    logits = net(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))[None, None])
    probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, 1)
    return logits, probs[0].numpy()


def _evaluate_pool(
    net: M2UNet, pool: CropPool, head: str, contour_width: int, decode_kw: dict
) -> dict:
    """Validation loss and segmentation scores (averaged over images, weighted by cells)."""
    from scopeflow.evaluate import evaluate

    net.eval()
    losses, rows = [], []
    with torch.inference_mode():
        for im, lab, (mean, std) in zip(pool.images, pool.labels, pool.stats):
            logits, probs = _predict_probs(net, (im - mean) / std)
            tgt = torch.from_numpy(make_target(lab, head, contour_width))[None]
            losses.append(float(_loss(logits, tgt, head)))
            pred, _ = decode_maps(probs, max_extent=UNetPredictor.object_size, **decode_kw)
            rows.append(evaluate(pred, lab))
    out = {"loss": float(np.mean(losses))}
    for key in ("binary_iou", "dice", "f1", "mean_ap", "count_error"):
        out[key] = float(np.mean([r[key] for r in rows]))
    out["n_pred"] = int(sum(r["n_pred"] for r in rows))
    out["n_ref"] = int(sum(r["n_ref"] for r in rows))
    return out


def _score(row: dict, select: str) -> float:
    if select == "loss":
        return -row["loss"]
    if select == "f1":
        return row["f1"]
    return 0.5 * (row["binary_iou"] + row["f1"])


def train(
    images: Sequence[str | Path] | str | Path,
    masks: Sequence[str | Path] | str | Path,
    out: str | Path,
    *,
    val_images: Sequence[str | Path] | str | Path | None = None,
    val_masks: Sequence[str | Path] | str | Path | None = None,
    val_fraction: float = 0.2,
    head: str = "3class",
    steps: int = 1000,
    crop: int = 256,
    batch_size: int = 8,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    warmup: int = 50,
    seed: int = 0,
    resume: str | Path | None = None,
    init_weights: str | Path | None = None,
    freeze: str = "none",
    contour_width: int = 1,
    augment: bool = True,
    orient: str = "dihedral",
    val_every: int = 100,
    select: str = "iou_f1",
    threads: int | None = None,
    progress: bool = True,
    command: str | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train an M2U-Net segmenter and write the best weights to ``out``.

    Parameters
    ----------
    images, masks : path or sequence of paths
        Training images and masks (files or folders), paired by stem
        (:func:`pair_images_masks`).
    out : str or Path
        Weights file to write (``{"state_dict", "meta"}``); the resumable
        checkpoint goes to ``out.with_suffix(".ckpt")``. A model card
        ``out.with_suffix(".md")`` gets its ``sha256:`` line updated (or is created).
    val_images, val_masks : path or sequence of paths, optional
        Validation set. Without it, ``val_fraction`` of the training pairs (at
        least one, if there are two or more) is held out.
    val_fraction : float, default 0.2
        Fraction of pairs held out when no validation set is given (0 = none).
    head : {"3class", "1class"}
        Background/body/contour softmax head, or a foreground sigmoid head.
    steps : int, default 1000
        Total optimizer steps (a resumed run continues up to this number).
    crop, batch_size : int
        Square crop side (pixels) and crops per step.
    lr, weight_decay : float
        AdamW settings; the lr warms up linearly over ``warmup`` steps, then
        follows a cosine decay to 1 % of ``lr``.
    warmup : int, default 50
        Warm-up steps.
    seed : int, default 0
        Seeds numpy's Generator (crops, augmentation) and torch (initialization).
    resume : str or Path, optional
        Checkpoint (``.ckpt``) to continue from: model, optimizer, scheduler,
        step, RNG states, best model and history.
    init_weights : str or Path, optional
        Weights to start from (fine-tuning); tensors whose shape differs (e.g. a
        1-class head into a 3-class model) are left at their initialization.
    freeze : {"none", "encoder", "decoder_only", "head_only"}
        Parameters kept fixed: the encoder ("encoder"; "decoder_only" trains
        decoder and head, the same thing) or everything but the head.
    contour_width : int, default 1
        Width of the contour ring in 3-class targets.
    augment : bool, default True
        Use the augmentations (off: plain random crops).
    orient : {"dihedral", "dpc_x", "dpc_y", "none"}
        Orientation augmentation: all 8 flips/90° rotations (the model becomes
        blind to the DPC direction), only y-flips (keep the relief of a DPC taken
        with left/right illumination, as in Octopi), only x-flips (top/bottom
        illumination, relief along y), or none.
    val_every : int, default 100
        Steps between validations (and checkpoints).
    select : {"iou_f1", "f1", "loss"}
        Best-model criterion on the validation set: mean of binary IoU and
        instance F1@0.5, F1 alone, or the lowest loss.
    threads : int, optional
        torch CPU threads.
    progress : bool, default True
        Show a tqdm progress bar with the running loss.
    command : str, optional
        Command line recorded in the weights' metadata.
    stop_after : int, optional
        Stop after this many steps in this call (a time-sliced job); the
        checkpoint is written then, and ``resume`` continues the same schedule.

    Returns
    -------
    dict
        ``history`` (list of {step, loss, lr, sec_per_step} every ``val_every``),
        ``val`` (list of validation rows with step, loss, binary_iou, dice, f1,
        mean_ap, count_error), ``best`` (the selected row), ``out``, ``sha256``,
        ``sec_per_step`` (mean), ``steps``.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {tuple(HEADS)}, got {head!r}")
    if crop % 16:
        raise ValueError(f"crop must be a multiple of 16, got {crop}")
    if orient not in ORIENT:
        raise ValueError(f"orient must be one of {ORIENT}, got {orient!r}")
    if select not in ("iou_f1", "f1", "loss"):
        raise ValueError(f"select must be 'iou_f1', 'f1' or 'loss', got {select!r}")
    if threads is not None:
        torch.set_num_threads(int(threads))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt_path = out.with_suffix(".ckpt")

    pairs = pair_images_masks(images, masks)
    if val_images is not None:
        if val_masks is None:
            raise ScopeflowError("val_images given without val_masks")
        val_pairs = pair_images_masks(val_images, val_masks)
    elif val_fraction > 0 and len(pairs) >= 2:
        n_val = max(1, int(round(val_fraction * len(pairs))))
        val_pairs, pairs = pairs[-n_val:], pairs[:-n_val]
    else:
        val_pairs = []
    pool = CropPool(pairs)
    val_pool = CropPool(val_pairs) if val_pairs else None

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = M2UNet(1, HEADS[head])
    if init_weights is not None and resume is None:
        _load_init(net, init_weights)
    frozen = _apply_freeze(net, freeze)
    params = [p for p in net.parameters() if p.requires_grad]
    opt, sched = make_optimizer(params, lr, steps=steps, weight_decay=weight_decay, schedule="cosine",
                                warmup=warmup, floor=0.01)
    decode_kw: dict[str, Any] = {}

    step = 0
    history: list[dict] = []
    val_rows: list[dict] = []
    best: dict[str, Any] = {"score": -math.inf, "row": None, "state_dict": None}
    if resume is not None:
        ck = torch.load(resume, map_location="cpu", weights_only=True)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step = int(ck["step"])
        rng.bit_generator.state = ck["rng_numpy"]
        torch.set_rng_state(ck["rng_torch"])
        history = list(ck.get("history", []))
        val_rows = list(ck.get("val", []))
        if ck.get("best_state_dict") is not None:
            best = {
                "score": float(ck["best_score"]),
                "row": ck["best_row"],
                "state_dict": ck["best_state_dict"],
            }

    config = {
        "head": head, "steps": int(steps), "crop": int(crop), "batch_size": int(batch_size),
        "lr": float(lr), "weight_decay": float(weight_decay), "warmup": int(warmup),
        "seed": int(seed),
        "freeze": freeze, "contour_width": int(contour_width), "augment": bool(augment),
        "orient": orient,
        "select": select, "train_images": [p[0].name for p in pairs],
        "val_images": [p[0].name for p in val_pairs],
        "init_weights": str(init_weights) if init_weights else "",
    }

    def save_ckpt() -> None:
        torch.save(
            {
                "model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "step": step,
                "rng_numpy": rng.bit_generator.state, "rng_torch": torch.get_rng_state(),
                "history": history, "val": val_rows, "config": config,
                "best_score": best["score"], "best_row": best["row"],
                "best_state_dict": best["state_dict"],
            },
            ckpt_path,
        )

    def validate() -> None:
        if val_pool is None:
            return
        row = {"step": step, **_evaluate_pool(net, val_pool, head, contour_width, decode_kw)}
        val_rows.append(row)
        s = _score(row, select)
        if s > best["score"]:
            snapshot = {k: v.clone() for k, v in net.state_dict().items()}
            best.update(score=s, row=row, state_dict=snapshot)

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = None
    if tqdm is not None:
        bar = tqdm(total=steps, initial=step, disable=not progress, dynamic_ncols=True)

    t_start = time.perf_counter()
    t_block, losses_block, first_step = time.perf_counter(), [], step
    stop_at = steps if stop_after is None else min(steps, step + int(stop_after))

    def batches():
        for _ in range(step, stop_at):
            xs, ys = zip(*(pool.sample(rng, crop, augment, orient) for _ in range(batch_size)))
            x = torch.from_numpy(np.stack(xs))[:, None]
            yield x, torch.from_numpy(np.stack([make_target(y, head, contour_width) for y in ys]))

    def on_step(lv: float, ema: float) -> None:
        nonlocal step, t_block, losses_block
        step += 1
        losses_block.append(lv)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.4f}", refresh=False)
        if step % val_every == 0 or step == stop_at:
            dt = (time.perf_counter() - t_block) / max(1, len(losses_block))
            history.append({"step": step, "loss": float(np.mean(losses_block)),
                            "lr": float(opt.param_groups[0]["lr"]), "sec_per_step": float(dt)})
            validate()
            if val_rows and bar is not None:
                r = val_rows[-1]
                bar.set_postfix(
                    loss=f"{ema:.4f}", val_iou=f"{r['binary_iou']:.3f}", val_f1=f"{r['f1']:.3f}"
                )
            if not progress:
                msg = dict(history[-1])
                if val_rows:
                    msg.update({f"val_{k}": v for k, v in val_rows[-1].items() if k != "step"})
                print(json.dumps(msg), flush=True)
            save_ckpt()
            t_block, losses_block = time.perf_counter(), []

    run_steps(net, opt, sched, batches(), lambda net, b: _loss(net(b[0]), b[1], head), frozen=frozen,
              on_step=on_step)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t_start

    final_sd = best["state_dict"] if best["state_dict"] is not None else net.state_dict()
    meta = {
        "arch": "m2unet", "in_channels": 1, "out_channels": HEADS[head], "head": head,
        "normalization": "zscore_fov",
        "input": "DPC float in [0, 1], z-scored by whole-FOV mean/std",
        "contour_width": int(contour_width), "decode": decode_kw,
        "train": {**config, "best_step": int(best["row"]["step"]) if best["row"] else int(step),
                  "command": command or ""},
        "val": {k: float(v) for k, v in (best["row"] or {}).items() if k != "step"},
    }
    sha = save_weights(final_sd, meta, out, (
        f"M2U-Net ({meta['head']} head) trained with scopeflow.segment.train.\n\n"
        f"- command: `{meta['train'].get('command', '')}`\n"
        f"- best step: {meta['train']['best_step']}; validation: "
        + ", ".join(f"{k}={v:.4f}" for k, v in meta["val"].items())
    ))
    steps_run = step - first_step
    return {
        "history": history, "val": val_rows, "best": best["row"], "out": str(out), "sha256": sha,
        "sec_per_step": elapsed / max(1, steps_run), "steps": step,
    }


# ----------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``scopeflow train`` (registered by :func:`scopeflow.cli.build_parser`)."""
    p.add_argument("--images", nargs="+", required=True, help="training image files or folders")
    p.add_argument("--masks", nargs="+", required=True,
                   help="mask files or folders (0/255 or labels)")
    p.add_argument("--val-images", nargs="+", default=None,
                   help="validation image files or folders")
    p.add_argument("--val-masks", nargs="+", default=None, help="validation mask files or folders")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="held-out fraction without --val-images")
    p.add_argument("--out", required=True, help="weights file to write (.pt)")
    p.add_argument("--head", choices=tuple(HEADS), default="3class")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default=None, help="checkpoint (.ckpt) to continue from")
    p.add_argument("--init-weights", default=None, help="weights to fine-tune from")
    p.add_argument("--freeze", choices=FREEZE, default="none")
    p.add_argument("--contour-width", type=int, default=1)
    p.add_argument("--no-augment", action="store_true", help="plain random crops only")
    p.add_argument("--orient", choices=ORIENT, default="dihedral",
                   help="orientation augmentation (dpc_x: y-flips only, keeps a DPC relief "
                        "along x; dpc_y: x-flips only, for a relief along y)")
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--select", choices=("iou_f1", "f1", "loss"), default="iou_f1")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (the job's cores)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after N steps (resume later)")
    p.add_argument("--no-progress", action="store_true",
                   help="print JSON lines instead of a progress bar")


def train_main(a: argparse.Namespace, argv: list[str]) -> int:
    """``scopeflow train`` (run by :func:`scopeflow.cli.main`).

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments (:func:`add_arguments`).
    argv : list of str
        The command's arguments as given, recorded in the weights' metadata.

    Returns
    -------
    int
        Exit status 0. A JSON summary (out, sha256, steps, sec_per_step, best
        validation row) is printed as the last line of stdout.
    """
    res = train(
        a.images, a.masks, a.out,
        val_images=a.val_images, val_masks=a.val_masks, val_fraction=a.val_fraction,
        head=a.head, steps=a.steps, crop=a.crop, batch_size=a.batch_size, lr=a.lr,
        weight_decay=a.weight_decay, warmup=a.warmup, seed=a.seed, resume=a.resume,
        init_weights=a.init_weights, freeze=a.freeze, contour_width=a.contour_width,
        augment=not a.no_augment, orient=a.orient, val_every=a.val_every, select=a.select,
        threads=a.threads, progress=not a.no_progress,
        command="scopeflow train " + shlex.join(argv), stop_after=a.stop_after,
    )
    print(json.dumps({k: res[k] for k in ("out", "sha256", "steps", "sec_per_step", "best")}))
    return 0

