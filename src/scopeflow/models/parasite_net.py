"""The parasite CNN ensemble: members, calibration and out-of-distribution statistics.

:class:`ParasiteNet` scores one 4-channel 31×31 spot crop (fluorescence R, G, B + DPC);
:class:`ParasiteEnsemble` holds several members and, as buffers saved with them, the
temperature, the operating threshold and each member's class means and precision for the
Mahalanobis OOD score. Scoring crops (uint8 → [0, 1], calibration, thresholds) is
:mod:`scopeflow.parasites.classifier`; training is :mod:`scopeflow.parasites.train`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["N_CHANNELS", "ParasiteEnsemble", "ParasiteNet", "dihedral", "mahalanobis_min"]

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

    @classmethod
    def from_meta(cls, meta: dict) -> ParasiteEnsemble:
        """The ensemble a weights file's metadata describe (``n_members``, ``widths``)."""
        return cls(int(meta["n_members"]), tuple(int(w) for w in meta["widths"]))


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
