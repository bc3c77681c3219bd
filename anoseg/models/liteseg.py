"""LiteSeg (Emara et al., DICTA 2019): a DeepLabv3+-style head with a separable-conv "DASPP" on three backbones.

Registered as ``liteseg_mobilenetv2``, ``liteseg_shufflenet`` and ``liteseg_darknet19``; the backbones live in
``anoseg.models.backbones_liteseg`` (which documents the two reference quirks we do not reproduce: the DarkNet19
paddings and the dead ShuffleNet ``dilation=2``).

Data flow: backbone → ``(high, low)``; DASPP on ``high`` → concatenate ``[high, 4 rate branches, image pool]`` →
separable 1×1 fuse to 96 → bilinear resize (align_corners=True) to the low-level map → concatenate with the
(projected) low-level map → two separable 3×3 convs → 1×1 classifier → bilinear resize to the input size.

Faithful to tahaemara/LiteSeg: the rate-1 branch and the first separable conv of the rate-3/6/9 branches have no
ReLU; the raw backbone map is part of the fused concatenation; only the DASPP rate branches get ``kaiming_normal_``
(the model's own ``__init_weight`` is name-mangled and never called in the reference, so everything else keeps
PyTorch defaults). One generalisation: the decoder resizes to the low-level map's size rather than to
``ceil(H / stride)``; the two agree whenever the reference runs, and DarkNet19 no longer needs H divisible by 4 to
line up. Training uses the main output only, so train mode also returns one tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torchvision.models import MobileNet_V2_Weights

from anoseg.errors import AnosegError
from anoseg.models.backbones_liteseg import DarkNet19Backbone, MobileNetV2Backbone, ShuffleNetV1Backbone
from anoseg.models.blocks import ActFactory, ConvBNAct, resize
from anoseg.models.registry import register_model
from anoseg.models.weights import StateDict, load_backbone_weights

DASPP_CHANNELS = 96
DASPP_RATES = (1, 3, 6, 9)


class SeparableConvBNAct(nn.Sequential):
    """Depthwise k×k conv (no bias) → pointwise 1×1 conv → BN → activation (``act=None``: none).

    The pointwise part is a ``ConvBNAct``, so the bench can fold its BN. With ``kernel_size=1`` the depthwise step
    is a per-channel scale, exactly as in the reference's ``SeparableConv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                 act: ActFactory | None = nn.ReLU) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, dilation=dilation,
                                   groups=in_channels, bias=False)
        self.pointwise = ConvBNAct(in_channels, out_channels, 1, act=act)


class DASPP(nn.Module):
    """LiteSeg's "DASPP", an ASPP of separable convs: returns ``cat([x, rate branches..., image pool])``
    (C + 5·96 channels)."""

    def __init__(self, in_channels: int, channels: int = DASPP_CHANNELS, rates: tuple[int, ...] = DASPP_RATES) -> None:
        super().__init__()
        branches = []
        for rate in rates:
            if rate == 1:
                branches.append(SeparableConvBNAct(in_channels, channels, 1, act=None))
            else:
                branches.append(nn.Sequential(
                    SeparableConvBNAct(in_channels, channels, 3, dilation=rate, act=None),
                    SeparableConvBNAct(channels, channels, 3),
                ))
        self.branches = nn.ModuleList(branches)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNAct(in_channels, channels, 1))
        self.out_channels = in_channels + channels * (len(rates) + 1)
        for module in self.branches.modules():  # the reference's ASPP._init_weight (the pooling branch is separate)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = resize(self.image_pool(x), x.shape[-2:], align_corners=True)
        return torch.cat([x, *(branch(x) for branch in self.branches), pooled], dim=1)


