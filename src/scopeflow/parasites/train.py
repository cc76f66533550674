"""Train and cross-validate the parasite classifier (``scopeflow train-parasites``).

Data: ``octopi_malaria_spots`` (``conformal_set_pos.npy`` = parasites, ``conformal_set_neg.npy`` =
negatives, each (N, 4, 31, 31) uint8; ``ood_images.npy`` unlabelled out-of-distribution crops
used only for the rejection test).

Recipe (one member): :class:`~scopeflow.models.parasite_net.ParasiteNet`, binary cross-entropy,
AdamW, one-cycle learning rate, augmentation by a random flip/90° rotation, a random shift of up to
±2 px (edge pixels repeated), intensity jitter (fluorescence gain ×exp(N(0, 0.25)) shared by
R, G, B plus ×exp(N(0, 0.05)) per channel; DPC contrast about 0.5 × U(0.8, 1.25)) and Gaussian
noise (σ 0.01).

Protocol (:func:`cross_validate`): stratified k-fold; in each fold ``members`` networks (default
1) are trained on the other folds and score the held-out fold (mean logit over members and the 8
dihedral transforms) and the OOD crops. The pooled out-of-fold logits give the ROC AUC, the
sensitivity at specificity 0.99, the temperature (NLL-optimal) and the operating threshold; the
OOD threshold is the 99th percentile of the held-out crops' OOD scores. The shipped model is the
bag of all fold networks (k·members, each trained on (k − 1)/k of the crops; their logits are
averaged) carrying those calibration values, so no network is trained twice and the CV figures
describe one member (the bag is at least as good on average; it is not itself cross-validated).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scopeflow.models.parasite_net import ParasiteEnsemble, ParasiteNet, dihedral
from scopeflow.models import training
from scopeflow.models.training import SHARED_DATA, make_optimizer, minibatches, run_steps
from scopeflow.parasites.classifier import score_crops, to_float
from scopeflow.parasites.ood import stratified_folds
from scopeflow.parasites.spot_data import load_spots

__all__ = [
    "augment",
    "bag",
    "choose_threshold",
    "cross_validate",
    "fit_ood",
    "fit_temperature",
    "load_spots",
    "roc_auc",
    "sensitivity_at_specificity",
    "summarize_cv",
    "train_ensemble",
    "train_member",
    "train_parasites",
    "train_parasites_main",
    "add_arguments",
]

def augment(x: torch.Tensor, rng: np.random.Generator, shift: int = 2) -> torch.Tensor:
    """Random dihedral transform, shift, intensity jitter and noise of a float batch in [0, 1].

    Parameters
    ----------
    x : torch.Tensor
        (B, 4, H, W) crops, channels fluorescence R, G, B, DPC.
    rng : numpy.random.Generator
        Random source.
    shift : int
        Largest shift in px along each axis (edge pixels are repeated).

    Returns
    -------
    torch.Tensor
        Augmented batch, same shape, clipped to [0, 1].
    """
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    ks = rng.integers(0, 8, b)
    for k in range(8):
        idx = np.flatnonzero(ks == k)
        if idx.size:
            out[idx] = dihedral(x[idx], int(k))
    if shift:
        pad = nn.functional.pad(out, (shift,) * 4, mode="replicate")
        dy, dx = rng.integers(0, 2 * shift + 1, (2, b))
        out = torch.stack([pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    gain = np.exp(rng.normal(0, 0.25, (b, 1)) + rng.normal(0, 0.05, (b, 3)))
    out[:, :3] *= torch.from_numpy(gain.astype(np.float32))[:, :, None, None]
    con = torch.from_numpy(rng.uniform(0.8, 1.25, b).astype(np.float32))[:, None, None]
    out[:, 3] = 0.5 + (out[:, 3] - 0.5) * con
    out += torch.from_numpy(rng.normal(0, 0.01, out.shape).astype(np.float32))
    return out.clamp_(0.0, 1.0)


def train_member(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 1e-3,
    widths: tuple[int, ...] = (16, 32, 64),
) -> ParasiteNet:
    """Train one :class:`ParasiteNet` on uint8 crops ``x`` with labels ``y`` (1 = parasite)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ParasiteNet(x.shape[1], widths)
    xf = to_float(x)
    yt = torch.from_numpy(np.asarray(y, np.float32))
    n = len(xf)
    opt, sched = make_optimizer(net.parameters(), lr, steps=epochs * int(np.ceil(n / batch_size)),
                                weight_decay=weight_decay, pct_start=0.15)
    bce = nn.BCEWithLogitsLoss()

    def loss_fn(net: ParasiteNet, idx: np.ndarray) -> torch.Tensor:
        return bce(net(augment(xf[idx], rng)), yt[idx])

    for _ in range(epochs):
        # batch norm needs 2 samples: a last batch of 1 is skipped
        run_steps(net, opt, sched, minibatches(rng.permutation(n), batch_size, min_size=2), loss_fn)
    return net.eval()


