"""Backbones of SFNet / SFNet-Lite and UperNet, separate from the heads (timm-style feature extractors).

Every backbone maps an image ``(N, 3, H, W)`` to four feature maps at strides 4, 8, 16 and 32 (its
``out_channels`` / ``reductions`` say which), and knows how to initialise itself from ``--backbone-weights``
(``load_weights("imagenet" | "none" | PATH)``). ImageNet classifiers are never built.

* ``DeepStemResNet18``: SFNet's ResNet-18 with a deep stem (3→64→64→128) and "variant D" dilations.
* ``STDCNet``: STDC1 (``STDCNet813``) / STDC2 (``STDCNet1446``) of the STDC-Seg paper.
* ``ResNet50V1c``: torchvision ResNet-50 stages behind mmseg's V1c deep stem (3→32→32→64).

A PATH is read strictly (every tensor present, same shape). Besides this module's own state dicts it accepts the
authors' layouts: ``resnet18-deep-inplane128.pth`` (SFSegNets), ``STDCNet813_73.91.tar`` / ``STDCNet1446_76.47.tar``
(STDC-Seg) and mmseg ResNet-V1c checkpoints (``stem.0/1/3/4/6/7``, optionally under ``backbone.``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from anoseg.log import warn_once
from anoseg.models.blocks import ConvBNAct
from anoseg.models.weights import StateDict, load_backbone_weights

__all__ = ["BasicBlock", "DeepStemResNet18", "ResNet50V1c", "STDCBlock", "STDCNet"]


def _init_conv_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out) convs, unit BN: the init of torchvision's and the authors' backbones."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _rename(state: StateDict, rules: Sequence[tuple[str, str]]) -> StateDict:
    """Apply the first matching regex substitution of ``rules`` to every key (keys matching none are kept)."""
    out: StateDict = {}
    for key, value in state.items():
        for pattern, repl in rules:
            new, hits = re.subn(pattern, repl, key)
            if hits:
                key = new
                break
        out[key] = value
    return out


def _strip_prefix(state: StateDict, prefix: str) -> StateDict:
    """Drop ``prefix`` from keys when every key that matters carries it (whole-segmentor checkpoints)."""
    if any(k.startswith(prefix) for k in state):
        return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return state


# --------------------------------------------------------------------------------------------- ResNet-18, deep stem


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


class _FourStageResNet(nn.Module):
    """A ResNet trunk with ``stem`` and ``layer1``–``layer4``; returns the four stage outputs (strides 4–32)."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x1 = self.layer1(self.stem(x))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        return [x1, x2, x3, self.layer4(x3)]


class DeepStemResNet18(_FourStageResNet):
    """SFNet's ResNet-18 ("resnet18-deep-inplane128"): deep stem 3→64→64→128, then four stages of 2 basic blocks.

    The authors' "variant D" sets dilation 2 (layer3) and 4 (layer4) on every block's second conv *but keeps the
    stride-2 convs*, so the output stride stays 32 (their ``# 100`` comments suggest 8; 32 is what runs). Because the
    stem ends with 128 channels, layer1's first block has a 1×1 projection 128→64.

    Example:
        >>> feats = DeepStemResNet18()(torch.zeros(1, 3, 256, 256))
        >>> [tuple(f.shape[1:]) for f in feats]
        [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8)]
    """

    out_channels = (64, 128, 256, 512)
    reductions = (4, 8, 16, 32)

    def __init__(self) -> None:
        super().__init__()
        self.stem = _deep_stem((64, 64, 128))
        self.layer1 = self._make_layer(128, 64, stride=1, dilation=1)
        self.layer2 = self._make_layer(64, 128, stride=2, dilation=1)
        self.layer3 = self._make_layer(128, 256, stride=2, dilation=2)
        self.layer4 = self._make_layer(256, 512, stride=2, dilation=4)
        _init_conv_weights(self)

    @staticmethod
    def _make_layer(in_channels: int, channels: int, stride: int, dilation: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(in_channels, channels, stride, dilation), BasicBlock(channels, channels, 1, dilation)
        )

    @staticmethod
    def convert(state: StateDict) -> StateDict:
        """Map an SFSegNets ``resnet18-deep-inplane128.pth`` onto this module (own state dicts pass unchanged)."""
        return _rename(state, _DEEP_R18_RULES)

    def load_weights(self, source: str | Path | None) -> bool:
        """``"imagenet"`` (not in torchvision: warns, stays random), ``"none"`` or a state-dict PATH."""
        return load_backbone_weights(self, source, imagenet=None, convert=self.convert,
                                     name="the deep-stem ResNet-18 (resnet18-deep-inplane128)")


# --------------------------------------------------------------------------------------------------------- STDC


