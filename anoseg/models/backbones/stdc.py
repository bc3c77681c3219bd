"""STDC1 (``STDCNet813``) / STDC2 (``STDCNet1446``) of the STDC-Seg paper (MichaelFan01/STDC-Seg).

A PATH may be the authors' ImageNet files ``STDCNet813_73.91.tar`` / ``STDCNet1446_76.47.tar``; STDC weights are not
in torchvision, so ``"imagenet"`` warns once and stays random.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn as nn

from anoseg.models.backbones.base import Backbone
from anoseg.models.blocks import ConvBNAct, init_conv_bn
from anoseg.models.keys import rename_keys
from anoseg.models.weights import StateDict

__all__ = ["STDCBlock", "STDCNet", "stdc_keys"]


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


class STDCNet(Backbone):
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
        self.registry_name = {(2, 2, 2): "stdc1", (4, 5, 3): "stdc2"}.get(self.layers, "stdc1")
        self.out_channels = (base, base * 4, base * 8, base * 16)
        self.stage1 = ConvBNAct(3, base // 2, 3, stride=2)
        self.stage2 = ConvBNAct(base // 2, base, 3, stride=2)
        in_channels = base
        for index, (count, out_channels) in enumerate(zip(self.layers, self.out_channels[1:], strict=True)):
            blocks = [STDCBlock(in_channels if j == 0 else out_channels, out_channels, 2 if j == 0 else 1)
                      for j in range(count)]
            self.add_module(f"stage{index + 3}", nn.Sequential(*blocks))
            in_channels = out_channels
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feat4 = self.stage2(self.stage1(x))
        feat8 = self.stage3(feat4)
        feat16 = self.stage4(feat8)
        return [feat4, feat8, feat16, self.stage5(feat16)]


def stdc_keys(state: StateDict, module: STDCNet) -> StateDict:
    """Map an STDC-Seg ImageNet checkpoint (``features.<i>...``) onto ``module`` (own keys pass unchanged)."""
    names = ["stage1", "stage2"] + [f"stage{s + 3}.{j}" for s, n in enumerate(module.layers) for j in range(n)]
    state = rename_keys(state, [(rf"^features\.{i}\.", f"{name}.") for i, name in enumerate(names)])
    # The authors' avd_layer is Sequential(conv, bn); ours is a ConvBNAct. Their aliases (x2, x4, ...) and the
    # classifier keep their names, and the loader ignores them.
    return rename_keys(state, [(r"\.avd_layer\.0\.", ".avd_layer.conv."), (r"\.avd_layer\.1\.", ".avd_layer.bn.")])