@torch.inference_mode()
def _tta_features(net: ParasiteNet, x: torch.Tensor) -> torch.Tensor:
    return sum(net.embed(dihedral(x, k)) for k in range(8)) / 8


def fit_ood(net: ParasiteNet, x: np.ndarray, y: np.ndarray, shrink: float = 0.1
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means (2, D) and shrunk shared precision (D, D) of a member's pooled features.

    The covariance is ``(1 − shrink)·S + shrink·mean(diag S)·I`` (S: within-class covariance
    of the training crops' features, averaged over the 8 dihedral transforms).
    """
    f = _tta_features(net.eval(), to_float(x)).double()
    yy = torch.from_numpy(np.asarray(y))
    means = torch.stack([f[yy == 0].mean(0), f[yy == 1].mean(0)])
    r = f - means[yy]
    cov = r.T @ r / max(len(f) - 2, 1)
    d = cov.shape[0]
    cov = (1 - shrink) * cov + shrink * torch.diagonal(cov).mean() * torch.eye(d, dtype=cov.dtype)
    return means.float(), torch.linalg.inv(cov).float()


def train_ensemble(x: np.ndarray, y: np.ndarray, *, n_members: int = 3, seed: int = 0,
                   epochs: int = 40, widths: tuple[int, ...] = (16, 32, 64),
                   verbose: bool = False) -> ParasiteEnsemble:
    """Train ``n_members`` members (seeds ``seed + 1000·m``) and their OOD statistics."""
    ens = ParasiteEnsemble(n_members, widths)
    for m in range(n_members):
        t0 = time.perf_counter()
        net = train_member(x, y, seed=seed + 1000 * m, epochs=epochs, widths=widths)
        ens.members[m].load_state_dict(net.state_dict())
        means, prec = fit_ood(net, x, y)
        ens.ood_means[m] = means
        ens.ood_precision[m] = prec
        if verbose:
            print(f"    member {m + 1}/{n_members}: {time.perf_counter() - t0:.0f} s", flush=True)
    return ens.eval()


def roc_auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC (Mann–Whitney, ties count one half) of ``score`` for labels ``y`` (1 = positive);
    NaN without positives or negatives (:func:`scopeflow.models.training.roc_auc`)."""
    return training.roc_auc(y, score)


def choose_threshold(neg_scores: np.ndarray, specificity: float = 0.99) -> float:
    """Lowest threshold t with ``mean(neg_scores >= t) <= 1 − specificity``.

    A crop is called positive when its score is ``>= t``; t is just above the
    ``ceil(n·(1 − specificity)) + 1``-th highest negative score (exactly at most
    ``floor(n·(1 − specificity))`` negatives reach it).
    """
    s = np.sort(np.asarray(neg_scores, np.float64))[::-1]
    k = int(np.floor(s.size * (1 - specificity) + 1e-9))  # negatives allowed above
    if k >= s.size:
        return float(s[-1])
    return float(np.nextafter(s[k], np.inf))


def sensitivity_at_specificity(score: np.ndarray, y: np.ndarray, specificity: float = 0.99
                               ) -> float:
    """Fraction of positives with score ``>=`` :func:`choose_threshold` of the negatives."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, np.float64)
    t = choose_threshold(s[~y], specificity)
    return float(np.mean(s[y] >= t))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the binary NLL of ``sigmoid(logits / T)`` (golden search on log T)."""
    z = np.asarray(logits, np.float64)
    yy = np.asarray(y, np.float64)

    def nll(log_t: float) -> float:
        u = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0, u) - yy * u))

    a, b = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(80):
        if nll(c) < nll(d):
            b = d
        else:
            a = c
        c, d = b - g * (b - a), a + g * (b - a)
    return float(np.exp((a + b) / 2))


