"""Out-of-distribution (OOD) score of spot crops: nearest neighbours in the classifier's features.

A spot crop unlike every crop the parasite classifier was trained on (another stain, camera,
artefact, life stage) gets a probability that means nothing. This module flags such crops.

Score (deep k-nearest neighbours, Sun et al., ICML 2022): for each member network m of the
parasite ensemble, the crop's pooled penultimate features (global average ‖ max pooling of
the last stage, averaged over the 8 flips/90° rotations, exactly what the member's logit is
computed from) are L2-normalised; the member's score is ``1 − cos`` to the k-th nearest
(default k = 5) of the normalised features of the crops **that member was trained on** (both
classes). A crop's ``ood_score`` is the mean of the members' scores (0: identical to training
crops, up to 2).

Threshold rule (:func:`fit_ood_reference`): the ``quantile`` (default 0.99) of cross-validated
in-distribution scores: every labelled crop is scored by the member(s) whose training folds did
not contain it, against that member's own training crops. By construction about 1 % of
held-out in-distribution crops are flagged; the fraction of the 177 unlabelled OOD crops of
``octopi_malaria_spots`` flagged by the same held-out members is the rejection figure.

Shipping: the reference features (float16), the threshold and the recipe are saved as
``<weights stem>.ood.npz`` beside the classifier weights; the classifier's model card records
its digest on a ```<name>` sha256: <hex>`` line, and the file records the classifier's own
sha256 (a reference fitted for another classifier is refused). :func:`score_spots` computes the
members' features once and returns the classifier's calls (identical to
:func:`scopeflow.parasites.classifier.score_crops`) together with ``ood_score`` and ``ood``.
"""

from __future__ import annotations

import argparse
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from scopeflow.models.parasite_net import dihedral
from scopeflow.models.weights import WeightsError, verify_sha256
from scopeflow.parasites.classifier import (
    DEFAULT_WEIGHTS,
    check_crops,
    load_parasite_model,
    to_float,
)
from scopeflow.provenance import file_sha256

__all__ = [
    "OOD_DEFAULTS",
    "fit_ood_main",
    "fit_ood_reference",
    "knn_scores",
    "load_ood_reference",
    "member_features",
    "ood_path",
    "save_ood_reference",
    "score_spots",
    "stratified_folds",
]

#: Recipe defaults: neighbour rank and in-distribution quantile of the threshold.
OOD_DEFAULTS = {"k": 5, "quantile": 0.99}


def ood_path(weights: str | Path | None = None) -> Path:
    """The OOD reference file of a classifier weights file: ``<stem>.ood.npz`` beside it."""
    w = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    return w.with_name(w.stem + ".ood.npz")


def stratified_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index of each crop: the split :func:`scopeflow.parasites.train.cross_validate` uses.

    Per class (0 then 1), a permutation of that class's indices by
    ``numpy.random.default_rng(seed)`` is dealt round-robin into ``folds`` folds.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    fold = np.zeros(len(y), np.int64)
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(idx.size) % folds
    return fold


