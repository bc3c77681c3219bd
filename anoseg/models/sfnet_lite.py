"""SFNet (ECCV'20) and SFNet-Lite (IJCV'23): semantic-flow alignment of coarse context onto fine features.

Reference: Li et al., "Semantic Flow for Fast and Accurate Scene Parsing" / "SFNet: Faster and Accurate Semantic
Segmentation via Semantic Flow" (lxtGH/SFSegNets, ``network/sfnet_resnet.py``, ``network/sfnet_stdcnet.py``).

* ``sfnet_lite_r18`` / ``sfnet_lite_stdc1`` / ``sfnet_lite_stdc2``: ``UperNetAlignHeadV2`` — PPM on the 1/32 map
  (P5), laterals on the 1/4 (P2) and 1/16 (P4) maps, one gated dual flow alignment (GD-FAM) of P5 onto P2, concat with
  the upsampled P4, 3×3 conv, 1×1 classifier, ×4 bilinear upsampling.
* ``sfnet_r18`` (optional in the spec): ``UperNetAlignHead`` — a full FPN with one FAM per level.

Differences from the authors' code, all without effect on the eval graph or the parameter count:

* Dead modules are not built: the Lite head's ``dsn`` (its forward never calls it), R18-Lite's ``fpn_in[2]``
  (built for the 512-ch map, never used) and the STDC ImageNet classifier.
* Training returns the main logits only, upsampled to the input like in eval: the authors' Lite training forward
  hands ``(logits_at_1/4, [])`` to a criterion that upsamples them (align_corners=True) — the same tensor.
* The deep-stem ResNet-18 and STDC ImageNet files are not in torchvision: ``backbone_weights="imagenet"`` warns once
  and stays random (a PATH to the authors' files loads, see ``anoseg.models.backbones.resnet`` / ``.stdc``).
* Train-mode BatchNorm after the 1×1 pooling bin needs more than one image per batch (as in the authors' code).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from anoseg.models.backbones import Backbone
from anoseg.models.base import Segmenter
from anoseg.models.blocks import ConvBNAct, PyramidPooling, resize

__all__ = ["FlowAlign", "GatedDualFlowAlign", "SFNet", "SFNetHead", "SFNetLite", "SFNetLiteHead", "flow_warp"]


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` (any size) on the grid of ``flow`` (``N×2×h×w``, channel 0 = x offset, 1 = y offset).

    The base grid spans ``[-1, 1]`` over h×w with ``align_corners=True``, and the offsets are divided by ``[w, h]``
    (the authors' normalisation: one flow unit ≈ half a pixel of the h×w grid). A coarse ``x`` is thus upsampled
    and aligned in one bilinear ``grid_sample`` (exports to ONNX ``GridSample``, opset ≥ 16).

    Example:
        >>> flow_warp(torch.ones(1, 8, 4, 4), torch.zeros(1, 2, 16, 16)).shape
        torch.Size([1, 8, 16, 16])
    """
    h, w = flow.shape[-2:]
    ys = torch.linspace(-1.0, 1.0, h, dtype=flow.dtype, device=flow.device)
    xs = torch.linspace(-1.0, 1.0, w, dtype=flow.dtype, device=flow.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    # Divide by Python ints (not a torch.tensor of the sizes) so tracing records no constant-tensor warning.
    offset = torch.stack((flow[:, 0] / w, flow[:, 1] / h), dim=-1)
    grid = torch.stack((grid_x, grid_y), dim=-1).unsqueeze(0) + offset
    # A no-op in eager mode; the TorchScript ONNX exporter computes linspace and the division in double, and
    # onnxruntime has no GridSample kernel for a double grid.
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


class FlowAlign(nn.Module):
    """FAM (SFNet v1, ``AlignedModule``): warp the coarse map ``high`` onto the grid of the fine map ``low``.

    Both inputs have ``channels`` channels. They are projected to ``channels // 2`` by bias-free 1×1 convs, the
    projected ``high`` is upsampled to the fine size, and a 3×3 conv on their concat predicts a 2-channel flow with
    which the *unprojected* ``high`` is sampled. The caller adds the lateral feature.
    """

    def __init__(self, channels: int, mid_channels: int | None = None) -> None:
        super().__init__()
        mid = mid_channels or channels // 2
        self.down_h = nn.Conv2d(channels, mid, 1, bias=False)
        self.down_l = nn.Conv2d(channels, mid, 1, bias=False)
        self.flow_make = nn.Conv2d(2 * mid, 2, 3, padding=1, bias=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        hh = resize(self.down_h(high), low.shape[-2:], align_corners=True)
        flow = self.flow_make(torch.cat([hh, self.down_l(low)], dim=1))
        return flow_warp(high, flow)


class GatedDualFlowAlign(nn.Module):
    """GD-FAM (SFNet-Lite, ``AlignedModulev2PoolingAtten``): two flows and a spatial gate fuse ``high`` into ``low``.

    A 3×3 conv on ``concat[up(proj(high)), proj(low)]`` predicts 4 channels: a flow for the coarse map (0–1) and one
    for the fine map (2–3); each map is warped onto the fine grid. The gate is ``sigmoid(conv3×3([mean_c(hh),
    mean_c(low), max_c(hh), max_c(low)]))`` — note the authors take the high statistics from the projected, upsampled
    ``hh`` (``channels // 2``) but the low ones from the raw ``low``. Output ``= warp(high)·g + warp(low)·(1 − g)``.

    Example:
        >>> gd = GatedDualFlowAlign(128)
        >>> gd(torch.zeros(1, 128, 64, 64), torch.zeros(1, 128, 8, 8)).shape
        torch.Size([1, 128, 64, 64])
    """

    def __init__(self, channels: int, mid_channels: int | None = None) -> None:
        super().__init__()
        mid = mid_channels or channels // 2
        self.down_h = nn.Conv2d(channels, mid, 1, bias=False)
        self.down_l = nn.Conv2d(channels, mid, 1, bias=False)
        self.flow_make = nn.Conv2d(2 * mid, 4, 3, padding=1, bias=False)
        self.flow_gate = nn.Conv2d(4, 1, 3, padding=1, bias=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        hh = resize(self.down_h(high), low.shape[-2:], align_corners=True)
        flow = self.flow_make(torch.cat([hh, self.down_l(low)], dim=1))
        high_warped = flow_warp(high, flow[:, :2])
        low_warped = flow_warp(low, flow[:, 2:])
        stats = [hh.mean(dim=1, keepdim=True), low.mean(dim=1, keepdim=True),
                 hh.amax(dim=1, keepdim=True), low.amax(dim=1, keepdim=True)]
        gate = torch.sigmoid(self.flow_gate(torch.cat(stats, dim=1)))
        return high_warped * gate + low_warped * (1 - gate)


def _sfnet_ppm(in_channels: int, channels: int) -> PyramidPooling:
    """SFNet's PPM: bins 1/2/3/6, per-bin 1×1 conv + BN (no ReLU), 1×1 bottleneck-BN-ReLU, Dropout2d 0.1."""
    return PyramidPooling(in_channels, channels, (1, 2, 3, 6), bin_act=None, bottleneck_kernel=1, dropout=0.1,
                          align_corners=True)


class SFNetLiteHead(nn.Module):
    """``UperNetAlignHeadV2``: P5 = PPM(1/32), P2/P4 = 1×1 conv (bias)-BN-ReLU laterals on the 1/4 and 1/16 maps.

    ``GD-FAM(P2, P5)`` and the upsampled P4 are concatenated → 3×3 conv-BN-ReLU → 1×1 classifier (logits at 1/4).
    ``in_channels`` = (channels at 1/4, at 1/16, at 1/32); the 1/8 map is not used.
    """

    def __init__(self, in_channels: tuple[int, int, int], num_classes: int, channels: int = 128) -> None:
        super().__init__()
        c4, c16, c32 = in_channels
        self.ppm = _sfnet_ppm(c32, channels)
        self.lateral4 = ConvBNAct(c4, channels, 1, bias=True)
        self.lateral16 = ConvBNAct(c16, channels, 1, bias=True)
        self.align = GatedDualFlowAlign(channels)
        self.fuse = ConvBNAct(2 * channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feat4: torch.Tensor, feat16: torch.Tensor, feat32: torch.Tensor) -> torch.Tensor:
        p2 = self.lateral4(feat4)
        fused = self.align(p2, self.ppm(feat32))
        p4 = resize(self.lateral16(feat16), fused.shape[-2:], align_corners=True)
        return self.classifier(self.fuse(torch.cat([fused, p4], dim=1)))


class SFNetLite(Segmenter):
    """SFNet-Lite: a stride-{4,8,16,32} backbone and :class:`SFNetLiteHead`; logits upsampled ×4 to the input.

    Returns one tensor ``(N, num_classes, H, W)`` in both modes (it trains without deep supervision).

    Example:
        >>> from anoseg.models.backbones.stdc import STDCNet
        >>> model = SFNetLite(STDCNet((2, 2, 2)), num_classes=2).eval()
        >>> model(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
    """

    align_corners = True

    def __init__(self, backbone: Backbone, num_classes: int, channels: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        c4, _, c16, c32 = backbone.out_channels
        self.head = SFNetLiteHead((c4, c16, c32), num_classes, channels)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        feat4, _, feat16, feat32 = self.backbone(x)
        return self.head(feat4, feat16, feat32)


class SFNetHead(nn.Module):
    """``UperNetAlignHead`` (SFNet v1): P5 = PPM; top-down, each level ``f = lateral + FAM(lateral, f)``.

    ``P_i = conv3×3(f)``; the pre-conv sum ``f`` goes on to the next finer level. [P2, up(P3), up(P4), up(P5)] →
    3×3 conv-BN-ReLU → 1×1 classifier (logits at 1/4).
    """

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, channels: int = 128) -> None:
        super().__init__()
        self.ppm = _sfnet_ppm(in_channels[-1], channels)
        self.laterals = nn.ModuleList(ConvBNAct(c, channels, 1, bias=True) for c in in_channels[:-1])
        self.aligns = nn.ModuleList(FlowAlign(channels) for _ in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNAct(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = ConvBNAct(len(in_channels) * channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        f = self.ppm(features[-1])
        pyramid = [f]
        for i in reversed(range(len(features) - 1)):
            lateral = self.laterals[i](features[i])
            f = lateral + self.aligns[i](lateral, f)
            pyramid.insert(0, self.fpn_convs[i](f))
        size = pyramid[0].shape[-2:]
        fused = torch.cat([pyramid[0]] + [resize(p, size, align_corners=True) for p in pyramid[1:]], dim=1)
        return self.classifier(self.fuse(fused))


class SFNet(Segmenter):
    """SFNet v1: a stride-{4,8,16,32} backbone and :class:`SFNetHead`; logits upsampled ×4 to the input."""

    align_corners = True

    def __init__(self, backbone: Backbone, num_classes: int, channels: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = SFNetHead(tuple(backbone.out_channels), num_classes, channels)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
