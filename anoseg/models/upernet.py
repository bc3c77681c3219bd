"""UperNet with a ResNet-50-V1c backbone: the "UperNet 64.042M" baseline that LFD quotes (mmseg-style).

Reference: Xiao et al., "Unified Perceptual Parsing for Scene Understanding" (ECCV'18), as configured in
MMSegmentation's ``upernet_r50`` (``ResNetV1c`` depth 50, strides 1/2/2/2, no dilation; ``UPerHead`` in_channels
256/512/1024/2048, channels 512, pool scales 1/2/3/6, dropout 0.1, align_corners=False).

* Backbone (``anoseg.models.backbones.resnet.ResNet50V1c``): deep stem 3→32→32→64 + max pool, torchvision ResNet-50
  stages.
* Head (:class:`UPerHead`): PPM on C5 (per bin 1×1 conv-BN-ReLU, concat with C5, 3×3 bottleneck conv-BN-ReLU),
  1×1 conv-BN-ReLU laterals on C2–C4, top-down addition (bilinear, align_corners=False), 3×3 conv-BN-ReLU FPN convs
  on the three finer levels, concat of all four at 1/4 → 3×3 ``fpn_bottleneck`` → Dropout2d(0.1) → 1×1 classifier.
  Logits are resized to the input (bilinear, align_corners=False).

Only the decode head is built (no auxiliary FCN head): that is the graph whose count, 64,041,826 at 2 classes,
matches the quoted 64.042M (with mmseg's aux head it would be 66.4M). Training returns the main logits only.
``backbone_weights="imagenet"`` loads torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` into layer1–layer4; the V1c
deep stem has no torchvision counterpart and stays randomly initialised (a warning says so). An mmseg
``resnet50_v1c`` checkpoint given as a PATH initialises the whole backbone, stem included.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from anoseg.models.backbones import Backbone
from anoseg.models.base import Segmenter
from anoseg.models.blocks import ConvBNAct, PyramidPooling, resize

__all__ = ["UPerHead", "UperNet"]


class UPerHead(nn.Module):
    """mmseg's UPerHead: PPM on the coarsest map + an FPN, all levels fused at the finest (stride-4) resolution.

    Example:
        >>> head = UPerHead((8, 16, 32, 64), num_classes=2, channels=16).eval()
        >>> feats = [torch.zeros(1, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate((8, 16, 32, 64))]
        >>> head(feats).shape
        torch.Size([1, 2, 64, 64])
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] = (256, 512, 1024, 2048),
        num_classes: int = 2,
        channels: int = 512,
        bins: tuple[int, ...] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels[-1], channels, bins, bin_act=nn.ReLU, bottleneck_kernel=3)
        self.laterals = nn.ModuleList(ConvBNAct(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNAct(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNAct(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        levels = [lateral(f) for lateral, f in zip(self.laterals, features, strict=False)]
        levels.append(self.ppm(features[-1]))
        # Top-down: each level receives the (already summed) coarser one, like an FPN.
        for i in range(len(levels) - 1, 0, -1):
            levels[i - 1] = levels[i - 1] + resize(levels[i], levels[i - 1].shape[-2:])
        outs = [conv(level) for conv, level in zip(self.fpn_convs, levels, strict=False)] + [levels[-1]]
        size = outs[0].shape[-2:]
        fused = torch.cat([outs[0]] + [resize(o, size) for o in outs[1:]], dim=1)
        return self.classifier(self.dropout(self.fpn_bottleneck(fused)))


class UperNet(Segmenter):
    """A stride-{4,8,16,32} backbone and :class:`UPerHead`; logits resized to the input (align_corners=False).

    Example:
        >>> from anoseg.models.backbones.resnet import ResNet50V1c
        >>> model = UperNet(ResNet50V1c(), num_classes=2).eval()
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    def __init__(self, backbone: Backbone, num_classes: int, channels: int = 512) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = UPerHead(tuple(backbone.out_channels), num_classes, channels)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
