"""ShuffleNet v1, 1× width, 8 groups, as LiteSeg's backbone (tahaemara/LiteSeg).

Departure: the reference passes ``dilation=2`` to ``stage4`` but never hands it on to the units, so stage 4 runs
undilated with a stride-2 first unit. We build what runs: the high-level map is at **stride 32**. No ImageNet
weights exist in torchvision: ``"imagenet"`` warns once; a PATH holds this module's own state dict.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from anoseg.models.backbones.base import Backbone
from anoseg.models.blocks import ConvBNAct, channel_shuffle

__all__ = ["ShuffleNetV1Backbone", "ShuffleUnit"]


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


class ShuffleNetV1Backbone(Backbone):
    """ShuffleNet v1 (g = 8); returns ``[stage 2 (384 ch, /8), stage 4 (1536 ch, /32)]``.

    Stem: a biased 3×3 stride-2 conv without BN or ReLU, then a 3×3 stride-2 max-pool.

    Example:
        >>> low, high = ShuffleNetV1Backbone()(torch.zeros(1, 3, 256, 256))
        >>> tuple(low.shape), tuple(high.shape)
        ((1, 384, 32, 32), (1, 1536, 8, 8))
    """

    registry_name = "shufflenet_v1_g8"
    out_channels = (384, 1536)
    reductions = (8, 32)

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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        low = self.stage2(self.maxpool(self.conv1(x)))
        return [low, self.stage4(self.stage3(low))]
