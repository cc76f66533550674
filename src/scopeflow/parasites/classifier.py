"""Parasite classifier: a small CNN ensemble on 4-channel 31×31 spot crops.

Input layout (the layout of Octopi's spot crops and of ``../shared/data/octopi_malaria_spots``):
uint8 arrays of shape (N, 4, 31, 31); channels 0–2 are the R, G, B planes of the colour camera's
405 nm-excited fluorescence image (background-removed), channel 3 is the DPC image (0.5 → 128).
The crop's centre pixel (15, 15) is the spot.

Scoring (:func:`score_crops`):

1. crops → float32 in [0, 1] (``/255``);
2. each ensemble member scores the 8 dihedral transforms of the crop (flips and 90° rotations,
   the augmentations it was trained with); the logits are averaged over transforms and members;
3. the mean logit is divided by a temperature fitted on cross-validated out-of-fold logits
   (temperature scaling, Guo et al. 2017) → a calibrated ``p_parasite``;
4. ``is_parasite = p_parasite >= threshold``; the threshold is chosen at training time by a
   stated rule (see the model card: the calibrated probability above which at most 1 % of
   cross-validated negative crops lie, i.e. specificity 0.99 per candidate spot);
5. ``ood`` flags crops far from both training classes: the squared Mahalanobis distance of each
   member's pooled features to the nearest class mean (shared, shrunk covariance of its own
   training crops), averaged over members, above the 99th percentile of the same score on
   cross-validated held-out crops.

The weights file is a ``torch.save``'d ``{"state_dict", "meta"}`` of
:class:`~scopeflow.models.parasite_net.ParasiteEnsemble`
(temperature, threshold and OOD statistics are buffers of the module), read with
``torch.load(weights_only=True)`` after its sha256 has been checked against the model card
(:func:`scopeflow.models.weights.load_network`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scopeflow.models.parasite_net import N_CHANNELS, ParasiteEnsemble
from scopeflow.models.weights import MODELS_DIR, cached_network

__all__ = [
    "CROP_PX",
    "DEFAULT_WEIGHTS",
    "check_crops",
    "load_parasite_model",
    "score_crops",
    "to_float",
]

#: The shipped model (see its model card ``parasites.md``).
DEFAULT_WEIGHTS = MODELS_DIR / "parasites.pt"

#: Crop edge in pixels (Octopi: half-width 15 around the spot).
CROP_PX = 31


def check_crops(crops: np.ndarray, where: str = "crops") -> np.ndarray:
    """Validate an (N, 4, 31, 31) crop array; return it as a numpy array.

    Parameters
    ----------
    crops : numpy.ndarray
        Crops, uint8 (values 0–255) or float in [0, 1].
    where : str
        How a one-line error names the input (a file name).

    Raises
    ------
    ValueError
        Wrong number of dimensions, channels or crop size.
    """
    a = np.asarray(crops)
    want = (N_CHANNELS, CROP_PX, CROP_PX)
    if a.ndim != 4 or a.shape[1:] != want:
        raise ValueError(f"{where}: crops must have shape (N, 4, 31, 31) (3 fluorescence + DPC), "
                         f"got {a.shape}")
    return a


def to_float(crops: np.ndarray) -> torch.Tensor:
    """uint8 crops → float32 tensor in [0, 1]; float crops are taken as already in [0, 1]."""
    a = np.asarray(crops)
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(np.float32) / 255.0)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def load_parasite_model(weights: str | Path | None = None) -> tuple[ParasiteEnsemble, dict]:
    """Load (and cache) the parasite ensemble after checking its sha256 against its card.

    Parameters
    ----------
    weights : str, Path or None
        ``.pt`` file with a model card (same name, ``.md``, ``sha256:`` line) beside it;
        None = the shipped :data:`DEFAULT_WEIGHTS`.

    Returns
    -------
    (ParasiteEnsemble, dict)
        The ensemble in eval mode and its metadata (recipe, cross-validated metrics).

    Raises
    ------
    scopeflow.models.weights.WeightsError
        Missing file or card, sha256 mismatch, or not a parasites model.
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    return cached_network(path, "parasites", ParasiteEnsemble.from_meta)


def score_crops(
    crops: np.ndarray,
    *,
    weights: str | Path | None = None,
    model: ParasiteEnsemble | None = None,
    batch: int = 256,
) -> dict[str, np.ndarray]:
    """Score spot crops with the parasite ensemble.

    Parameters
    ----------
    crops : numpy.ndarray
        (N, 4, 31, 31) crops: uint8 (Octopi layout: fluorescence R, G, B, DPC with 0.5 ↔ 128)
        or float in [0, 1].
    weights : str, Path or None
        Weights file (sha256-checked); None = shipped model. Ignored when ``model`` is given.
    model : ParasiteEnsemble, optional
        An already loaded ensemble (training and tests).
    batch : int
        Crops per forward pass.

    Returns
    -------
    dict of numpy.ndarray, each (N,), in crop order
        ``logit`` (mean over members and transforms, before calibration), ``p_parasite``
        (calibrated probability), ``is_parasite`` (bool, ``p_parasite >= threshold``),
        ``ood_score`` (squared Mahalanobis distance) and ``ood`` (bool).
    """
    a = check_crops(crops)
    if model is None:
        model, _ = load_parasite_model(weights)
    model.eval()
    n = len(a)
    logit = np.zeros(n, np.float64)
    ood = np.zeros(n, np.float64)
    for s in range(0, n, batch):
        lg, od = model.raw(to_float(a[s : s + batch]))
        logit[s : s + batch] = lg.double().numpy()
        ood[s : s + batch] = od.double().numpy()
    t = float(model.temperature)
    p = 1.0 / (1.0 + np.exp(-logit / t))
    return {
        "logit": logit,
        "p_parasite": p,
        "is_parasite": p >= float(model.threshold),
        "ood_score": ood,
        "ood": ood > float(model.ood_threshold),
    }
