"""Small ConvNets of the smear QC: the per-cell quality net and the defocus regressor.

Both are the same architecture (:class:`QualityNet`): 4 conv blocks (3×3 conv, batch norm,
ReLU), max-pools after the first three, global average ‖ global max pooling and one linear
output. The quality net reads 2-channel 48×48 cell crops (z-scored DPC, own-cell mask) and
gives the logit of *good cell* (:mod:`scopeflow.qc.cell_classifier`); the defocus net reads
1-channel 64×64 patches and gives ``log1p(|Δz| / µm)`` (:mod:`scopeflow.qc.defocus`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DefocusNet", "QualityNet"]


class QualityNet(nn.Module):
    """Small ConvNet: 4 conv blocks (3×3 conv, batch norm, ReLU), 3 max-pools, global
    average + max pooling and a linear layer giving one logit (good vs bad).

    Parameters
    ----------
    in_channels : int
        Input channels (2: z-scored DPC, own-cell mask).
    widths : tuple of int
        Channels of the four conv blocks.
    """

    def __init__(self, in_channels: int = 2, widths: tuple[int, ...] = (16, 32, 48, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N,) for crops of shape (N, C, H, W)."""
        f = self.features(x)
        f = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(f)[:, 0]

    @classmethod
    def from_meta(cls, meta: dict) -> QualityNet:
        """The network a weights file's metadata describe (``in_channels``, ``widths``)."""
        return cls(int(meta["in_channels"]), tuple(int(w) for w in meta["widths"]))


class DefocusNet(QualityNet):
    """Small CNN: the :class:`QualityNet` architecture on one channel (4 conv blocks: 3×3
    conv, batch norm, ReLU, max-pool after the first 3; global average + max pooling; one
    linear output), here predicting ``log1p(|Δz| / µm)``.

    Parameters
    ----------
    widths : tuple of int
        Channels of the conv blocks.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48, 64)) -> None:
        super().__init__(1, widths)

    @classmethod
    def from_meta(cls, meta: dict) -> DefocusNet:
        """The network a weights file's metadata describe (``widths``)."""
        return cls(tuple(int(w) for w in meta["widths"]))
