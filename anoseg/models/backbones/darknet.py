"""DarkNet19 cut at stride 16, as LiteSeg's backbone (tahaemara/LiteSeg, lightnet's layers).

Departure: the reference gives three 1×1 convs ``padding=1`` and the dilation-2 3×3 convs ``padding=1``, so the
stride-16 map wanders 16 → 18 → 20 → 18 → 20 → 18 → 18 → 16 (at 256² input) and its border is made of padding. We
fix the paddings ("same" everywhere: 0 for 1×1, 2 for dilation-2 3×3), which keeps every map at H/16 and leaves the
parameter count unchanged. The MACs (thop conventions) drop from the reference's 7.83 G to 6.80 G at 256², because
the reference runs eight of its deepest convs on 18×18 / 20×20 maps instead of 16×16. The no-op ``MaxPool2d(1, 1)``
that replaces the fifth pooling layer is left out. No ImageNet weights exist in torchvision: ``"imagenet"`` warns.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from anoseg.models.backbones.base import Backbone
from anoseg.models.blocks import ConvBNAct

__all__ = ["DarkNet19Backbone"]


def _darknet_conv(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> ConvBNAct:
    # lightnet's Conv2dBatchReLU: conv without bias, BN with momentum 0.01, LeakyReLU(0.1); "same" padding (fixed).
    block = ConvBNAct(in_channels, out_channels, kernel_size, dilation=dilation, act=lambda: nn.LeakyReLU(0.1))
    block.bn.momentum = 0.01
    return block


class DarkNet19Backbone(Backbone):
    """DarkNet19 (dilation 2 in the last five convs); returns ``[conv5 (128 ch, /4), conv18 (1024 ch, /16)]``.

    Example:
        >>> low, high = DarkNet19Backbone()(torch.zeros(1, 3, 256, 256))
        >>> tuple(low.shape), tuple(high.shape)
        ((1, 128, 64, 64), (1, 1024, 16, 16))
    """

    registry_name = "darknet19"
    out_channels = (128, 1024)
    reductions = (4, 16)

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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        low = self.low_layers(x)
        return [low, self.high_layers(low)]
