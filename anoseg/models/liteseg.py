"""LiteSeg (Emara et al., DICTA 2019): a DeepLabv3+-style head with a separable-conv "DASPP" on three backbones.

Registered as ``liteseg_mobilenetv2``, ``liteseg_shufflenet`` and ``liteseg_darknet19``; the backbones live in
``anoseg.models.backbones`` (``mobilenet``, ``shufflenet``, ``darknet``; the last two document the reference quirks
we do not reproduce: the DarkNet19 paddings and the dead ShuffleNet ``dilation=2``).

Data flow: backbone → ``[low, high]``; DASPP on ``high`` → concatenate ``[high, 4 rate branches, image pool]`` →
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

import torch
import torch.nn as nn

from anoseg.models.backbones import Backbone
from anoseg.models.base import Segmenter
from anoseg.models.blocks import ActFactory, ConvBNAct, resize

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


class LiteSeg(Segmenter):
    """LiteSeg on a backbone whose first feature map is the low-level one and whose last is the deep one.

    ``low_projection`` is the number of channels the low-level map is projected to (separable 1×1 → BN → ReLU),
    or None to use it raw (the MobileNet variant).

    Example:
        >>> from anoseg.models.backbones.shufflenet import ShuffleNetV1Backbone
        >>> model = LiteSeg(ShuffleNetV1Backbone(), num_classes=2, low_projection=48).eval()
        >>> model(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
    """

    align_corners = True

    def __init__(self, backbone: Backbone, num_classes: int = 2, low_projection: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        high_channels, low_channels = backbone.out_channels[-1], backbone.out_channels[0]
        self.daspp = DASPP(high_channels)
        self.fuse = SeparableConvBNAct(self.daspp.out_channels, DASPP_CHANNELS, 1)
        if low_projection is None:
            self.low_projection = nn.Identity()
        else:
            self.low_projection = SeparableConvBNAct(low_channels, low_projection, 1)
            low_channels = low_projection
        self.classifier = nn.Sequential(
            SeparableConvBNAct(DASPP_CHANNELS + low_channels, DASPP_CHANNELS, 3),
            SeparableConvBNAct(DASPP_CHANNELS, DASPP_CHANNELS, 3),
            nn.Conv2d(DASPP_CHANNELS, num_classes, 1),
        )

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        low, high = self.low_projection(features[0]), features[-1]
        high = resize(self.fuse(self.daspp(high)), low.shape[-2:], align_corners=True)
        return self.classifier(torch.cat((high, low), dim=1))
