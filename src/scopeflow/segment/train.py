"""Train (or fine-tune) the M2U-Net RBC segmenter on DPC images and masks.

Masks are binary PNGs (0/255; touching cells separated by 1-px background lines,
instances = 4-connected components) or label images. Targets:

* ``head="3class"``: 0 = background, 1 = cell body, 2 = cell contour, where the
  contour is the inner ``contour_width``-pixel ring of every instance
  (:func:`skimage.segmentation.find_boundaries` with ``mode="inner"``);
* ``head="1class"``: foreground.

Inputs are z-scored with whole-FOV statistics (as :class:`UNetPredictor` does).
Augmentation draws everything from one :class:`numpy.random.Generator` seeded
with ``seed``: random crops, flips, 90° rotations, small rotations (±10°), Poisson
and Gaussian noise, contrast/brightness, slight blur; geometric transforms act on
the image and the instance labels alike and targets are made afterwards.

Loss: cross-entropy + soft Dice (3 classes) or BCE + soft Jaccard (1 class);
AdamW with linear warm-up and cosine decay. Every ``val_every`` steps the model is
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
from scipy import ndimage as ndi

from scopeflow.errors import ScopeflowError
from scopeflow.io import images
from scopeflow.segment.m2unet import M2UNet
from scopeflow.segment.unet import UNetPredictor, decode_maps, file_sha256, write_card_sha256

__all__ = [
    "make_target",
    "pair_images_masks",
    "read_image",
    "read_instances",
    "train",
    "train_main",
]

_CROSS = ndi.generate_binary_structure(2, 1)
_STEM_SUFFIXES = (
    "_dpc", "_cp_masks", "_masks", "_mask", "_labels", "_label", "_seg", "_gt", "_img", "_image",
)
HEADS = {"3class": 3, "1class": 1}
FREEZE = ("none", "encoder", "decoder_only", "head_only")
ORIENT = ("dihedral", "dpc_x", "dpc_y", "none")


# ----------------------------------------------------------------------------- I/O
def read_image(path: str | Path) -> np.ndarray:
    """Read a training DPC image as float32 (y, x) in [0, 1].

    :func:`scopeflow.io.images.read_image` with the ``"mean"`` colour rule: an RGB(A) image
    becomes the mean of its colour channels (Octopi PNGs repeat the DPC 3x); uint8 / 255,
    uint16 / 65535, floats kept.
    """
    return images.read_image(path, "mean")


def read_instances(path: str | Path) -> np.ndarray:
    """Read a mask as int32 instance labels.

    A binary mask (one positive value, e.g. 0/255) becomes its 4-connected
    components; a label image keeps its ids.
    """
    arr = images.read_image(path, "first", unit=False)
    pos = arr[arr > 0]
    if pos.size and pos.min() == pos.max():
        lab, _ = ndi.label(arr > 0, structure=_CROSS)
        return lab.astype(np.int32)
    return arr.astype(np.int32)


def _key(path: Path) -> str:
    stem = path.stem.lower()
    changed = True
    while changed:
        changed = False
        for suf in _STEM_SUFFIXES:
            if stem.endswith(suf) and len(stem) > len(suf):
                stem = stem[: -len(suf)]
                changed = True
    return stem


def _expand(items: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(items, (str, Path)):
        items = [items]
    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in images.IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise ScopeflowError(f"no such image file or folder: {p}")
    return out


def pair_images_masks(
    images: str | Path | Sequence[str | Path], masks: str | Path | Sequence[str | Path]
) -> list[tuple[Path, Path]]:
    """Pair images with masks by file stem.

    Stems are compared after removing suffixes such as ``_dpc``, ``_mask``,
    ``_label``, ``_cp_masks`` (so ``10_20_0_dpc.png`` ↔ ``10_20_0_mask.png``,
    ``dpc_2048_00.png`` ↔ ``dpc_2048_00_mask.png`` and Cellpose/Omnipose's
    ``caulo_15.tif`` ↔ ``caulo_15_cp_masks.tif``).

    Parameters
    ----------
    images, masks : path or sequence of paths
        Files and/or folders (folders contribute their image files, sorted).

    Returns
    -------
    list of (image, mask) paths
        In the order of ``images``. Masks without an image are ignored.

    Raises
    ------
    ScopeflowError
        An image has no mask, or two masks share a stem.
    """
    imgs = _expand(images)
    by_key: dict[str, Path] = {}
    for m in _expand(masks):
        k = _key(m)
        if k in by_key:
            raise ScopeflowError(f"masks {by_key[k]} and {m} pair with the same image stem {k!r}")
        by_key[k] = m
    pairs = []
    for im in imgs:
        k = _key(im)
        if k not in by_key:
            raise ScopeflowError(f"no mask for image {im} (looked for stem {k!r} + _mask)")
        pairs.append((im, by_key[k]))
    if not pairs:
        raise ScopeflowError(f"no training images found in {images}")
    return pairs


# ------------------------------------------------------------------------- targets
def make_target(labels: np.ndarray, head: str = "3class", contour_width: int = 1) -> np.ndarray:
    """Make the training target from instance labels.

    Parameters
    ----------
    labels : np.ndarray of int, shape (h, w)
        Instances (0 = background).
    head : {"3class", "1class"}
        Target kind.
    contour_width : int, default 1
        Width (pixels) of the inner contour ring (3-class head).

    Returns
    -------
    np.ndarray
        int64 classes 0/1/2 (background/body/contour) for ``"3class"``; float32
        foreground 0/1 for ``"1class"``.
    """
    from skimage.segmentation import find_boundaries

    fg = labels > 0
    if head == "1class":
        return fg.astype(np.float32)
    if head != "3class":
        raise ValueError(f"head must be '3class' or '1class', got {head!r}")
    target = fg.astype(np.int64)
    lab = labels
    for _ in range(max(1, int(contour_width))):
        ring = find_boundaries(lab, connectivity=1, mode="inner") & (lab > 0)
        target[ring] = 2
        lab = np.where(ring, 0, lab)
    return target


# -------------------------------------------------------------------- augmentation
class _Pool:
    """Training images (raw [0, 1] + FOV stats) and instance labels; crop sampler."""

    def __init__(self, pairs: list[tuple[Path, Path]]):
        self.images, self.labels, self.stats, self.names = [], [], [], []
        for ip, mp in pairs:
            im = read_image(ip)
            lab = read_instances(mp)
            if im.shape != lab.shape:
                raise ScopeflowError(
                    f"image {ip} {im.shape} and mask {mp} {lab.shape} differ in shape"
                )
            self.images.append(im)
            self.labels.append(lab)
            self.stats.append((float(im.mean()), float(max(im.std(), 1e-6))))
            self.names.append(ip.name)
        area = np.array([im.size for im in self.images], dtype=np.float64)
        self.p = area / area.sum()

    def sample(
        self, rng: np.random.Generator, crop: int, augment: bool, orient: str = "dihedral"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return one augmented (z-scored image, instance labels) crop."""
        i = int(rng.choice(len(self.images), p=self.p))
        im, lab = self.images[i], self.labels[i]
        mean, std = self.stats[i]
        angle = float(rng.uniform(-10, 10)) if augment and rng.random() < 0.5 else 0.0
        if angle:
            a = math.radians(angle)
            win = int(math.ceil(crop * (abs(math.cos(a)) + abs(math.sin(a))))) + 4
        else:
            win = crop
        y0 = int(rng.integers(0, max(1, im.shape[0] - win + 1)))
        x0 = int(rng.integers(0, max(1, im.shape[1] - win + 1)))
        x = _window(im, y0, x0, win)
        y = _window(lab, y0, x0, win)
        if angle:
            x, y = _rotate(x, y, angle, crop)
        if augment:
            if orient == "dihedral":
                k = int(rng.integers(0, 4))
                x, y = np.rot90(x, k), np.rot90(y, k)
                if rng.random() < 0.5:
                    x, y = x[:, ::-1], y[:, ::-1]
            elif orient == "dpc_x" and rng.random() < 0.5:
                x, y = x[::-1], y[::-1]  # a y-flip keeps the x-direction DPC relief
            elif orient == "dpc_y" and rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]  # an x-flip keeps the y-direction DPC relief
            if rng.random() < 0.25:  # Poisson (shot) noise on the raw DPC signal
                lam = float(rng.uniform(100, 1000))
                x = rng.poisson(np.clip(x, 0, None) * lam).astype(np.float32) / lam
        x = (np.ascontiguousarray(x, dtype=np.float32) - mean) / std
        y = np.ascontiguousarray(y)
        if augment:
            if rng.random() < 0.25:
                x = ndi.gaussian_filter(x, float(rng.uniform(0.5, 1.2)))
            x = x * float(np.exp(rng.uniform(-0.4, 0.4))) + float(rng.uniform(-0.3, 0.3))
            if rng.random() < 0.5:
                x = x + rng.normal(0.0, float(rng.uniform(0.0, 0.2)), x.shape).astype(np.float32)
        return x.astype(np.float32), y


