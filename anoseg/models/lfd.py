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

from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models import ResNet18_Weights, resnet18

from anoseg.errors import AnosegError
from anoseg.models.blocks import ConvBNAct, resize
from anoseg.models.registry import register_model
from anoseg.models.weights import StateDict, load_backbone_weights

__all__ = ["LFD", "AggregationUnit", "ResNet18Trunk", "SelectiveFusion", "build_lfd"]


class ResNet18Trunk(nn.Module):
    """The first ``stages`` residual stages of torchvision's ResNet-18 (stem included), nothing after them.

    The children keep torchvision's names (``conv1``, ``bn1``, ``layer1``, ...), so a torchvision ``resnet18`` state
    dict loads into the trunk as is (its extra keys, e.g. ``layer3.*`` or ``fc.*``, are simply not asked for).

    Example:
        >>> ResNet18Trunk(stages=2)(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 128, 8, 8])
    """

    def __init__(self, stages: int) -> None:
        super().__init__()
        if stages not in (1, 2, 3, 4):
            raise ValueError(f"a ResNet-18 has 1 to 4 stages, got {stages}")
        # Take the parts of a torchvision model (rather than rebuilding them) so layer types, names and init match.
        resnet = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.stages = stages
        for i in range(1, stages + 1):
            self.add_module(f"layer{i}", getattr(resnet, f"layer{i}"))

    @property
    def out_channels(self) -> int:
        return 64 * 2 ** (self.stages - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x


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


class LFD(nn.Module):
    """LFD_Core: bilateral ResNet-18 segmenter (see the module docstring).

    ``scale_factor`` s shrinks the context path's input to ``(H // s, W // (2 s))``; the paper uses s = 2.

    Example:
        >>> LFD(num_classes=2).eval()(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
    """

    def __init__(self, num_classes: int = 2, scale_factor: int = 2) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.context = ResNet18Trunk(stages=2)
        self.aggregation = nn.Sequential(AggregationUnit(128, dilation=2), AggregationUnit(128, dilation=1))
        self.detail = ResNet18Trunk(stages=1)
        self.channel_adjust = ConvBNAct(64, 128, 1, bias=True)
        self.fusion = SelectiveFusion(128)
        self.head = nn.Sequential(ConvBNAct(128, 128, 1, bias=True), nn.Conv2d(128, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # The context path sees the width shrunk twice as much as the height (industrial images: wide defects).
        context = self.context(resize(x, (h // self.scale_factor, w // (2 * self.scale_factor))))
        context = self.aggregation(context)
        detail = self.channel_adjust(self.detail(x))
        logits = self.head(self.fusion(detail, context))
        return resize(logits, (h, w))


def _torchvision_to_lfd(state: StateDict) -> StateDict:
    """Map a torchvision ``resnet18`` state dict onto both trunks (``context.*`` and ``detail.*``)."""
    return {f"{trunk}.{key}": value for trunk in ("context", "detail") for key, value in state.items()}


def load_lfd_backbones(model: LFD, source: str | Path | None) -> bool:
    """Initialise both ResNet-18 trunks of ``model`` from ``"imagenet"``, ``"none"`` or a torchvision-style file.

    The context trunk takes conv1, bn1, layer1 and layer2; the detail trunk conv1, bn1 and layer1 of the *same*
    ResNet-18 weights (as the authors' two ``resnet18(pretrained=True)`` calls do). The file is read once, so a
    missing ImageNet download warns once.

    Example:
        >>> load_lfd_backbones(LFD(), "none")
        False
    """
    trunks = nn.ModuleDict({"context": model.context, "detail": model.detail})  # shares the modules, copies nothing
    return load_backbone_weights(trunks, source, imagenet=ResNet18_Weights.IMAGENET1K_V1, convert=_torchvision_to_lfd,
                                 name="LFD ResNet-18")


@register_model("lfd")
def build_lfd(
    num_classes: int = 2, backbone_weights: str | None = "none", scale_factor: int = 2, **options: object
) -> nn.Module:
    """Build LFD_Core; ``backbone_weights`` = ``"imagenet"`` | ``"none"`` | path to a torchvision resnet18 state dict.

    Example:
        >>> model = build_lfd(num_classes=2, backbone_weights="none")
        >>> model.eval()(torch.zeros(1, 3, 256, 512)).shape
        torch.Size([1, 2, 256, 512])
    """
    if options:
        raise AnosegError(f"model lfd: unknown option(s) {', '.join(sorted(options))}; it accepts scale_factor")
    if not isinstance(scale_factor, int) or scale_factor < 1:
        raise AnosegError(f"model lfd: scale_factor must be a positive integer, got {scale_factor!r}")
    model = LFD(num_classes=num_classes, scale_factor=scale_factor)
    load_lfd_backbones(model, backbone_weights)
    return model
