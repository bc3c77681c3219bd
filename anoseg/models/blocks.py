"""Building blocks shared by several architectures. Each is defined here once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

ActFactory = Callable[[], nn.Module]


class ConvBNAct(nn.Sequential):
    """Conv2d → BatchNorm2d → activation, as one ``nn.Sequential`` (children ``conv``, ``bn``, ``act``).

    Being a ``Sequential`` of a conv followed by its BN lets ``anoseg.bench`` fold the BN into the conv.
    ``padding=None`` means "same" padding for odd kernels: ``dilation * (k - 1) // 2`` per axis.
    ``act=None`` leaves the activation out (conv-BN only).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        act: ActFactory | None = nn.ReLU,
        bn_eps: float = 1e-5,
    ) -> None:
        ks = _pair(kernel_size)
        dil = _pair(dilation)
        if padding is None:
            padding = tuple(d * (k - 1) // 2 for k, d in zip(ks, dil, strict=True))
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, ks, stride, padding, dil, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        if act is not None:
            self.act = act()


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def resize(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of a ``(N, C, H, W)`` tensor to ``size = (H', W')``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)