class LiteSeg(nn.Module):
    """LiteSeg on a backbone returning ``(high, low)`` and exposing ``high_channels`` / ``low_channels``.

    ``low_projection`` is the number of channels the low-level map is projected to (separable 1×1 → BN → ReLU),
    or None to use it raw (the MobileNet variant).

    Example:
        >>> model = LiteSeg(ShuffleNetV1Backbone(), num_classes=2, low_projection=48).eval()
        >>> model(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 2, low_projection: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.daspp = DASPP(backbone.high_channels)
        self.fuse = SeparableConvBNAct(self.daspp.out_channels, DASPP_CHANNELS, 1)
        if low_projection is None:
            self.low_projection, low_channels = nn.Identity(), backbone.low_channels
        else:
            self.low_projection = SeparableConvBNAct(backbone.low_channels, low_projection, 1)
            low_channels = low_projection
        self.classifier = nn.Sequential(
            SeparableConvBNAct(DASPP_CHANNELS + low_channels, DASPP_CHANNELS, 3),
            SeparableConvBNAct(DASPP_CHANNELS, DASPP_CHANNELS, 3),
            nn.Conv2d(DASPP_CHANNELS, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high, low = self.backbone(x)
        low = self.low_projection(low)
        high = resize(self.fuse(self.daspp(high)), low.shape[-2:], align_corners=True)
        logits = self.classifier(torch.cat((high, low), dim=1))
        return resize(logits, x.shape[-2:], align_corners=True)


def _check_options(name: str, options: dict[str, object]) -> None:
    if options:
        raise AnosegError(f"model {name} takes no option(s) {', '.join(sorted(options))}")


def _torchvision_mobilenet_keys(state: StateDict) -> StateDict:
    """Accept a torchvision ``mobilenet_v2()`` state dict, or one of its bare ``features`` module (``0.0.weight``)."""
    return {k if k.startswith(("features.", "classifier.")) else f"features.{k}": v for k, v in state.items()}


def _build(backbone: nn.Module, num_classes: int, low_projection: int | None, backbone_weights: str | None,
           name: str, imagenet: object = None, convert: Callable[[StateDict], StateDict] | None = None) -> LiteSeg:
    model = LiteSeg(backbone, num_classes=num_classes, low_projection=low_projection)
    load_backbone_weights(model.backbone, backbone_weights, imagenet=imagenet, convert=convert, name=name)
    return model


@register_model("liteseg_mobilenetv2")
def build_liteseg_mobilenetv2(num_classes: int = 2, backbone_weights: str | None = "none", **options) -> LiteSeg:
    """LiteSeg-MobileNetV2 (3.10 M used parameters). ``backbone_weights="imagenet"``: torchvision IMAGENET1K_V1.

    Example:
        >>> build_liteseg_mobilenetv2(num_classes=2).eval()(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 2, 64, 96])
    """
    _check_options("liteseg_mobilenetv2", options)
    return _build(MobileNetV2Backbone(), num_classes, None, backbone_weights, "MobileNetV2",
                  imagenet=MobileNet_V2_Weights.IMAGENET1K_V1, convert=_torchvision_mobilenet_keys)


@register_model("liteseg_shufflenet")
def build_liteseg_shufflenet(num_classes: int = 2, backbone_weights: str | None = "none", **options) -> LiteSeg:
    """LiteSeg-ShuffleNet v1 g=8 (1.97 M used parameters). No ImageNet weights: a PATH holds the backbone's own
    state dict.

    Example:
        >>> build_liteseg_shufflenet(num_classes=2).eval()(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 2, 64, 96])
    """
    _check_options("liteseg_shufflenet", options)
    return _build(ShuffleNetV1Backbone(), num_classes, 48, backbone_weights, "ShuffleNet v1 (g=8)")


@register_model("liteseg_darknet19")
def build_liteseg_darknet19(num_classes: int = 2, backbone_weights: str | None = "none", **options) -> LiteSeg:
    """LiteSeg-DarkNet19 (20.54 M used parameters, output stride 16, paddings fixed). No ImageNet weights: a PATH
    holds the backbone's own state dict.

    Example:
        >>> build_liteseg_darknet19(num_classes=2).eval()(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 2, 64, 96])
    """
    _check_options("liteseg_darknet19", options)
    return _build(DarkNet19Backbone(), num_classes, 32, backbone_weights, "DarkNet19")