def _window(a: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    w = a[y0 : y0 + size, x0 : x0 + size]
    ph, pw = size - w.shape[0], size - w.shape[1]
    if ph or pw:
        mode = "reflect" if (ph < w.shape[0] and pw < w.shape[1]) else "edge"
        w = np.pad(w, ((0, ph), (0, pw)), mode=mode)
    return w


def _rotate(
    x: np.ndarray, lab: np.ndarray, angle: float, out: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate image (linear) and labels (nearest) about the window centre; crop ``out``²."""
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c_in = (np.array(x.shape) - 1) / 2.0
    c_out = (np.array([out, out]) - 1) / 2.0
    offset = c_in - rot @ c_out
    shape = (out, out)
    xr = ndi.affine_transform(x, rot, offset=offset, output_shape=shape, order=1, mode="reflect")
    yr = ndi.affine_transform(lab, rot, offset=offset, output_shape=shape, order=0, mode="nearest")
    return xr.astype(np.float32), yr


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
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj:
        sd = obj["state_dict"]
    else:
        sd = obj.get("model", obj)
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
    net: M2UNet, pool: _Pool, head: str, contour_width: int, decode_kw: dict
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


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


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
    pool = _Pool(pairs)
    val_pool = _Pool(val_pairs) if val_pairs else None

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = M2UNet(1, HEADS[head])
    if init_weights is not None and resume is None:
        _load_init(net, init_weights)
    frozen = _apply_freeze(net, freeze)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, warmup))
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

    ema = None
    t_start = time.perf_counter()
    t_block, losses_block, first_step = time.perf_counter(), [], step
    stop_at = steps if stop_after is None else min(steps, step + int(stop_after))
    while step < stop_at:
        net.train()
        for m in frozen:
            m.eval()
        xs, ys = zip(*(pool.sample(rng, crop, augment, orient) for _ in range(batch_size)))
        x = torch.from_numpy(np.stack(xs))[:, None]
        tg = np.stack([make_target(y, head, contour_width) for y in ys])
        target = torch.from_numpy(tg)
        loss = _loss(net(x), target, head)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        lv = float(loss.detach())
        losses_block.append(lv)
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
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
    torch.save({"state_dict": final_sd, "meta": meta}, out)
    sha = file_sha256(out)
    write_card_sha256(out, sha, (
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
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scopeflow train",
        description="Train the M2U-Net RBC segmenter on DPC images + masks (paired by file stem).",
    )
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
    return p


def train_main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``scopeflow train``).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``); see ``--help``.

    Returns
    -------
    int
        Exit status 0. A JSON summary (out, sha256, steps, sec_per_step, best
        validation row) is printed as the last line of stdout.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parser().parse_args(argv)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
