"""MobileNetV2 (torchvision, width 1.0) as LiteSeg's backbone: features at stride 4 (24 ch) and 32 (1280 ch)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models import mobilenet_v2

from anoseg.models.backbones.base import Backbone
from anoseg.models.weights import StateDict

__all__ = ["MobileNetV2Backbone", "torchvision_keys"]


class MobileNetV2Backbone(Backbone):
    """torchvision's ``mobilenet_v2().features``; returns ``[features[3] (24 ch, /4), features[18] (1280 ch, /32)]``.

    State-dict keys are torchvision's (``features.*``); the classifier is not built.

    Example:
        >>> low, high = MobileNetV2Backbone()(torch.zeros(1, 3, 256, 256))
        >>> tuple(low.shape), tuple(high.shape)
        ((1, 24, 64, 64), (1, 1280, 8, 8))
    """

    registry_name = "mobilenetv2"
    out_channels = (24, 1280)
    reductions = (4, 32)
    _low_index = 3  # output of features[0..3]

    def __init__(self) -> None:
        super().__init__()
        # torchvision's own initialiser (kaiming fan_out for convs) matches the reference MobileNetV2's.
        self.features = mobilenet_v2(weights=None).features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        low = x
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == self._low_index:
                low = x
        return [low, x]


def torchvision_keys(state: StateDict, module: nn.Module | None = None) -> StateDict:
    """Accept a torchvision ``mobilenet_v2()`` state dict, or one of its bare ``features`` module (``0.0.weight``)."""
    return {k if k.startswith(("features.", "classifier.")) else f"features.{k}": v for k, v in state.items()}
