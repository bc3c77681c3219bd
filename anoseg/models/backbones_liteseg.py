"""The three LiteSeg backbones: MobileNetV2 (torchvision), ShuffleNet v1 (g = 8) and DarkNet19.

Each backbone maps an image to ``(high, low)``: a deep map for the DASPP head and a shallow map for the decoder,
and exposes ``high_channels``, ``low_channels`` and ``high_stride`` / ``low_stride``. The ImageNet classifiers the
reference modules carry are never built (they never run).

Deviations from tahaemara/LiteSeg, both about what *runs* there:

* **ShuffleNet**: the reference passes ``dilation=2`` to ``stage4`` but never hands it on to the units, so stage 4
  runs undilated with a stride-2 first unit. We build what runs: the high-level map is at **stride 32**.
* **DarkNet19**: the reference gives three 1×1 convs ``padding=1`` and the dilation-2 3×3 convs ``padding=1``, so the
  stride-16 map wanders 16 → 18 → 20 → 18 → 20 → 18 → 18 → 16 (at 256² input) and its border is made of padding.
  We fix the paddings ("same" everywhere: 0 for 1×1, 2 for dilation-2 3×3), which keeps every map at H/16 and leaves
  the parameter count unchanged. The MACs (thop conventions) drop from the reference's 7.83 G to 6.80 G at 256²,
  because the reference runs eight of its deepest convs on 18×18 / 20×20 maps instead of 16×16. The no-op
  ``MaxPool2d(1, 1)`` that replaces the fifth pooling layer is left out.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
from torchvision.models import mobilenet_v2

from anoseg.models.blocks import ConvBNAct


class MobileNetV2Backbone(nn.Module):
    """torchvision's ``mobilenet_v2().features`` (width 1.0); high = ``features[18]`` (1280 ch, stride 32),
    low = ``features[3]`` (24 ch, stride 4). State-dict keys are torchvision's (``features.*``).

    Example:
        >>> high, low = MobileNetV2Backbone()(torch.zeros(1, 3, 256, 256))
        >>> tuple(high.shape), tuple(low.shape)
        ((1, 1280, 8, 8), (1, 24, 64, 64))
    """

    high_channels, high_stride = 1280, 32
    low_channels, low_stride = 24, 4
    _low_index = 3  # output of features[0..3]

    def __init__(self) -> None:
        super().__init__()
        # torchvision's own initialiser (kaiming fan_out for convs) matches the reference MobileNetV2's.
        self.features = mobilenet_v2(weights=None).features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = x
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == self._low_index:
                low = x
        return x, low


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet's shuffle), export-friendly."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet v1 unit: grouped 1×1 → shuffle → depthwise 3×3 → grouped 1×1, merged with the input.

    ``concat`` units halve the resolution and concatenate an average-pooled input (the branch then produces
    ``out - in`` channels); ``add`` units add the input. All convs carry a bias, as in the reference.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 8, concat: bool = False,
                 first_groups: int | None = None) -> None:
        super().__init__()
        mid = out_channels // 4  # bottleneck width is taken from the unit's full output width
        branch_out = out_channels - in_channels if concat else out_channels
        self.groups = groups
        self.compress = ConvBNAct(in_channels, mid, 1, groups=first_groups or groups, bias=True)
        self.depthwise = ConvBNAct(mid, mid, 3, stride=2 if concat else 1, groups=mid, bias=True, act=None)
        self.expand = ConvBNAct(mid, branch_out, 1, groups=groups, bias=True, act=None)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1) if concat else None
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.depthwise(channel_shuffle(self.compress(x), self.groups)))
        if self.pool is not None:
            return self.act(torch.cat((self.pool(x), out), dim=1))
        return self.act(x + out)


class ShuffleNetV1Backbone(nn.Module):
    """ShuffleNet v1, 1× width, 8 groups. high = stage 4 (1536 ch, stride 32), low = stage 2 (384 ch, stride 8).

    Stem: a biased 3×3 stride-2 conv without BN or ReLU, then a 3×3 stride-2 max-pool.

    Example:
        >>> high, low = ShuffleNetV1Backbone()(torch.zeros(1, 3, 256, 256))
        >>> tuple(high.shape), tuple(low.shape)
        ((1, 1536, 8, 8), (1, 384, 32, 32))
    """

    high_channels, high_stride = 1536, 32
    low_channels, low_stride = 384, 8

    def __init__(self, groups: int = 8) -> None:
        super().__init__()
        widths, repeats = (24, 384, 768, 1536), (3, 7, 3)
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        for i, repeat in enumerate(repeats):
            in_ch, out_ch = widths[i], widths[i + 1]
            # Stage 2's first 1×1 conv is not grouped: 24 input channels are too few to split 8 ways.
            units = [ShuffleUnit(in_ch, out_ch, groups, concat=True, first_groups=1 if i == 0 else groups)]
            units += [ShuffleUnit(out_ch, out_ch, groups) for _ in range(repeat)]
            stages.append(nn.Sequential(*units))
        self.stage2, self.stage3, self.stage4 = stages

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.stage2(self.maxpool(self.conv1(x)))
        return self.stage4(self.stage3(low)), low


def _darknet_conv(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> ConvBNAct:
    # lightnet's Conv2dBatchReLU: conv without bias, BN with momentum 0.01, LeakyReLU(0.1); "same" padding (fixed).
    block = ConvBNAct(in_channels, out_channels, kernel_size, dilation=dilation, act=lambda: nn.LeakyReLU(0.1))
    block.bn.momentum = 0.01
    return block


class DarkNet19Backbone(nn.Module):
    """DarkNet19 cut at stride 16 (dilation 2 in the last five convs), paddings fixed (see the module docstring).

    high = 1024 ch at stride 16, low = 128 ch at stride 4 (after the third conv block).

    Example:
        >>> high, low = DarkNet19Backbone()(torch.zeros(1, 3, 256, 256))
        >>> tuple(high.shape), tuple(low.shape)
        ((1, 1024, 16, 16), (1, 128, 64, 64))
    """

    high_channels, high_stride = 1024, 16
    low_channels, low_stride = 128, 4

    def __init__(self) -> None:
        super().__init__()
        conv, pool = _darknet_conv, nn.MaxPool2d
        self.low_layers = nn.Sequential(OrderedDict([
            ("conv1", conv(3, 32, 3)), ("pool1", pool(2, 2)),
            ("conv2", conv(32, 64, 3)), ("pool2", pool(2, 2)),
            ("conv3", conv(64, 128, 3)), ("conv4", conv(128, 64, 1)), ("conv5", conv(64, 128, 3)),
        ]))
        self.high_layers = nn.Sequential(OrderedDict([
            ("pool3", pool(2, 2)),
            ("conv6", conv(128, 256, 3)), ("conv7", conv(256, 128, 1)), ("conv8", conv(128, 256, 3)),
            ("pool4", pool(2, 2)),
            ("conv9", conv(256, 512, 3)), ("conv10", conv(512, 256, 1)), ("conv11", conv(256, 512, 3)),
            ("conv12", conv(512, 256, 1)), ("conv13", conv(256, 512, 3)),
            ("conv14", conv(512, 1024, 3, dilation=2)), ("conv15", conv(1024, 512, 1)),
            ("conv16", conv(512, 1024, 3, dilation=2)), ("conv17", conv(1024, 512, 1)),
            ("conv18", conv(512, 1024, 3, dilation=2)),
        ]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.low_layers(x)
        return self.high_layers(low), low
