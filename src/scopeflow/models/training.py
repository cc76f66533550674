"""The one optimisation loop of scopeflow's models: AdamW, a learning-rate schedule, steps.

Every trainer (the M2U-Net segmenter :mod:`scopeflow.segment.train`, BeadNet
:mod:`scopeflow.track.beadnet`, the cell-quality and defocus nets :mod:`scopeflow.qc`, the
parasite members :mod:`scopeflow.parasites.train`) builds its optimiser with
:func:`make_optimizer` and runs its batches through :func:`run_steps`; what differs between
them is only where the batches come from (fresh simulations, random crops, shuffled epochs:
:func:`minibatches`) and the loss.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["SCHEDULES", "SHARED_DATA", "cached_arrays", "make_optimizer", "minibatches", "roc_auc",
           "run_steps", "warmup_cosine"]

#: Learning-rate schedules of :func:`make_optimizer`.
SCHEDULES = ("onecycle", "cosine")
#: Default root of the training data (the shared data sets): env ``SCOPEFLOW_SHARED_DATA``,
#: else ``<repo>/../shared/data``.
SHARED_DATA = Path(os.environ.get("SCOPEFLOW_SHARED_DATA",
                                  Path(__file__).resolve().parents[3].parent / "shared" / "data"))


def warmup_cosine(step: int, steps: int, warmup: int, floor: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to ``floor``.

    Parameters
    ----------
    step : int
        Optimiser steps taken (0 = the first step).
    steps : int
        Total steps of the schedule.
    warmup : int
        Warm-up steps: the factor is ``(step + 1) / warmup`` during them.
    floor : float, default 0
        Final factor (fraction of the peak learning rate).

    Returns
    -------
    float
        Factor in (0, 1] by which the peak learning rate is multiplied.
    """
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    lr: float,
    *,
    steps: int,
    weight_decay: float = 1e-4,
    schedule: str = "onecycle",
    pct_start: float = 0.1,
    warmup: int = 0,
    floor: float = 0.0,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW and its learning-rate schedule, stepped once per optimiser step.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
        The trained parameters.
    lr : float
        Peak learning rate.
    steps : int
        Total optimiser steps of the schedule.
    weight_decay : float, default 1e-4
        AdamW's decoupled weight decay.
    schedule : {"onecycle", "cosine"}
        ``onecycle``: :class:`torch.optim.lr_scheduler.OneCycleLR` (warm-up over ``pct_start``
        of the steps, then cosine annealing); ``cosine``: :func:`warmup_cosine` (linear warm-up
        over ``warmup`` steps, cosine decay to ``floor`` × ``lr``).
    pct_start, warmup, floor
        Schedule settings (see above).

    Returns
    -------
    (torch.optim.AdamW, LRScheduler)
    """
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct_start)
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, warmup, floor))
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    return opt, sched


def minibatches(order: Sequence[int] | np.ndarray | torch.Tensor, batch_size: int,
                min_size: int = 1) -> Iterator[Any]:
    """Consecutive slices of ``batch_size`` indices of a shuffled ``order`` (one epoch).

    Slices shorter than ``min_size`` (the last one) are skipped: batch norm needs 2 samples.
    """
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        if len(idx) >= min_size:
            yield idx


def run_steps(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler | None,
    batches: Iterable[Any],
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    *,
    frozen: Sequence[torch.nn.Module] = (),
    on_step: Callable[[float, float], None] | None = None,
    ema_decay: float = 0.95,
) -> list[float]:
    """One optimiser step per batch: train mode, loss, backward, AdamW step, schedule step.

    Parameters
    ----------
    net : torch.nn.Module
        The network; put in train mode before every step (``frozen`` modules in eval mode,
        so their batch-norm statistics stay fixed).
    opt, sched
        From :func:`make_optimizer` (``sched`` None: a constant learning rate).
    batches : iterable
        Anything ``loss_fn`` takes; drawn lazily, one per step.
    loss_fn : callable
        ``loss_fn(net, batch) -> scalar tensor``.
    frozen : sequence of torch.nn.Module
        Sub-modules kept in eval mode.
    on_step : callable, optional
        ``on_step(loss, ema)`` after each step, with the step's loss and its exponential moving
        average (progress bars, validation, checkpoints).
    ema_decay : float, default 0.95
        Decay of the moving average.

    Returns
    -------
    list of float
        The loss of every step.
    """
    losses: list[float] = []
    ema = None
    gain = round(1 - ema_decay, 12)
    for batch in batches:
        net.train()
        for m in frozen:
            m.eval()
        loss = loss_fn(net, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        value = float(loss.detach())
        losses.append(value)
        ema = value if ema is None else ema_decay * ema + gain * value
        if on_step is not None:
            on_step(value, ema)
    return losses


def cached_arrays(cache: str | Path | None, keys: Sequence[str],
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Training arrays from an ``.npz`` cache, or built (and cached) when it does not exist yet.

    Parameters
    ----------
    cache : str, Path or None
        The ``.npz`` file (None: always build, nothing written).
    keys : sequence of str
        Arrays read from an existing cache.
    build : callable
        ``build() -> {key: array}``: makes the arrays (simulation, segmentation) when the cache
        does not exist; they are then written to it.

    Returns
    -------
    dict of numpy.ndarray
    """
    path = Path(cache) if cache else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            data = {k: z[k] for k in keys}
        print(f"loaded {len(data[keys[0]])} training examples from {path}")
        return data
    data = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **data)
    return data


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of a binary classifier's scores (Mann–Whitney U).

    Parameters
    ----------
    y_true : numpy.ndarray
        Labels (truthy = positive).
    score : numpy.ndarray
        Scores, higher = more positive; ties count one half (average ranks).

    Returns
    -------
    float
        AUC in [0, 1]; NaN when one class is absent.
    """
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(np.asarray(score, np.float64))
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
