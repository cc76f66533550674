"""Training of the per-cell quality classifier (:mod:`.cell_classifier`): ``scopeflow train-quality``.

The labelled crops come from :mod:`scopeflow.qc.quality_labels` (U-Net cells matched with
reference masks, corrupted contours, simulated defocus and overlap; never hand-set); the
network is :class:`scopeflow.models.quality.QualityNet`, trained with the loop of
:mod:`scopeflow.models.training`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from scopeflow.models.quality import QualityNet
from scopeflow.models.training import SHARED_DATA, cached_arrays, make_optimizer, minibatches, run_steps
from scopeflow.models.weights import save_weights
from scopeflow.qc.quality_labels import build_examples

__all__ = ["add_arguments", "balanced_accuracy", "train_quality", "train_quality_main"]


# ------------------------------------------------------------------------ metrics
def balanced_accuracy(y_true: np.ndarray, p_good: np.ndarray, threshold: float = 0.5) -> float:
    """Mean of the recalls of good (``p ≥ threshold``) and bad cells."""
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(p_good) >= threshold
    return 0.5 * (np.mean(pred[y]) + np.mean(~pred[~y]))


# ------------------------------------------------------------------------ training
def _augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """y-flips, x-flips with the DPC sign inverted (a mirrored object), mild noise."""
    n = xb.shape[0]
    fy = torch.rand(n, generator=gen) < 0.5
    xb[fy] = xb[fy].flip(2)
    fx = torch.rand(n, generator=gen) < 0.5
    xb[fx] = xb[fx].flip(3)
    xb[fx, 0] = -xb[fx, 0]
    sig = torch.rand(n, generator=gen) * 0.3 * (torch.rand(n, generator=gen) < 0.5)
    xb[:, 0] += sig[:, None, None] * torch.randn(xb[:, 0].shape, generator=gen)
    return xb


def train_quality(
    data: dict,
    out: str | Path,
    *,
    epochs: int = 8,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    threads: int = 1,
    command: str = "",
    widths: tuple[int, ...] = (16, 32, 48, 64),
    verbose: bool = True,
) -> dict:
    """Train :class:`QualityNet` on labelled crops and save ``{"state_dict", "meta"}``.

    Parameters
    ----------
    data : dict
        ``x`` (N, 2, crop, crop), ``y`` (1 = good), ``kind``, ``source``.
    out : str or Path
        Output ``.pt``; the ``sha256:`` line of the card beside it is updated (created if
        missing).
    epochs, batch_size, lr, seed, threads : int, int, float, int, int
        AdamW (weight decay 1e-4), cosine decay of the learning rate over all steps; the
        binary cross-entropy is weighted so that good and bad cells weigh equally.
    command : str
        Recorded in the metadata.
    widths : tuple of int
        Conv widths.

    Returns
    -------
    dict
        ``out``, ``sha256``, ``history`` (per epoch loss and training balanced accuracy).
    """
    torch.manual_seed(seed)
    torch.set_num_threads(int(threads))
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.asarray(data["x"], np.float32))
    y = torch.from_numpy(np.asarray(data["y"], np.float32))
    n, n_good = len(y), float(y.sum())
    w_good, w_bad = n / (2 * n_good), n / (2 * (n - n_good))
    net = QualityNet(int(x.shape[1]), tuple(widths))
    opt, sched = make_optimizer(net.parameters(), lr, steps=epochs * -(-n // batch_size))
    history = []
    t0 = time.perf_counter()
    preds = torch.empty(n)

    def loss_fn(net: QualityNet, idx: torch.Tensor) -> torch.Tensor:
        yb = y[idx]
        logits = net(_augment(x[idx].clone(), gen))
        preds[idx] = torch.sigmoid(logits.detach())
        wt = torch.where(yb > 0.5, w_good, w_bad)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, weight=wt)

    for ep in range(epochs):
        idx_batches = list(minibatches(torch.randperm(n, generator=gen), batch_size))
        losses = run_steps(net, opt, sched, idx_batches, loss_fn)
        tot = sum(loss * len(idx) for loss, idx in zip(losses, idx_batches, strict=True))
        ba = balanced_accuracy(y.numpy(), preds.numpy())
        history.append({"epoch": ep + 1, "loss": tot / n, "train_bal_acc": float(ba),
                        "seconds": time.perf_counter() - t0})
        if verbose:
            print(f"  epoch {ep + 1}/{epochs}: loss {tot / n:.4f}, train balanced acc {ba:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    net.eval()
    kinds, counts = np.unique(np.asarray(data["kind"]), return_counts=True)
    meta = {
        "kind": "rbc_quality",
        "crop": int(x.shape[-1]),
        "in_channels": int(x.shape[1]),
        "widths": [int(w) for w in widths],
        "input": "ch0: DPC z-scored per crop; ch1: own-cell mask",
        "output": "logit of P(good)",
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                  "n": n, "n_good": int(n_good), "kinds": dict(zip(kinds.tolist(),
                                                                   counts.tolist(), strict=True)),
                  "command": command, "history": history},
    }
    return {"out": str(out), "sha256": save_weights(net, meta, out), "history": history}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``scopeflow train-quality`` (registered by :func:`scopeflow.cli.build_parser`)."""
    p.add_argument("--out", required=True,
                   help="output weights (.pt); its .md card gets the sha256")
    p.add_argument("--data", default=str(SHARED_DATA), help=f"shared data root (default {SHARED_DATA})")
    p.add_argument("--cache", default=None,
                   help="npz cache of the training crops (reused if present)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)


def train_quality_main(args: argparse.Namespace, argv: list[str]) -> int:
    """``scopeflow train-quality``: build the training crops and train; prints a summary.
    ``args``: the parsed arguments (:func:`add_arguments`); ``argv``: as given (recorded)."""
    torch.set_num_threads(int(args.threads))

    def build() -> dict[str, np.ndarray]:
        print("building training crops ...", flush=True)
        return build_examples("train", data=Path(args.data), seed=args.seed)

    data = cached_arrays(args.cache, ("x", "y", "kind", "source"), build)
    kinds, counts = np.unique(data["kind"], return_counts=True)
    print("training crops:", json.dumps(dict(zip(kinds.tolist(), counts.tolist(), strict=True))))
    cmd = "scopeflow train-quality " + " ".join(argv)
    res = train_quality(data, args.out, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, seed=args.seed, threads=args.threads, command=cmd)
    print(f"wrote {res['out']} (sha256 {res['sha256']})")
    return 0
