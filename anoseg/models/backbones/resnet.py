"""ResNet trunks: torchvision's ResNet-18 (LFD), SFNet's deep-stem ResNet-18, mmseg's ResNet-50-V1c.

Weight files (``load_weights(PATH)``), besides each module's own state dicts: torchvision ``resnet18`` files for the
trunk; the SFSegNets ``resnet18-deep-inplane128.pth`` for the deep-stem ResNet-18; mmseg ResNet-V1c checkpoints
(``stem.0/1/3/4/6/7``, optionally under ``backbone.``) for ResNet-50-V1c.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torchvision

from anoseg.models.backbones.base import Backbone
from anoseg.models.blocks import ConvBNAct, init_conv_bn
from anoseg.models.keys import rename_keys, strip_prefix
from anoseg.models.weights import StateDict

__all__ = ["BasicBlock", "DeepStemResNet18", "ResNet18Trunk", "ResNet50V1c"]


class _StagedResNet(Backbone):
    """A trunk with a ``_stem`` step and ``layer1``…``layer<n>``; returns every stage's output."""

    num_stages = 4

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self._stem(x)
        features = []
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return features


class ResNet18Trunk(_StagedResNet):
    """The first ``stages`` residual stages of torchvision's ResNet-18 (stem included), nothing after them.

    The children keep torchvision's names (``conv1``, ``bn1``, ``layer1``, ...), so a torchvision ``resnet18`` state
    dict loads as is (its extra keys, e.g. ``layer3.*`` or ``fc.*``, are not asked for).

    Example:
        >>> [f.shape[1] for f in ResNet18Trunk(stages=2)(torch.zeros(1, 3, 64, 64))]
        [64, 128]
    """

    registry_name = "resnet18"

    def __init__(self, stages: int = 4) -> None:
        super().__init__()
        if stages not in (1, 2, 3, 4):
            raise ValueError(f"a ResNet-18 has 1 to 4 stages, got {stages}")
        # Take the parts of a torchvision model (rather than rebuilding them) so layer types, names and init match.
        resnet = torchvision.models.resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.num_stages = stages
        self.out_channels = tuple(64 * 2**i for i in range(stages))
        self.reductions = tuple(4 * 2**i for i in range(stages))
        for i in range(1, stages + 1):
            self.add_module(f"layer{i}", getattr(resnet, f"layer{i}"))

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class BasicBlock(nn.Module):
    """ResNet basic block; ``dilation`` applies to the second 3×3 conv only (SFNet's "variant D").

    Child names follow torchvision (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``) so checkpoints map 1:1.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _deep_stem(widths: Sequence[int]) -> nn.Sequential:
    """Three 3×3 conv-BN-ReLU (the first with stride 2) and a 3×3/2 max pool: stride 4."""
    convs = [ConvBNAct(c_in, c_out, 3, stride=2 if i == 0 else 1) for i, (c_in, c_out) in
             enumerate(zip([3, *widths[:-1]], widths, strict=True))]
    return nn.Sequential(*convs, nn.MaxPool2d(3, 2, 1))


# SFSegNets' resnet_d checkpoints: conv1 = Sequential(conv, bn, relu, conv, bn, relu, conv), then bn1 / relu.
_DEEP_R18_RULES = (
    (r"^conv1\.0\.", "stem.0.conv."), (r"^conv1\.1\.", "stem.0.bn."),
    (r"^conv1\.3\.", "stem.1.conv."), (r"^conv1\.4\.", "stem.1.bn."),
    (r"^conv1\.6\.", "stem.2.conv."), (r"^bn1\.", "stem.2.bn."),
)


def deep_stem_r18_keys(state: StateDict, module: nn.Module | None = None) -> StateDict:
    """Map an SFSegNets ``resnet18-deep-inplane128.pth`` onto :class:`DeepStemResNet18` (own keys pass unchanged)."""
    return rename_keys(state, _DEEP_R18_RULES)


class DeepStemResNet18(_StagedResNet):
    """SFNet's ResNet-18 ("resnet18-deep-inplane128"): deep stem 3→64→64→128, then four stages of 2 basic blocks.

    The authors' "variant D" sets dilation 2 (layer3) and 4 (layer4) on every block's second conv *but keeps the
    stride-2 convs*, so the output stride stays 32 (their ``# 100`` comments suggest 8; 32 is what runs). Because the
    stem ends with 128 channels, layer1's first block has a 1×1 projection 128→64.

    Example:
        >>> feats = DeepStemResNet18()(torch.zeros(1, 3, 256, 256))
        >>> [tuple(f.shape[1:]) for f in feats]
        [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8)]
    """

    registry_name = "resnet18_deep"
    out_channels = (64, 128, 256, 512)
    reductions = (4, 8, 16, 32)

    def __init__(self) -> None:
        super().__init__()
        self.stem = _deep_stem((64, 64, 128))
        self.layer1 = self._make_layer(128, 64, stride=1, dilation=1)
        self.layer2 = self._make_layer(64, 128, stride=2, dilation=1)
        self.layer3 = self._make_layer(128, 256, stride=2, dilation=2)
        self.layer4 = self._make_layer(256, 512, stride=2, dilation=4)
        init_conv_bn(self)

    @staticmethod
    def _make_layer(in_channels: int, channels: int, stride: int, dilation: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(in_channels, channels, stride, dilation), BasicBlock(channels, channels, 1, dilation)
        )


# mmseg ResNetV1c: stem = Sequential(conv, bn, relu, conv, bn, relu, conv, bn, relu). The pattern needs exactly one
# name after the index, so this module's own keys (``stem.<i>.conv.weight``) never match it.
_V1C_STEM = {"0": "0.conv", "1": "0.bn", "3": "1.conv", "4": "1.bn", "6": "2.conv", "7": "2.bn"}
_V1C_RULES = tuple((rf"^stem\.{i}\.(\w+)$", rf"stem.{target}.\1") for i, target in _V1C_STEM.items())


def mmseg_v1c_keys(state: StateDict, module: nn.Module | None = None) -> StateDict:
    """Map an mmseg ResNet-V1c checkpoint (or a whole mmseg segmentor's ``backbone.*``) onto :class:`ResNet50V1c`.

    torchvision ``resnet50`` keys pass unchanged (its stages have the same names).
    """
    return rename_keys(strip_prefix(state, "backbone."), _V1C_RULES)


class ResNet50V1c(_StagedResNet):
    """ResNet-50-V1c (mmseg): deep stem 3→32→32→64 + max pool, then torchvision's ResNet-50 ``layer1``–``layer4``.

    V1c differs from torchvision's ResNet-50 (V1.5: stride on the 3×3 conv, as in V1c) only in the stem, so the four
    stages have torchvision's exact names and shapes. ``load_weights("imagenet")`` therefore loads torchvision's
    ``ResNet50_Weights.IMAGENET1K_V1`` into layer1–layer4 and **leaves the deep stem randomly initialised** (there is
    no torchvision file for it; it warns once). An mmseg ``resnet50_v1c`` checkpoint loads fully as a PATH.

    Example:
        >>> feats = ResNet50V1c()(torch.zeros(1, 3, 64, 64))
        >>> [f.shape[1] for f in feats]
        [256, 512, 1024, 2048]
    """

    registry_name = "resnet50_v1c"
    out_channels = (256, 512, 1024, 2048)
    reductions = (4, 8, 16, 32)

    def __init__(self) -> None:
        super().__init__()
        self.stem = _deep_stem((32, 32, 64))
        resnet = torchvision.models.resnet50(weights=None)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        init_conv_bn(self.stem)
