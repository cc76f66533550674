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

The weights file is a ``torch.save``'d ``{"state_dict", "meta"}`` of :class:`ParasiteEnsemble`
(temperature, threshold and OOD statistics are buffers of the module), read with
``torch.load(weights_only=True)`` after its sha256 has been checked against the model card
(:func:`scopeflow.qc.cell_classifier.load_checked`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scopeflow.qc.cell_classifier import load_model
from scopeflow.segment.unet import WeightsError

__all__ = [
    "CROP_PX",
    "DEFAULT_WEIGHTS",
    "N_CHANNELS",
    "ParasiteEnsemble",
    "ParasiteNet",
    "check_crops",
    "dihedral",
    "load_parasite_model",
    "score_crops",
    "to_float",
]

#: The shipped model (see its model card ``parasites.md``).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "models" / "parasites.pt"

#: Crop edge in pixels (Octopi: half-width 15 around the spot).
CROP_PX = 31
#: Channels: fluorescence R, G, B, DPC.
N_CHANNELS = 4


class ParasiteNet(nn.Module):
    """Small CNN giving one logit (parasite vs not) for a (4, 31, 31) crop.

    Input batch norm, then 3×3 conv + batch norm + ReLU blocks: one at 31×31 (widths[0]),
    max-pool 2, two at 15×15 (widths[1]), max-pool 2, two at 7×7 (widths[2]); global
    average ‖ global max pooling (the *features*, 2·widths[-1] values), dropout and one
    linear logit.

    Parameters
    ----------
    in_channels : int
        Input channels (4).
    widths : tuple of int
        Channels of the three stages.
    dropout : float
        Dropout before the linear layer (training only).
    """

    def __init__(self, in_channels: int = N_CHANNELS, widths: tuple[int, ...] = (16, 32, 64),
                 dropout: float = 0.2) -> None:
        super().__init__()
        w1, w2, w3 = (int(w) for w in widths)

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.features = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            *block(in_channels, w1), nn.MaxPool2d(2),
            *block(w1, w2), *block(w2, w2), nn.MaxPool2d(2),
            *block(w2, w3), *block(w3, w3),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * w3, 1)
        self.n_features = 2 * w3

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, 2·widths[-1]) of crops (N, C, H, W)."""
        f = self.features(x)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N,) of crops (N, C, H, W)."""
        return self.head(self.drop(self.embed(x)))[:, 0]


class ParasiteEnsemble(nn.Module):
    """Members + calibration + OOD statistics, saved as one state dict.

    Parameters
    ----------
    n_members : int
        Number of :class:`ParasiteNet` members.
    widths : tuple of int
        Member stage widths.
    """

    def __init__(self, n_members: int, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        self.members = nn.ModuleList(ParasiteNet(N_CHANNELS, widths) for _ in range(n_members))
        d = self.members[0].n_features
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("threshold", torch.full((), 0.5))
        self.register_buffer("ood_means", torch.zeros(n_members, 2, d))
        self.register_buffer("ood_precision", torch.zeros(n_members, d, d))
        self.register_buffer("ood_threshold", torch.full((), float("inf")))

    @torch.inference_mode()
    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean logit (N,) over members and dihedral transforms, and the OOD score (N,)."""
        logits = torch.zeros(len(x))
        ood = torch.zeros(len(x))
        for m, net in enumerate(self.members):
            feats = torch.zeros(len(x), net.n_features)
            for k in range(8):
                f = net.embed(dihedral(x, k))
                feats += f / 8
                logits += net.head(f)[:, 0] / (8 * len(self.members))
            ood += mahalanobis_min(feats, self.ood_means[m], self.ood_precision[m]) / len(self.members)
        return logits, ood


def mahalanobis_min(feats: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance of each row of ``feats`` to the nearest of ``means``.

    Parameters
    ----------
    feats : torch.Tensor
        (N, D) features.
    means : torch.Tensor
        (K, D) class means.
    precision : torch.Tensor
        (D, D) inverse of the shared covariance.

    Returns
    -------
    torch.Tensor
        (N,) distances.
    """
    d = feats[:, None, :] - means[None, :, :]  # N, K, D
    m = torch.einsum("nkd,de,nke->nk", d, precision, d)
    return m.min(dim=1).values


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0–7) of the 8 flips/90° rotations of a (N, C, H, W) batch (k = 0: identity).

    All channels move together (the DPC relief direction turns with the crop, as in the
    training augmentation).
    """
    if k >= 4:
        x = torch.flip(x, dims=(3,))
    return torch.rot90(x, k % 4, dims=(2, 3)) if k % 4 else x


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


@lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int, size: int) -> tuple[ParasiteEnsemble, dict]:
    del mtime_ns, size  # cache key only: a replaced file is reloaded
    return load_model(path, "parasites", lambda meta: ParasiteEnsemble(
        int(meta["n_members"]), tuple(int(w) for w in meta["widths"])))


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
    scopeflow.segment.unet.WeightsError
        Missing file or card, sha256 mismatch, or not a parasites model.
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    st = path.stat()
    return _cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


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