@torch.inference_mode()
def member_features(model, crops: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Each member's normalised pooled features and its logit, averaged over the 8 transforms.

    Parameters
    ----------
    model : ParasiteEnsemble
        The classifier (members with ``embed`` and ``head``).
    crops : numpy.ndarray
        (N, 4, 31, 31) crops, uint8 or float in [0, 1].
    batch : int
        Crops per forward pass.

    Returns
    -------
    (features, logits) : numpy.ndarray
        float32 (M, N, D) L2-normalised features and float64 (M, N) logits (mean over the
        8 transforms of the member's head on each transform's features).
    """
    a = check_crops(crops)
    model.eval()
    n_m = len(model.members)
    feats = None
    logits = np.zeros((n_m, len(a)), np.float64)
    for s in range(0, len(a), batch):
        x = to_float(a[s : s + batch])
        for m, net in enumerate(model.members):
            acc = 0.0
            for k in range(8):
                f = net.embed(dihedral(x, k))
                acc = acc + f / 8
                logits[m, s : s + len(x)] += net.head(f)[:, 0].double().numpy() / 8
            if feats is None:
                feats = np.zeros((n_m, len(a), acc.shape[1]), np.float32)
            feats[m, s : s + len(x)] = acc.numpy()
    if feats is None:
        d = int(model.members[0].n_features)
        feats = np.zeros((n_m, 0, d), np.float32)
    norm = np.linalg.norm(feats, axis=2, keepdims=True)
    return feats / np.maximum(norm, 1e-12), logits


def knn_scores(features: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """``1 − cos`` to the k-th nearest reference vector (both L2-normalised).

    Parameters
    ----------
    features : numpy.ndarray
        (N, D) normalised features.
    reference : numpy.ndarray
        (R, D) normalised reference features, R ≥ k.
    k : int
        Neighbour rank (1 = nearest).

    Returns
    -------
    numpy.ndarray
        float64 (N,) scores in [0, 2].
    """
    ref = np.asarray(reference, np.float32)
    if len(ref) < k:
        raise ValueError(f"OOD reference has {len(ref)} crops, fewer than k = {k}")
    sim = np.asarray(features, np.float32) @ ref.T
    kth = np.partition(sim, sim.shape[1] - k, axis=1)[:, sim.shape[1] - k]
    return 1.0 - kth.astype(np.float64)


def _member_folds(meta: dict, n_members: int) -> list[int]:
    """Fold held out from each member of a bag (fold-major order of
    :func:`scopeflow.parasites.train.bag`)."""
    per = int(meta.get("train", {}).get("members_per_fold", 1))
    return [m // per for m in range(n_members)]


def fit_ood_reference(
    model,
    meta: dict,
    x: np.ndarray,
    y: np.ndarray,
    ood_x: np.ndarray | None = None,
    *,
    fold: np.ndarray | None = None,
    k: int = OOD_DEFAULTS["k"],
    quantile: float = OOD_DEFAULTS["quantile"],
) -> tuple[dict, dict]:
    """Reference features, threshold and cross-validated rejection figures of a fold bag.

    Parameters
    ----------
    model : ParasiteEnsemble
        A bag of fold networks as :func:`scopeflow.parasites.train.train_parasites` ships it
        (member m held out fold ``m // members_per_fold``).
    meta : dict
        The model's metadata (``train.folds``, ``train.seed``, ``train.members_per_fold``).
    x, y : numpy.ndarray
        The labelled training crops (N, 4, 31, 31) and labels, in training order.
    ood_x : numpy.ndarray, optional
        Unlabelled OOD crops for the rejection figures.
    fold : numpy.ndarray, optional
        Fold of each crop; default :func:`stratified_folds` with the model's ``folds`` and
        ``seed``.
    k : int
        Neighbour rank.
    quantile : float
        In-distribution quantile of the threshold.

    Returns
    -------
    (reference, metrics) : dict
        ``reference``: ``features`` float16 (M, R, D) (member m: its training crops; rows
        beyond ``counts[m]`` are zero), ``counts`` (M,), ``threshold``, ``k``, ``quantile``.
        ``metrics``: ``threshold``, ``heldout_flagged_fraction``, and with ``ood_x``:
        ``ood_flagged_fraction`` (each OOD crop scored by each held-out member, flags
        averaged), ``ood_flagged_fraction_bag`` (the shipped mean-over-members score),
        ``auc_ood_vs_heldout``, the same at the 0.95 quantile, and the per-crop scores.
    """
    from scopeflow.models.training import roc_auc

    t = meta.get("train", {})
    if fold is None:
        fold = stratified_folds(y, int(t["folds"]), int(t["seed"]))
    fold = np.asarray(fold)
    feats, _ = member_features(model, x)
    n_m = feats.shape[0]
    mfold = _member_folds(meta, n_m)
    counts = np.array([int(np.sum(fold != f)) for f in mfold], np.int64)
    ref = np.zeros((n_m, int(counts.max()), feats.shape[2]), np.float16)
    held = np.zeros(len(y))
    nheld = np.zeros(len(y))
    for m, f in enumerate(mfold):
        ref[m, : counts[m]] = feats[m, fold != f]
        te = fold == f
        held[te] += knn_scores(feats[m, te], ref[m, : counts[m]], k)
        nheld[te] += 1
    held = held / np.maximum(nheld, 1)
    thr = float(np.quantile(held, quantile))
    metrics = {"k": int(k), "quantile": float(quantile), "threshold": thr,
               "heldout_flagged_fraction": float(np.mean(held > thr)),
               "n_heldout": int(len(held)), "heldout_scores": held.tolist()}
    if ood_x is not None and len(ood_x):
        of, _ = member_features(model, ood_x)
        per = np.stack([knn_scores(of[m], ref[m, : counts[m]], k) for m in range(n_m)])
        bagged = per.mean(axis=0)
        t95 = float(np.quantile(held, 0.95))
        lab = np.r_[np.ones(per.shape[1]), np.zeros(len(held))]
        aucs = []
        for m in range(n_m):
            h = held[fold == mfold[m]]
            aucs.append(roc_auc(np.r_[np.ones(per.shape[1]), np.zeros(h.size)], np.r_[per[m], h]))
        metrics.update({
            "n_ood": int(per.shape[1]),
            "ood_flagged_fraction": float(np.mean(per > thr)),
            "ood_flagged_fraction_bag": float(np.mean(bagged > thr)),
            "auc_ood_vs_heldout": float(np.mean(aucs)),
            "auc_bag_vs_heldout": float(roc_auc(lab, np.r_[bagged, held])),
            "threshold_q95": t95,
            "ood_flagged_fraction_q95": float(np.mean(per > t95)),
            "heldout_flagged_fraction_q95": float(np.mean(held > t95)),
            "ood_scores_bag": bagged.tolist(),
        })
    reference = {"features": ref, "counts": counts, "threshold": np.float64(thr),
                 "k": np.int64(k), "quantile": np.float64(quantile)}
    return reference, metrics


def _record_sha(card: Path, name: str, sha: str) -> None:
    """Replace (or append) the ```name` sha256: <hex>`` line of a model card."""
    line = f"- `{name}` sha256: {sha}"
    text = card.read_text(encoding="utf-8") if card.is_file() else f"# {card.stem}\n"
    pat = rf"(?m)^.*`?{re.escape(name)}`?\s+sha256\s*:\s*[0-9a-fA-F]*[ \t]*$"
    new, n = re.subn(pat, line, text)
    card.write_text(new if n else text.rstrip("\n") + "\n\n" + line + "\n", encoding="utf-8")


def save_ood_reference(reference: dict, weights: str | Path) -> Path:
    """Write ``<stem>.ood.npz`` beside ``weights`` and record its sha256 in the weights' card.

    The file also stores the classifier's sha256 (``model_sha256``), checked on load.
    """
    from scopeflow.io.atomic import atomic_path

    weights = Path(weights)
    out = ood_path(weights)
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, model_sha256=np.array(file_sha256(weights)), **reference)
    _record_sha(weights.with_suffix(".md"), out.name, file_sha256(out))
    return out


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, weights: str) -> dict:
    del mtime_ns  # cache key only
    p = Path(path)
    verify_sha256(p, Path(weights).with_suffix(".md"), what="parasite OOD reference")
    with np.load(p, allow_pickle=False) as z:
        ref = {key: z[key] for key in z.files}
    want = file_sha256(Path(weights))
    if str(ref.get("model_sha256")) != want:
        raise WeightsError(f"{p}: OOD reference was fitted for another classifier (sha256 "
                           f"{ref.get('model_sha256')}, weights {weights} are {want}); "
                           "refit it with `scopeflow fit-parasite-ood`")
    return ref


def load_ood_reference(weights: str | Path | None = None) -> dict:
    """The checked OOD reference of a classifier weights file (see :func:`save_ood_reference`).

    Raises
    ------
    scopeflow.models.weights.WeightsError
        Missing file, digest not in / not matching the card, or fitted for another classifier.
    """
    w = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    p = ood_path(w)
    if not p.is_file():
        raise WeightsError(f"OOD reference not found: {p} (write it with "
                           f"`scopeflow fit-parasite-ood --weights {w}`)")
    return _load(str(p.resolve()), p.stat().st_mtime_ns, str(w.resolve()))


def score_spots(crops: np.ndarray, *, weights: str | Path | None = None, model=None,
                reference: dict | None = None, batch: int = 256) -> dict[str, np.ndarray]:
    """Classifier calls and OOD flags of spot crops, from one pass of the members.

    Parameters
    ----------
    crops : numpy.ndarray
        (N, 4, 31, 31) crops (see :func:`scopeflow.parasites.classifier.score_crops`).
    weights : str, Path or None
        Classifier weights (its ``.ood.npz`` beside it); None = shipped.
    model : ParasiteEnsemble, optional
        An already loaded classifier (``weights`` then only locates the reference).
    reference : dict, optional
        An already loaded reference (:func:`load_ood_reference`).
    batch : int
        Crops per forward pass.

    Returns
    -------
    dict of numpy.ndarray, each (N,), in crop order
        ``logit``, ``p_parasite``, ``is_parasite`` (as ``score_crops``), ``ood_score``
        (mean over members of the k-NN score) and ``ood`` (``ood_score > threshold``).
    """
    if model is None:
        model, _ = load_parasite_model(weights)
    if reference is None:
        reference = load_ood_reference(weights)
    feats, logits = member_features(model, crops, batch)
    logit = logits.mean(axis=0)
    p = 1.0 / (1.0 + np.exp(-logit / float(model.temperature)))
    k = int(reference["k"])
    ref, counts = reference["features"], reference["counts"]
    if ref.shape[0] != feats.shape[0] or ref.shape[2] != feats.shape[2]:
        raise WeightsError(f"OOD reference has {ref.shape[0]} members x {ref.shape[2]} features, "
                           f"the classifier {feats.shape[0]} x {feats.shape[2]}")
    score = np.zeros(feats.shape[1])
    for m in range(feats.shape[0]):
        score += knn_scores(feats[m], ref[m, : int(counts[m])], k) / feats.shape[0]
    return {"logit": logit, "p_parasite": p, "is_parasite": p >= float(model.threshold),
            "ood_score": score, "ood": score > float(reference["threshold"])}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``scopeflow fit-parasite-ood`` (registered by :func:`scopeflow.cli.build_parser`)."""
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="classifier weights (.pt)")
    p.add_argument("--data", default=None, help="shared data root (default: as train-parasites)")
    p.add_argument("--k", type=int, default=OOD_DEFAULTS["k"])
    p.add_argument("--quantile", type=float, default=OOD_DEFAULTS["quantile"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--metrics", default=None,
                   help="metrics JSON (default <weights stem>_ood.json beside the weights)")


def fit_ood_main(args: argparse.Namespace, argv: list[str]) -> int:
    """``scopeflow fit-parasite-ood``. ``args``: the parsed arguments (:func:`add_arguments`);
    ``argv``: as given (recorded in the metrics)."""
    from scopeflow.parasites.spot_data import load_spots

    torch.set_num_threads(int(args.threads))
    model, meta = load_parasite_model(args.weights)
    d = load_spots(args.data) if args.data else load_spots()
    ref, met = fit_ood_reference(model, meta, d["x"], d["y"], d["ood"], k=args.k,
                                 quantile=args.quantile)
    out = save_ood_reference(ref, args.weights)
    w = Path(args.weights)
    mpath = Path(args.metrics) if args.metrics else w.with_name(w.stem + "_ood.json")
    cmd = "scopeflow fit-parasite-ood " + " ".join(argv)
    short = {k: v for k, v in met.items() if not isinstance(v, list)}
    mpath.write_text(json.dumps({"metrics": short, "command": cmd}, indent=1) + "\n")
    print(json.dumps(short, indent=1))
    print(f"wrote {out} (sha256 recorded in {w.with_suffix('.md').name}), metrics {mpath}")
    return 0
