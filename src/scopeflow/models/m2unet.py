"""M2U-Net: a MobileNetV2 encoder with a contractive-bottleneck U-Net decoder.

Laibacher, Weyde & Jalali, "M2U-Net: Effective and Efficient Retinal Vessel
Segmentation for Real-World Applications" (CVPRW 2019), as used by the Octopi
project for red-blood-cell segmentation of DPC images.

Architecture (written from the description in ``algorithms.md`` §1):

* Encoder = the first 14 layers of MobileNetV2: a 3×3 stride-2 convolution
  (``in_channels`` → 32, BN, ReLU6) followed by inverted-residual blocks with
  settings (t, c, n, s) = (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
  (6, 64, 4, 2), (6, 96, 3, 1), split into 4 stages at H/2 (16 ch), H/4 (24),
  H/8 (32) and H/16 (96).
* Decoder = 4 blocks; each upsamples 2× (bilinear, ``align_corners=False``),
  concatenates the skip (the last block concatenates the raw input image) and
  applies one stride-1 inverted residual with expansion t = 0.15.
* Head = 1×1 convolution 16 → ``out_channels`` with bias (the only biased conv).

The forward pass returns *logits*; apply a sigmoid (1 output) or a softmax over
channels (several outputs). Inputs of any H×W are reflect-padded at the bottom
and right to a multiple of 16 and the output is cropped back, so pixel (0, 0)
stays on the stride-16 grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scopeflow.models.m2unet_files import STRIDE

__all__ = ["InferenceM2UNet", "InvertedResidual", "M2UNet", "count_parameters", "network_from_weights"]

#: MobileNetV2 inverted-residual settings (t, c, n, s) of encoder layers 1–13.
_ENCODER_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
#: Layer index ranges (start, stop) of the four encoder stages (layer 0 = stem conv).
_STAGES = ((0, 2), (2, 4), (4, 7), (7, 14))


def _encode(encoder: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """Run the encoder; return the outputs of its four stages (H/2, H/4, H/8, H/16)."""
    skips = []
    for start, stop in _STAGES:
        for layer in encoder[start:stop]:
            x = layer(x)
        skips.append(x)
    return skips


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted-residual block.

    1×1 expansion to ``round(in_ch * expand)`` channels (BN, ReLU6; skipped when
    ``expand == 1``), depthwise 3×3 with ``stride`` (BN, ReLU6), linear 1×1
    projection to ``out_ch`` (BN). A residual connection is added when
    ``stride == 1`` and ``in_ch == out_ch``. Convolutions have no bias.

    Parameters
    ----------
    in_ch, out_ch : int
        Input and output channels.
    stride : int
        Stride of the depthwise convolution (1 or 2).
    expand : float
        Expansion ratio t (6 in the encoder, 0.15 in the decoder).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: float) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand))
        self.use_res = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [
                nn.Conv2d(in_ch, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        y = self.conv(x)
        return x + y if self.use_res else y


class _DecoderBlock(nn.Module):
    """Upsample 2× (bilinear), concatenate the skip, apply a contractive IR block."""

    def __init__(self, up_ch: int, skip_ch: int, out_ch: int, expand: float) -> None:
        super().__init__()
        self.skip_channels = int(skip_ch)
        self.ir = InvertedResidual(up_ch + skip_ch, out_ch, 1, expand)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` to ``skip``'s size, concatenate and convolve."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.ir(torch.cat([x, skip], dim=1))


class M2UNet(nn.Module):
    """M2U-Net segmentation network.

    Parameters
    ----------
    in_channels : int, default 1
        Channels of the input image (1 for a DPC image).
    out_channels : int, default 1
        Output channels: 1 = foreground logit (use a sigmoid), 3 = background /
        cell body / cell contour logits (use a softmax over dim 1).
    expand_decoder : float, default 0.15
        Expansion ratio of the decoder's contractive bottleneck blocks.

    Notes
    -----
    With ``in_channels=1, out_channels=1`` the model has 549,284 parameters
    (encoder 541,952, decoder 7,315, head 17).

    Examples
    --------
    >>> net = M2UNet(1, 3).eval()
    >>> net(torch.zeros(1, 1, 100, 70)).shape
    torch.Size([1, 3, 100, 70])
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, expand_decoder: float = 0.15):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(self.in_channels, 32, 3, 2, 1, bias=False),
                nn.BatchNorm2d(32),
                nn.ReLU6(inplace=True),
            )
        ]
        ch = 32
        for t, c, n, s in _ENCODER_SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(ch, c, s if i == 0 else 1, t))
                ch = c
        self.encoder = nn.ModuleList(layers)  # 14 layers
        self.dec4 = _DecoderBlock(96, 32, 64, expand_decoder)
        self.dec3 = _DecoderBlock(64, 24, 44, expand_decoder)
        self.dec2 = _DecoderBlock(44, 16, 30, expand_decoder)
        self.dec1 = _DecoderBlock(30, self.in_channels, 16, expand_decoder)
        self.head = nn.Conv2d(16, self.out_channels, 1, bias=True)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def encoder_modules(self) -> list[nn.Module]:
        """Return the encoder modules (for freezing during fine-tuning)."""
        return [self.encoder]

    def decoder_modules(self) -> list[nn.Module]:
        """Return the decoder modules, head excluded."""
        return [self.dec4, self.dec3, self.dec2, self.dec1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (N, out_channels, H, W) for an input (N, in_channels, H, W).

        H and W may be anything ≥ 1: the input is reflect-padded at the bottom and
        right to a multiple of 16 (replicate-padded when a side is too short to
        reflect) and the output is cropped back.
        """
        h, w = x.shape[-2:]
        ph, pw = (-h) % STRIDE, (-w) % STRIDE
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        c1, c2, c3, c4 = _encode(self.encoder, x)
        y = self.dec4(c4, c3)
        y = self.dec3(y, c2)
        y = self.dec2(y, c1)
        y = self.dec1(y, x)
        y = self.head(y)
        if ph or pw:
            y = y[..., :h, :w]
        return y


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Return the number of (trainable) parameters of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        Any module.
    trainable_only : bool, default False
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int
        Parameter count.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a biased convolution equal to ``bn(conv(x))`` in eval mode."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        groups=conv.groups, bias=True,
    )
    fused.weight.data = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    fused.bias.data = (bias - bn.running_mean) * scale + bn.bias.detach()
    return fused


def _fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Fold every (Conv2d, BatchNorm2d) pair of a block into one biased convolution."""
    mods, out, i = list(seq), [], 0
    while i < len(mods):
        if isinstance(mods[i], nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
            out.append(_fold_bn(mods[i], mods[i + 1]))
            i += 2
        else:
            out.append(nn.ReLU6() if isinstance(mods[i], nn.ReLU6) else mods[i])
            i += 1
    return nn.Sequential(*out)


class _FoldedResidual(nn.Module):
    """An :class:`InvertedResidual` with its batch norms folded into the convolutions."""

    def __init__(self, block: InvertedResidual) -> None:
        super().__init__()
        self.use_res = block.use_res
        self.conv = _fold_sequential(block.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res else y


def _merge_pointwise(first: nn.Conv2d, second: nn.Conv2d) -> nn.Conv2d:
    """One biased 1×1 convolution equal to ``second(first(x))`` (both 1×1, nothing between)."""
    w1, w2 = first.weight.detach()[:, :, 0, 0], second.weight.detach()[:, :, 0, 0]
    b1 = first.bias.detach() if first.bias is not None else torch.zeros(w1.shape[0])
    b2 = second.bias.detach() if second.bias is not None else torch.zeros(w2.shape[0])
    merged = nn.Conv2d(w1.shape[1], w2.shape[0], 1, bias=True)
    merged.weight.data = (w2 @ w1)[:, :, None, None].clone()
    merged.bias.data = (w2 @ b1 + b2).clone()
    return merged


class _FusedDecoderBlock(nn.Module):
    """A decoder block computed as ``out(relu6(dw(relu6(up(a) + B skip + b))))``, where ``a``
    is the previous block's output already projected to this block's hidden channels.

    The trained block is ``P relu6(dw(relu6(bn(W cat(up(y), skip)))))``, with a linear
    projection ``P`` and ``W = [A, B]``. The 1×1 convolution ``A`` commutes with bilinear
    upsampling (its weights sum to 1, so biases commute too), so ``A`` is applied before
    upsampling and merged with the previous block's projection into one convolution from
    that block's hidden channels to this one's (t = 0.15: 5–19 channels), and this block's
    ``P`` is merged with the next block's ``A`` (or with the head): the 30–96-channel
    decoder outputs and the concatenations are never computed. Equal to the trained
    blocks up to float rounding.
    """

    def __init__(self, block: _DecoderBlock, expand_skip: nn.Conv2d, following: nn.Conv2d) -> None:
        super().__init__()
        self.expand_skip = expand_skip
        dw, act, project = _fold_sequential(nn.Sequential(*list(block.ir.conv)[3:]))
        self.depthwise = nn.Sequential(dw, act)
        #: projection of this block merged with what follows it (next block's ``A``, or the head)
        self.out = _merge_pointwise(project, following)

    @staticmethod
    def split_expansion(block: _DecoderBlock) -> tuple[nn.Conv2d, nn.Conv2d]:
        """A block's expansion, batch norm folded, as ``(A, B)``: ``A`` on the upsampled input
        (no bias), ``B`` on the skip (with the bias)."""
        fused = _fold_bn(block.ir.conv[0], block.ir.conv[1])
        up_ch = fused.in_channels - block.skip_channels
        w = fused.weight.detach()
        expand_up = nn.Conv2d(up_ch, w.shape[0], 1, bias=False)
        expand_up.weight.data = w[:, :up_ch].clone()
        expand_skip = nn.Conv2d(w.shape[1] - up_ch, w.shape[0], 1, bias=True)
        expand_skip.weight.data = w[:, up_ch:].clone()
        expand_skip.bias.data = fused.bias.detach().clone()
        return expand_up, expand_skip

    def forward(self, a: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(a, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.out(self.depthwise(F.relu6(up + self.expand_skip(skip))))


class InferenceM2UNet(nn.Module):
    """An eval-mode :class:`M2UNet` rewritten for fast inference; same logits.

    Batch norms are folded into the convolutions, and the decoder works in each block's
    few hidden channels (see :class:`_FusedDecoderBlock`). Upsampling uses a constant
    scale of 2, so an ONNX export has static ``Resize`` scales. Inputs must already be
    padded to a multiple of :data:`STRIDE` (16) on both sides; the output has the input's
    height and width.

    Parameters
    ----------
    net : M2UNet
        The trained network (its weights are copied; ``net`` is not modified).
    """

    def __init__(self, net: M2UNet) -> None:
        super().__init__()
        net = net.eval()
        self.encoder = nn.ModuleList(
            _fold_sequential(layer) if isinstance(layer, nn.Sequential) else _FoldedResidual(layer)
            for layer in net.encoder
        )
        blocks = (net.dec4, net.dec3, net.dec2, net.dec1)
        ups, skips = zip(*(_FusedDecoderBlock.split_expansion(b) for b in blocks))
        self.expand_bottom = ups[0]  # A of the first block, on c4
        following = [*ups[1:], net.head]
        self.decoders = nn.ModuleList(
            _FusedDecoderBlock(b, s, f) for b, s, f in zip(blocks, skips, following)
        )
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W) for an input (N, in_channels, H, W) padded to multiples of 16."""
        c1, c2, c3, c4 = _encode(self.encoder, x)
        a = self.expand_bottom(c4)
        for dec, skip in zip(self.decoders, (c3, c2, c1, x)):
            a = dec(a, skip)
        return a


def network_from_weights(loaded: dict) -> M2UNet:
    """The :class:`M2UNet` of a :func:`scopeflow.models.m2unet_files.load_weights` result, eval mode, CPU."""
    meta = loaded["meta"]
    net = M2UNet(int(meta["in_channels"]), int(meta["out_channels"]))
    net.load_state_dict(loaded["state_dict"])
    return net.eval()
