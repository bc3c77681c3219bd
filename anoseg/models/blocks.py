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
    """Bilinear resize of a ``(N, C, H, W)`` tensor to ``size = (H', W')``.

    On CUDA, when gradients flow and ``torch.use_deterministic_algorithms`` is on (``anoseg train``), the resize is
    ``bilinear_by_matmul``: CUDA's own bilinear backward adds with atomics (``torch.use_deterministic_algorithms``
    lists it as nondeterministic), which would make GPU training, and ``--resume``, differ from run to run.
    """
    if x.is_cuda and x.requires_grad and torch.are_deterministic_algorithms_enabled():
        return bilinear_by_matmul(x, size, align_corners)
    # the sizes as given: an exporter tracing the model keeps them symbolic (int() would bake them in)
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def bilinear_by_matmul(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=...)`` (no antialiasing) as two matrix products,
    ``A_h · x · A_wᵀ``, whose backward is deterministic on every device. The same weights as PyTorch's kernel
    (``area_pixel_compute_source_index``): equal up to float summation order. ``x``: (N, C, H, W)."""
    rows = _bilinear_matrix(x.shape[-2], int(size[0]), align_corners, x)
    cols = _bilinear_matrix(x.shape[-1], int(size[1]), align_corners, x)
    out = torch.matmul(torch.matmul(rows, x), cols.t())
    return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous() else out


def _bilinear_matrix(n_in: int, n_out: int, align_corners: bool, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation from ``n_in`` to ``n_out`` samples, PyTorch's rule."""
    out = torch.arange(n_out, dtype=torch.float64)
    if align_corners:
        source = out * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        source = ((out + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    low = source.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    weight = source - low
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix[torch.arange(n_out), low] += 1.0 - weight
    matrix[torch.arange(n_out), high] += weight
    return matrix.to(device=like.device, dtype=like.dtype)


class PyramidPooling(nn.Module):
    """Pyramid pooling module (PSPNet): pool to ``bins``×``bins`` grids, project, upsample, concat with the input, fuse.

    Each bin is ``AdaptiveAvgPool2d(bin)`` → 1×1 conv ``in_channels → channels`` → BN (→ ``bin_act``). The pooled maps
    are upsampled bilinearly to the input size and concatenated with the input itself (``in_channels + len(bins) *
    channels`` channels), then fused by ``bottleneck_kernel``×``bottleneck_kernel`` conv-BN-ReLU (→ Dropout2d).
    The two heads that use it differ only in these knobs:

    * SFNet / SFNet-Lite: ``bin_act=None, bottleneck_kernel=1, dropout=0.1, align_corners=True``.
    * mmseg UPerHead: ``bin_act=nn.ReLU, bottleneck_kernel=3, dropout=0.0, align_corners=False``.

    The concatenation order is ``[pooled..., input]`` (SFNet's; mmseg puts the input first). It only permutes the
    bottleneck's input channels, so both are the same function family with the same parameter count.

    Example:
        >>> ppm = PyramidPooling(512, 128, bin_act=None, bottleneck_kernel=1, dropout=0.1, align_corners=True)
        >>> ppm.eval()(torch.zeros(1, 512, 8, 8)).shape
        torch.Size([1, 128, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        bin_act: ActFactory | None = nn.ReLU,
        bottleneck_kernel: int = 3,
        dropout: float = 0.0,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNAct(in_channels, channels, 1, act=bin_act)) for b in bins
        )
        self.bottleneck = ConvBNAct(in_channels + len(bins) * channels, channels, bottleneck_kernel)
        # Identity when dropout is 0 so the eval graph (and an exported model) carries no no-op node.
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [resize(stage(x), size, align_corners=self.align_corners) for stage in self.stages]
        return self.dropout(self.bottleneck(torch.cat([*pooled, x], dim=1)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups (ShuffleNet's shuffle): ``(N, g·c, H, W)`` → ``(N, g, c, H, W)`` → swap
    the two channel axes → flatten. Reshape-only, so it traces and exports.

    Example:
        >>> channel_shuffle(torch.arange(4.0).view(1, 4, 1, 1), 2).flatten().tolist()
        [0.0, 2.0, 1.0, 3.0]
    """
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def init_conv_bn(module: nn.Module, zero_bias: bool = True) -> None:
    """Kaiming-normal (fan-out, ReLU gain) conv weights and unit BN (γ = 1, β = 0) in every submodule of ``module``.

    The init of torchvision's ResNets and of the authors' STDC, SANet and BiSeNetV2 code. ``zero_bias=False`` keeps
    PyTorch's default conv biases (SANet's authors leave them).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if zero_bias and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
