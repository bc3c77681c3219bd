"""LEDNet (xiaoyufenfei/LEDNet, ``train/lednet.py``): a light asymmetric encoder–decoder, fixed to emit any class count.

* **Encoder** (ERFNet-style, output stride 8, 128 channels): downsampler blocks (strided conv ‖ max-pool, concatenated)
  and split-shuffle non-bottleneck (SS-nbt) blocks, which split the channels in two halves, run factorised 3×1/1×3
  convs (mirrored order in each half, dilated in the second pair), add the input back and shuffle the two halves.
* **Decoder**: the attention pyramid network (APN): a 1-channel 7×7 / 5×5 / 3×3 pyramid at 1/2, 1/4 and 1/8 of the
  encoder map, merged top-down and used as a spatial attention on a 1×1 projection, plus a global-pooling term.

The authors' bug, fixed here: their APN always emits **20** channels (19 Cityscapes classes + void), whatever
``num_classes`` is, and their decoder always resizes to a **fixed 20×512×1024**, whatever the input size. Here the APN
emits ``num_classes`` channels and the output is resized to the input size (the "fixed variant" of the reference
table: 918,367 parameters at 2 classes). Dead code is not built: the encoder's ``output_conv``, used only by the
authors' encoder-only pre-training stage.

Two harmless generalisations: the pyramid's upsampling targets are the sizes of the maps it adds to (the authors
compute ``h // 4`` and ``h // 2``, which equal them for inputs that are multiples of 32, the only ones their code runs
on), and the APN's 1×1 global term is broadcast instead of bilinearly "resized" from 1×1 (the same values).

There are no ImageNet weights for this encoder in torchvision (the authors ship none either): ``backbone_weights=
"imagenet"`` warns once and keeps the random init; a file path loads a state dict of :class:`LEDNetEncoder`.

The paper trains with the main output only, so the model returns one tensor in train and eval mode. As in the
authors' code, the APN's global branch applies BatchNorm to a 1×1 map, so a training step needs batches of at least
2 images (PyTorch refuses to compute batch statistics from a single value per channel).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from anoseg.models.base import Segmenter
from anoseg.models.blocks import ConvBNAct, channel_shuffle, resize

__all__ = ["APN", "Downsampler", "LEDNet", "LEDNetEncoder", "SSnbt"]

BN_EPS = 1e-3  # every BatchNorm of LEDNet (inherited from ERFNet's Torch7 roots)


class Downsampler(nn.Module):
    """Halve the resolution: ``ReLU(BN(cat[conv3x3/2(x), maxpool2x2(x)]))`` with ``out_channels - in_channels`` convs.

    Example:
        >>> Downsampler(3, 32)(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 32, 32, 48])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, pool = self.conv(x), self.pool(x)
        # On odd sizes the strided conv rounds up and the pool rounds down: zero-pad the pooled map (centred).
        dh, dw = conv.shape[-2] - pool.shape[-2], conv.shape[-1] - pool.shape[-1]
        pool = F.pad(pool, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.act(self.bn(torch.cat([conv, pool], dim=1)))


def _factorised_branch(channels: int, vertical_first: bool, dilation: int) -> nn.Sequential:
    """One SS-nbt half: two (3×1 → ReLU → 1×3 → BN) pairs with a ReLU between them, or the mirror order (1×3 first).

    The second pair is dilated by ``dilation`` along each conv's long axis. Full convs with bias, "same" padding.
    """
    vertical, horizontal = (3, 1), (1, 3)
    first, second = (vertical, horizontal) if vertical_first else (horizontal, vertical)
    layers: list[nn.Module] = []
    for d, act in ((1, nn.ReLU), (dilation, None)):
        dil_first = (d, 1) if first == vertical else (1, d)
        dil_second = (d, 1) if second == vertical else (1, d)
        pad_first = tuple(dl * (k - 1) // 2 for k, dl in zip(first, dil_first, strict=True))
        layers += [
            nn.Conv2d(channels, channels, first, padding=pad_first, dilation=dil_first),
            nn.ReLU(),
            ConvBNAct(channels, channels, second, dilation=dil_second, bias=True, act=act, bn_eps=BN_EPS),
        ]
    return nn.Sequential(*layers)


class SSnbt(nn.Module):
    """Split-shuffle non-bottleneck block: ``shuffle(ReLU(x + cat[left(x₁), right(x₂)]))``.

    ``x₁``/``x₂`` are the first/second halves of the channels. ``left`` = 3×1→ReLU→1×3→BN→ReLU→3×1(d)→ReLU→1×3(d)→BN,
    ``right`` is its mirror (1×3 first); ``d`` = ``dilation`` dilates the second pair along its long axis.
    Dropout2d(``dropout``) acts on the branch outputs in training only.

    Example:
        >>> SSnbt(32, dropout=0.03, dilation=1)(torch.zeros(1, 32, 16, 16)).shape
        torch.Size([1, 32, 16, 16])
    """

    def __init__(self, channels: int, dropout: float = 0.0, dilation: int = 1) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"SS-nbt splits the channels in two halves, got {channels}")
        half = channels // 2
        self.left = _factorised_branch(half, vertical_first=True, dilation=dilation)
        self.right = _factorised_branch(half, vertical_first=False, dilation=dilation)
        # Dropout2d zeroes whole channels independently, so one dropout on the concatenation is the authors' two.
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        branches = self.dropout(torch.cat([self.left(x1), self.right(x2)], dim=1))
        return channel_shuffle(self.act(x + branches), 2)


class LEDNetEncoder(nn.Module):
    """The LEDNet encoder: 3→128 channels at output stride 8.

    Downsampler(3→32), 3 × SS-nbt(32, p 0.03), Downsampler(32→64), 2 × SS-nbt(64, p 0.03), Downsampler(64→128),
    8 × SS-nbt(128, p 0.3) with dilations 1, 2, 5, 9, 2, 5, 9, 17.

    Example:
        >>> LEDNetEncoder()(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 128, 8, 8])
    """

    out_channels = 128

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            Downsampler(3, 32),
            *(SSnbt(32, 0.03, 1) for _ in range(3)),
            Downsampler(32, 64),
            *(SSnbt(64, 0.03, 1) for _ in range(2)),
            Downsampler(64, 128),
            *(SSnbt(128, 0.3, d) for d in (1, 2, 5, 9, 2, 5, 9, 17)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class APN(nn.Module):
    """Attention pyramid network: ``t * mid(x) + global(x)``, with ``t`` a 1-channel pyramid attention map.

    ``mid`` and ``global`` (after 1×1 average pooling) are 1×1 conv-BN-ReLU projections to ``out_channels``. The
    pyramid runs 7×7, 5×5 and 3×3 (+3×3) stride-2 conv-BN-ReLUs to 1 channel at 1/2, 1/4 and 1/8 of the input, and
    merges them top-down (upsample, add a 5×5 / 7×7 conv-BN-ReLU of the finer level) back to full size. Upsampling is
    bilinear with ``align_corners=True``; ``t`` goes through ReLU but no sigmoid.

    Example:
        >>> APN(128, 2).eval()(torch.zeros(1, 128, 32, 32)).shape
        torch.Size([1, 2, 32, 32])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, k: int, stride: int = 1) -> ConvBNAct:
            return ConvBNAct(cin, cout, k, stride=stride, bias=True, bn_eps=BN_EPS)

        self.global_branch = nn.Sequential(nn.AdaptiveAvgPool2d(1), cbr(in_channels, out_channels, 1))
        self.mid = cbr(in_channels, out_channels, 1)
        self.down1 = cbr(in_channels, 1, 7, stride=2)
        self.down2 = cbr(1, 1, 5, stride=2)
        self.down3 = nn.Sequential(cbr(1, 1, 3, stride=2), cbr(1, 1, 3))
        self.lateral2 = cbr(1, 1, 5)
        self.lateral1 = cbr(1, 1, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        t = resize(d3, d2.shape[-2:], align_corners=True) + self.lateral2(d2)
        t = resize(t, d1.shape[-2:], align_corners=True) + self.lateral1(d1)
        t = resize(t, x.shape[-2:], align_corners=True)
        # The global term is (N, C, 1, 1): broadcasting it equals the authors' align_corners resize of a 1×1 map.
        return t * self.mid(x) + self.global_branch(x)


class LEDNet(Segmenter):
    """LEDNet with the APN emitting ``num_classes`` and logits resized to the input size (see the module docstring).

    Example:
        >>> LEDNet(num_classes=2).eval()(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
    """

    align_corners = True

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.encoder = LEDNetEncoder()
        self.decoder = APN(LEDNetEncoder.out_channels, num_classes)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