def cross_validate(
    x: np.ndarray, y: np.ndarray, ood_x: np.ndarray | None = None, *, folds: int = 5,
    n_members: int = 3, seed: int = 0, epochs: int = 40, widths: tuple[int, ...] = (16, 32, 64),
    verbose: bool = False,
) -> dict:
    """Stratified k-fold cross-validation of the ensemble recipe.

    Returns
    -------
    dict
        ``fold`` (N,) fold index, ``logit`` and ``ood_score`` (N,) out-of-fold, ``ood_logit``
        and ``ood_ood_score`` (M, folds) scores of the OOD crops by each fold's ensemble,
        ``ensembles`` (list of the fold ensembles).
    """
    y = np.asarray(y)
    fold = stratified_folds(y, folds, seed)
    logit = np.zeros(len(y))
    oods = np.zeros(len(y))
    m = 0 if ood_x is None else len(ood_x)
    ood_logit = np.zeros((m, folds))
    ood_score = np.zeros((m, folds))
    ensembles = []
    for f in range(folds):
        t0 = time.perf_counter()
        tr, te = fold != f, fold == f
        ens = train_ensemble(x[tr], y[tr], n_members=n_members, seed=seed + 17 * (f + 1),
                             epochs=epochs, widths=widths)
        ensembles.append(ens)
        r = score_crops(x[te], model=ens)
        logit[te], oods[te] = r["logit"], r["ood_score"]
        if m:
            r = score_crops(ood_x, model=ens)
            ood_logit[:, f], ood_score[:, f] = r["logit"], r["ood_score"]
        if verbose:
            print(f"  fold {f + 1}/{folds}: AUC {roc_auc(logit[te], y[te]):.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"fold": fold, "logit": logit, "ood_score": oods, "ood_logit": ood_logit,
            "ood_ood_score": ood_score, "ensembles": ensembles}


def summarize_cv(cv: dict, y: np.ndarray, specificity: float = 0.99) -> dict:
    """Metrics, temperature, thresholds and OOD rejection from :func:`cross_validate` output."""
    y = np.asarray(y)
    lg = cv["logit"]
    t = fit_temperature(lg, y)
    p = 1 / (1 + np.exp(-lg / t))
    thr = choose_threshold(p[y == 0], specificity)
    call = p >= thr
    per_fold_auc = [roc_auc(lg[cv["fold"] == f], y[cv["fold"] == f])
                    for f in range(int(cv["fold"].max()) + 1)]
    ood_thr = float(np.quantile(cv["ood_score"], 0.99))
    out = {
        "auc": roc_auc(lg, y),
        "auc_per_fold": per_fold_auc,
        "sens_at_spec_0.99": sensitivity_at_specificity(lg, y, 0.99),
        "sens_at_spec_0.95": sensitivity_at_specificity(lg, y, 0.95),
        "temperature": t,
        "threshold": thr,
        "sensitivity_at_threshold": float(call[y == 1].mean()),
        "specificity_at_threshold": float(1 - call[y == 0].mean()),
        "nll_raw": float(np.mean(np.logaddexp(0, lg) - y * lg)),
        "nll_calibrated": float(np.mean(np.logaddexp(0, lg / t) - y * lg / t)),
        "ece_calibrated": expected_calibration_error(p, y),
        "ood_threshold": ood_thr,
    }
    if cv["ood_ood_score"].size:
        od = cv["ood_ood_score"].mean(axis=1)
        out["ood_rejected_fraction"] = float(np.mean(od > ood_thr))
        out["ood_auc_vs_heldout"] = roc_auc(np.concatenate([od, cv["ood_score"]]),
                                            np.r_[np.ones(od.size), np.zeros(len(y))])
        po = 1 / (1 + np.exp(-cv["ood_logit"].mean(axis=1) / t))
        out["ood_called_parasite_fraction"] = float(np.mean(po >= thr))
        out["ood_called_parasite_and_accepted"] = float(np.mean((po >= thr) & (od <= ood_thr)))
    return out


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    b = np.minimum((p * bins).astype(int), bins - 1)
    e = 0.0
    for k in range(bins):
        m = b == k
        if m.any():
            e += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(e)


def bag(ensembles: list[ParasiteEnsemble]) -> ParasiteEnsemble:
    """One ensemble holding every member (and its OOD statistics) of ``ensembles``."""
    members = [(e, m) for e in ensembles for m in range(len(e.members))]
    widths = tuple(int(m.out_channels) for m in ensembles[0].members[0].features
                   if isinstance(m, nn.Conv2d))
    out = ParasiteEnsemble(len(members), (widths[0], widths[1], widths[-1]))
    for n, (e, m) in enumerate(members):
        out.members[n].load_state_dict(e.members[m].state_dict())
        out.ood_means[n] = e.ood_means[m]
        out.ood_precision[n] = e.ood_precision[m]
    return out.eval()


