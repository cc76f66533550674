"""BeadNet's architecture: a small U-Net with dilated bottleneck (torch), and its ONNX export.

Layout (``channels = (c0, c1, c2)``, default (8, 16, 32); every convolution 3×3 + batch norm
+ ReLU unless said otherwise):

* full resolution: 1 → c0, c0 → c0 (skip s0);
* ½ resolution: stride-2 c0 → c1, c1 → c1 (skip s1);
* ¼ resolution: stride-2 c1 → c2, then three residual convolutions with dilation 1, 2, 4;
* decoder: 1×1 projection to the skip's channels, ×2 nearest upsampling, added to the skip,
  one 3×3 convolution (twice), then a 1×1 head to one logit per pixel.

The receptive field is ≈ 90 px, several bead diameters at the scale the network works at
(bead diameter 2–13 px after :func:`scopeflow.models.beadnet.scale_for_diameter`), so a
ring is seen whole and its centre gets one blob. Input height and width must be multiples
of :data:`STRIDE` (4). Cost ≈ 4.6 k multiply-adds per input pixel.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["STRIDE", "BeadUNet", "export_beadnet_onnx"]

#: input sides must be multiples of this
STRIDE = 4


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BeadUNet(nn.Module):
    """Small U-Net mapping a normalised frame (N, 1, H, W) to centre logits (N, 1, H, W).

    Parameters
    ----------
    channels : (int, int, int)
        Channels at full, ½ and ¼ resolution.
    """

    def __init__(self, channels: tuple[int, int, int] = (8, 16, 32)) -> None:
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        self.channels = (c0, c1, c2)
        self.enc0 = nn.Sequential(_cbr(1, c0), _cbr(c0, c0))
        self.enc1 = nn.Sequential(_cbr(c0, c1, 2), _cbr(c1, c1))
        self.down2 = _cbr(c1, c2, 2)
        self.dil = nn.ModuleList([_cbr(c2, c2, 1, d) for d in (1, 2, 4)])
        self.proj1 = nn.Conv2d(c2, c1, 1)
        self.dec1 = _cbr(c1, c1)
        self.proj0 = nn.Conv2d(c1, c0, 1)
        self.dec0 = _cbr(c0, c0)
        self.head = nn.Conv2d(c0, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.enc0(x)
        s1 = self.enc1(s0)
        z = self.down2(s1)
        for blk in self.dil:
            z = z + blk(z)
        u = F.interpolate(self.proj1(z), scale_factor=2.0, mode="nearest") + s1
        u = self.dec1(u)
        u = F.interpolate(self.proj0(u), scale_factor=2.0, mode="nearest") + s0
        return self.head(self.dec0(u))


def export_beadnet_onnx(net: BeadUNet, out: str | Path, source_sha256: str) -> Path:
    """Export a trained :class:`BeadUNet` as fp32 ONNX (dynamic N, H, W; H, W multiples of 4).

    The file records ``scopeflow.source_sha256`` (the ``.pt`` it came from, checked by
    :class:`scopeflow.models.runtime.OnnxRunner`) and ``scopeflow.meta`` (the channels).
    """
    from scopeflow.models.runtime import write_fp32_onnx

    net = net.eval().cpu().float()
    example = torch.zeros(1, 1, 16 * STRIDE, 16 * STRIDE)
    return write_fp32_onnx(net, example, out, source_sha256,
                           {"kind": "beadnet", "channels": list(net.channels)})
