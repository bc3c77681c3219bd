"""LFD (HUST-SLOW/LFD, ``models/net/LFD_core.py``): ``LFD_Core(scale_factor=2)``, a bilateral segmenter.

Two truncated ResNet-18s with their own weights:

* the **context** path runs stem + layer1 + layer2 on the input shrunk to ``(H / s, W / 2s)`` (128 ch, H/16 × W/32 for
  s = 2), then an aggregation module of two residual depthwise-separable 1×5 / 5×1 units;
* the **detail** path runs stem + layer1 on the full-resolution input (64 ch, H/4 × W/4), then a 1×1 "channel
  adjust" to 128 ch.

A selective fusion merges them with a 1-channel sigmoid attention ``a``: ``a * detail + up(context)``; a 1×1 head
emits ``num_classes`` logits at H/4, bilinearly resized to H × W. The authors hard-code 2 output channels; here the
final conv emits ``num_classes`` ("head widened"), so at 2 classes the model is the authors' one: 936,067 parameters.

The paper trains with the main output only, so the model returns one tensor in train and eval mode.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from anoseg.errors import AnosegError
from anoseg.models.backbones.resnet import ResNet18Trunk
from anoseg.models.base import Segmenter
from anoseg.models.blocks import ConvBNAct, resize
from anoseg.models.weights import StateDict

__all__ = ["LFD", "AggregationUnit", "SelectiveFusion", "torchvision_to_lfd"]


class AggregationUnit(nn.Module):
    """``x + pw(dw5x1(dw1x5(x)))``: a residual, depthwise-separable unit widening the receptive field horizontally.

    The 1×5 depthwise conv is dilated along the width by ``dilation``; there is no activation between the two
    depthwise convs (as in the authors' code). The pointwise conv is followed by BN and ReLU.

    Example:
        >>> AggregationUnit(128, dilation=2)(torch.zeros(1, 128, 16, 8)).shape
        torch.Size([1, 128, 16, 8])
    """

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.dw_row = nn.Conv2d(channels, channels, (1, 5), padding=(0, 2 * dilation), dilation=(1, dilation),
                                groups=channels)
        self.dw_col = nn.Conv2d(channels, channels, (5, 1), padding=(2, 0), groups=channels)
        self.pw = ConvBNAct(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(self.dw_col(self.dw_row(x)))


class SelectiveFusion(nn.Module):
    """Fuse a coarse context map into a fine detail map: ``a * detail + context↑`` with a 1-channel attention ``a``.

    ``a = sigmoid(conv1x1(relu(bn(conv1x1(cat[context↑, detail])))))``; ``context↑`` is the context map bilinearly
    resized to the detail map's size. Both inputs have ``channels`` channels.

    Example:
        >>> SelectiveFusion(128)(torch.zeros(1, 128, 64, 64), torch.zeros(1, 128, 16, 8)).shape
        torch.Size([1, 128, 64, 64])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(ConvBNAct(2 * channels, channels, 1, bias=True), nn.Conv2d(channels, 1, 1))

    def forward(self, detail: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context = resize(context, detail.shape[-2:])
        attention = torch.sigmoid(self.attention(torch.cat([context, detail], dim=1)))
        return attention * detail + context


class LFD(Segmenter):
    """LFD_Core: bilateral ResNet-18 segmenter (see the module docstring).

    ``scale_factor`` s shrinks the context path's input to ``(H // s, W // (2 s))``; the paper uses s = 2.

    Example:
        >>> LFD(num_classes=2).eval()(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
    """

    def __init__(self, num_classes: int = 2, scale_factor: int = 2) -> None:
        super().__init__()
        if not isinstance(scale_factor, int) or scale_factor < 1:
            raise AnosegError(f"model lfd: scale_factor must be a positive integer, got {scale_factor!r}")
        self.scale_factor = scale_factor
        self.context = ResNet18Trunk(stages=2)
        self.aggregation = nn.Sequential(AggregationUnit(128, dilation=2), AggregationUnit(128, dilation=1))
        self.detail = ResNet18Trunk(stages=1)
        self.channel_adjust = ConvBNAct(64, 128, 1, bias=True)
        self.fusion = SelectiveFusion(128)
        self.head = nn.Sequential(ConvBNAct(128, 128, 1, bias=True), nn.Conv2d(128, num_classes, 1))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # The context path sees the width shrunk twice as much as the height (industrial images: wide defects).
        context = self.context(resize(x, (h // self.scale_factor, w // (2 * self.scale_factor))))[-1]
        context = self.aggregation(context)
        detail = self.channel_adjust(self.detail(x)[-1])
        return self.head(self.fusion(detail, context))  # H/4 × W/4; Segmenter resizes to H × W


def torchvision_to_lfd(state: StateDict, module: nn.Module | None = None) -> StateDict:
    """Key filter for ``--backbone-weights``: one torchvision ``resnet18`` state dict feeds both trunks.

    The context trunk takes conv1, bn1, layer1 and layer2, the detail trunk conv1, bn1 and layer1 of the *same*
    weights (as the authors' two ``resnet18(pretrained=True)`` calls do); the file is read once.

    Example:
        >>> sorted(torchvision_to_lfd({"conv1.weight": 0}))
        ['context.conv1.weight', 'detail.conv1.weight']
    """
    return {f"{trunk}.{key}": value for trunk in ("context", "detail") for key, value in state.items()}