def train_parasites(data: str | Path, out: str | Path, *, folds: int = 5, n_members: int = 1,
                    epochs: int = 30, seed: int = 0, specificity: float = 0.99,
                    widths: tuple[int, ...] = (16, 32, 64),
                    command: str = "", verbose: bool = True) -> dict:
    """Cross-validate, bag the fold networks into the shipped ensemble, save it.

    Returns
    -------
    dict
        ``out``, ``sha256``, ``metrics`` (from :func:`summarize_cv`), ``seconds``.
    """
    from scopeflow.models.weights import save_weights

    t0 = time.perf_counter()
    d = load_spots(data)
    x, y = d["x"], d["y"]
    if verbose:
        print(f"{int(y.sum())} parasite + {int((y == 0).sum())} negative crops, "
              f"{len(d['ood'])} OOD; {folds}-fold CV, {n_members} members x {epochs} epochs",
              flush=True)
    cv = cross_validate(x, y, d["ood"], folds=folds, n_members=n_members, seed=seed,
                        epochs=epochs, widths=widths, verbose=verbose)
    metrics = summarize_cv(cv, y, specificity)
    if verbose:
        print("cross-validated:", json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                              for k, v in metrics.items()}), flush=True)
    ens = bag(cv["ensembles"])
    ens.temperature.fill_(metrics["temperature"])
    ens.threshold.fill_(metrics["threshold"])
    ens.ood_threshold.fill_(metrics["ood_threshold"])
    meta = {
        "kind": "parasites",
        "crop": 31,
        "in_channels": 4,
        "n_members": len(ens.members),
        "widths": list(widths),
        "input": "uint8 (N, 4, 31, 31): fluorescence R, G, B (405 nm ex.), DPC (0.5 -> 128); /255",
        "output": "mean logit over members and 8 dihedral transforms; p = sigmoid(logit / T)",
        "threshold_rule": f"calibrated p above which <= {1 - specificity:.0%} of cross-validated "
                          f"negative crops lie (specificity {specificity} per candidate)",
        "train": {"folds": folds, "members_per_fold": n_members, "epochs": epochs,
                  "seed": seed, "n": int(len(y)),
                  "n_pos": int(y.sum()), "command": command},
        "cv": metrics,
    }
    sha = save_weights(ens, meta, out)
    from scopeflow.parasites.ood import fit_ood_reference, save_ood_reference

    save_ood_reference(fit_ood_reference(ens, meta, x, y, fold=cv["fold"])[0], out)
    return {"out": str(out), "sha256": sha, "metrics": metrics,
            "seconds": time.perf_counter() - t0, "cv": cv}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``scopeflow train-parasites`` (registered by :func:`scopeflow.cli.build_parser`)."""
    p.add_argument("--out", required=True, help="output weights (.pt); its .md card gets the sha256")
    p.add_argument("--data", default=str(SHARED_DATA), help=f"shared data root (default {SHARED_DATA})")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--members", type=int, default=1,
                   help="networks per fold (default 1); the shipped bag has folds x members")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--metrics", default=None,
                   help="metrics JSON (default: <out stem>_cv.json beside the weights)")


def train_parasites_main(args: argparse.Namespace, argv: list[str]) -> int:
    """``scopeflow train-parasites``: CV metrics, then the shipped ensemble. ``args``: the
    parsed arguments (:func:`add_arguments`); ``argv``: as given (recorded)."""
    torch.set_num_threads(int(args.threads))
    cmd = "scopeflow train-parasites " + " ".join(argv)
    res = train_parasites(args.data, args.out, folds=args.folds, n_members=args.members,
                          epochs=args.epochs, seed=args.seed, command=cmd)
    mpath = Path(args.metrics) if args.metrics else Path(args.out).with_name(
        Path(args.out).stem + "_cv.json")
    mpath.write_text(json.dumps({"metrics": res["metrics"], "seconds": res["seconds"],
                                 "command": cmd}, indent=1) + "\n")
    print(f"wrote {res['out']} (sha256 {res['sha256']}), metrics {mpath}; "
          f"{res['seconds']:.0f} s")
    return 0