class STDCBlock(nn.Module):
    """STDC module ("CatBottleneck", 4 convs): u1 = 1×1 in→out/2, then 3×3 convs halving to out/4, out/8, out/8.

    The output is ``concat[u1, u2, u3, u4]`` (= ``out_channels``), with no residual. With stride 2 a depthwise 3×3/2
    conv + BN (``avd_layer``) sits between u1 and u2, and u1 is average-pooled (3×3/2) before the concat.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        half = out_channels // 2
        widths = (half, out_channels // 4, out_channels // 8, out_channels // 8)
        self.conv_list = nn.ModuleList([ConvBNAct(in_channels, half, 1)])
        self.conv_list.extend(ConvBNAct(c_in, c_out, 3) for c_in, c_out in pairwise(widths))
        self.avd_layer: nn.Module | None = None
        self.skip: nn.Module | None = None
        if stride == 2:
            self.avd_layer = ConvBNAct(half, half, 3, stride=2, groups=half, act=None)
            self.skip = nn.AvgPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv_list[0](x)
        out = first if self.avd_layer is None else self.avd_layer(first)
        outs = [first if self.skip is None else self.skip(first)]
        for conv in self.conv_list[1:]:
            out = conv(out)
            outs.append(out)
        return torch.cat(outs, dim=1)


class STDCNet(nn.Module):
    """STDC backbone, base 64: stage1 3→32 (/2), stage2 32→64 (/4), stages 3–5 of STDC blocks (256, 512, 1024).

    ``layers=(2, 2, 2)`` is STDC1 (STDCNet813), ``(4, 5, 3)`` STDC2 (STDCNet1446); the first block of each stage has
    stride 2. Returns ``[feat4, feat8, feat16, feat32]`` (64, 256, 512, 1024 channels). The ImageNet classifier
    (``conv_last``, ``fc``, ``bn``, ``linear``) is not built.

    Example:
        >>> feats = STDCNet((2, 2, 2))(torch.zeros(1, 3, 256, 256))
        >>> [tuple(f.shape[1:]) for f in feats]
        [(64, 64, 64), (256, 32, 32), (512, 16, 16), (1024, 8, 8)]
    """

    reductions = (4, 8, 16, 32)

    def __init__(self, layers: Sequence[int] = (2, 2, 2), base: int = 64) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.out_channels = (base, base * 4, base * 8, base * 16)
        self.stage1 = ConvBNAct(3, base // 2, 3, stride=2)
        self.stage2 = ConvBNAct(base // 2, base, 3, stride=2)
        in_channels = base
        for index, (count, out_channels) in enumerate(zip(self.layers, self.out_channels[1:], strict=True)):
            blocks = [STDCBlock(in_channels if j == 0 else out_channels, out_channels, 2 if j == 0 else 1)
                      for j in range(count)]
            self.add_module(f"stage{index + 3}", nn.Sequential(*blocks))
            in_channels = out_channels
        _init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feat4 = self.stage2(self.stage1(x))
        feat8 = self.stage3(feat4)
        feat16 = self.stage4(feat8)
        return [feat4, feat8, feat16, self.stage5(feat16)]

    def convert(self, state: StateDict) -> StateDict:
        """Map an STDC-Seg ImageNet checkpoint (``features.<i>...``) onto this module (own keys pass unchanged)."""
        names = ["stage1", "stage2"] + [f"stage{s + 3}.{j}" for s, n in enumerate(self.layers) for j in range(n)]
        state = _rename(state, [(rf"^features\.{i}\.", f"{name}.") for i, name in enumerate(names)])
        # The authors' avd_layer is Sequential(conv, bn); ours is a ConvBNAct. Their aliases (x2, x4, ...) and the
        # classifier keep their names, and load_into ignores them.
        return _rename(state, [(r"\.avd_layer\.0\.", ".avd_layer.conv."), (r"\.avd_layer\.1\.", ".avd_layer.bn.")])

    def load_weights(self, source: str | Path | None) -> bool:
        """``"imagenet"`` (STDC weights are not in torchvision: warns, stays random), ``"none"`` or a PATH."""
        name = {(2, 2, 2): "STDC1 (STDCNet813)", (4, 5, 3): "STDC2 (STDCNet1446)"}.get(self.layers, "STDCNet")
        return load_backbone_weights(self, source, imagenet=None, convert=self.convert, name=name)


# ---------------------------------------------------------------------------------------------- ResNet-50-V1c

# mmseg ResNetV1c: stem = Sequential(conv, bn, relu, conv, bn, relu, conv, bn, relu). The pattern needs exactly one
# name after the index, so this module's own keys (``stem.<i>.conv.weight``) never match it.
_V1C_STEM = {"0": "0.conv", "1": "0.bn", "3": "1.conv", "4": "1.bn", "6": "2.conv", "7": "2.bn"}
_V1C_RULES = tuple((rf"^stem\.{i}\.(\w+)$", rf"stem.{target}.\1") for i, target in _V1C_STEM.items())


class ResNet50V1c(_FourStageResNet):
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

    out_channels = (256, 512, 1024, 2048)
    reductions = (4, 8, 16, 32)

    def __init__(self) -> None:
        super().__init__()
        self.stem = _deep_stem((32, 32, 64))
        resnet = torchvision.models.resnet50(weights=None)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        _init_conv_weights(self.stem)

    @staticmethod
    def convert(state: StateDict) -> StateDict:
        """Map an mmseg ResNet-V1c checkpoint (or a whole mmseg segmentor's ``backbone.*``) onto this module."""
        return _rename(_strip_prefix(state, "backbone."), _V1C_RULES)

    def load_weights(self, source: str | Path | None) -> bool:
        """``"imagenet"`` → torchvision IMAGENET1K_V1 into layer1–4 (stem stays random); ``"none"``; or a PATH."""
        if source is None or str(source) != "imagenet":
            return load_backbone_weights(self, source, convert=self.convert, name="ResNet-50-V1c")
        # A view holding only the four stages: its state-dict keys are torchvision's, so the file maps 1:1.
        stages = nn.ModuleDict({f"layer{i}": getattr(self, f"layer{i}") for i in range(1, 5)})
        loaded = load_backbone_weights(stages, source, imagenet=torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
                                       name="ResNet-50 (layer1-layer4 of ResNet-50-V1c)")
        if loaded:
            warn_once("ResNet-50-V1c: torchvision's ImageNet weights cover layer1-layer4 only; "
                      "the deep stem (3→32→32→64) stays randomly initialised")
        return loaded
