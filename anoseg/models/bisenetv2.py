"""BiSeNetV2 (Yu et al., IJCV 2021) as implemented in CoinCheung/BiSeNet ``lib/models/bisenetv2.py``.

Two branches see the image: a wide, shallow *detail* branch (1/8, 128 channels) keeps spatial detail, and a narrow,
deep *semantic* branch (stem → gather-and-expand layers → context embedding, 1/32, 128 channels) gathers context.
The *bilateral guided aggregation* (BGA) layer lets each branch gate the other, and a 3×3 conv head with 1024 channels
predicts at 1/8 before a bilinear ×8 upsampling. Training adds four auxiliary heads on the semantic branch's stem,
stage 3, stage 4 and stage 5 (before the context block); they cost 1.85 M parameters that inference never runs.

Fidelity to the reference (docs/architectures/bisenetv2.md): used parameters are 3,341,202 / 3,358,627 (eval graph,
2 / 19 classes) and 5,190,874 / 5,231,487 with the aux heads (train graph); the MACs at 256² are the reference's
3.085 G.

Choices where the reference code says nothing or cannot be followed:

* Output contract. The reference switches outputs with a constructor flag (``aux_mode``); here ``self.training``
  does: eval returns one tensor, train returns ``{"out": main, "aux": [aux2, aux3, aux4, aux5_4]}``, all at the input
  resolution like the reference. The aux heads are always built (they are in the state dict) and only run in training.
* Resizing uses target sizes instead of scale factors (BGA ×4 nearest, aux ×2 nearest, head ×8 / aux ×up/2
  bilinear). For inputs that are multiples of 32 this is exactly the reference; for other sizes the branches still
  line up.
* Initialisation follows the authors: Kaiming-normal (fan-out) conv weights, zero biases, BN γ=1/β=0, except that
  the BN closing the residual branch of every gather-and-expand layer starts at γ=0 (each layer starts as its
  shortcut). The authors then load their own ImageNet-pretrained ``backbone_v2.pth`` for the two branches; that file
  is not a torchvision weight, so ``backbone_weights="imagenet"`` warns once and keeps the random init.
* ``backbone_weights=PATH`` loads a state dict of the *whole* network (e.g. one saved from another ``bisenetv2``
  model) strictly by name and shape, **except the class-dependent 1×1 classifiers** of the main and aux heads, which
  keep their fresh init whatever the file holds. So weights trained with 19 classes initialise a 2-class model.
* The context block applies BN to a 1×1 pooled map: in training mode a batch needs at least 2 images (as in the
  reference).

Example:
    >>> model = BiSeNetV2(num_classes=2).eval()
    >>> model(torch.zeros(1, 3, 256, 256)).shape
    torch.Size([1, 2, 256, 256])
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from anoseg.models.base import Segmenter, SegmenterOutput
from anoseg.models.blocks import ConvBNAct, init_conv_bn

__all__ = ["BiSeNetV2"]


class DetailBranch(nn.Module):
    """Three stages of plain 3×3 conv-BN-ReLU, each opening with a stride-2 conv: 3 → 64 → 64 → 128 channels, 1/8."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(ConvBNAct(3, 64, stride=2), ConvBNAct(64, 64))
        self.stage2 = nn.Sequential(ConvBNAct(64, 64, stride=2), ConvBNAct(64, 64), ConvBNAct(64, 64))
        self.stage3 = nn.Sequential(ConvBNAct(64, 128, stride=2), ConvBNAct(128, 128), ConvBNAct(128, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(x)))


class StemBlock(nn.Module):
    """Semantic stem to 1/4 with 16 channels: a strided conv, then a conv path and a max-pool path, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBNAct(3, 16, stride=2)
        self.down = nn.Sequential(ConvBNAct(16, 8, 1), ConvBNAct(8, 16, stride=2))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.fuse = ConvBNAct(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.down(x), self.pool(x)], dim=1))


class GatherExpand(nn.Module):
    """Gather-and-expand layer: 3×3 conv, depthwise expansion ×6, 1×1 projection, residual add, ReLU.

    ``stride=1`` (GE): one depthwise 3×3 (with ReLU) and an identity shortcut; needs ``in == out`` channels.
    ``stride=2`` (GE-S2): a strided depthwise 3×3 (no ReLU) then a second depthwise 3×3 (with ReLU), and a
    depthwise-strided + 1×1 projection shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 6) -> None:
        super().__init__()
        mid = in_channels * expansion
        self.conv = ConvBNAct(in_channels, in_channels)
        if stride == 1:
            if in_channels != out_channels:
                raise ValueError("a stride-1 gather-and-expand layer keeps its channel count")
            self.expand = ConvBNAct(in_channels, mid, groups=in_channels)
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.expand = nn.Sequential(
                ConvBNAct(in_channels, mid, stride=stride, groups=in_channels, act=None),
                ConvBNAct(mid, mid, groups=mid),
            )
            self.shortcut = nn.Sequential(
                ConvBNAct(in_channels, in_channels, stride=stride, groups=in_channels, act=None),
                ConvBNAct(in_channels, out_channels, 1, act=None),
            )
        self.project = ConvBNAct(mid, out_channels, 1, act=None)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.project(self.expand(self.conv(x))) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """Context embedding (CE) block: global average pool → BN → 1×1 conv-BN-ReLU, added to the input, 3×3 CBR."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.gap_conv = ConvBNAct(channels, channels, 1)
        self.conv = ConvBNAct(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.gap_conv(self.bn(F.adaptive_avg_pool2d(x, 1)))
        return self.conv(x + context)  # the 1×1 context broadcasts over every position


class SemanticBranch(nn.Module):
    """Stem (1/4, 16) → GE stages to 1/8 (32), 1/16 (64), 1/32 (128) → context embedding.

    ``forward`` returns the features the aux heads read (stem, stage 3, stage 4, stage 5 before CE) and the CE output.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = StemBlock()
        self.stage3 = nn.Sequential(GatherExpand(16, 32, stride=2), GatherExpand(32, 32))
        self.stage4 = nn.Sequential(GatherExpand(32, 64, stride=2), GatherExpand(64, 64))
        self.stage5 = nn.Sequential(GatherExpand(64, 128, stride=2), *(GatherExpand(128, 128) for _ in range(3)))
        self.context = ContextEmbedding(128)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        s2 = self.stem(x)
        s3 = self.stage3(s2)
        s4 = self.stage4(s3)
        s5 = self.stage5(s4)
        return [s2, s3, s4, s5], self.context(s5)


def _depthwise_pointwise(channels: int) -> nn.Sequential:
    """Depthwise 3×3 + BN, then a plain 1×1 conv (no BN, no activation): the BGA's same-resolution paths."""
    return nn.Sequential(
        ConvBNAct(channels, channels, groups=channels, act=None), nn.Conv2d(channels, channels, 1, bias=False)
    )


class BilateralGuidedAggregation(nn.Module):
    """BGA layer: each branch gates the other at both resolutions, the two results are summed and fused.

    ``detail`` is 1/8, ``semantic`` is 1/32; the output is at the detail resolution.
    """

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.detail_keep = _depthwise_pointwise(channels)
        self.detail_down = nn.Sequential(
            ConvBNAct(channels, channels, stride=2, act=None),
            nn.AvgPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.semantic_up = ConvBNAct(channels, channels, act=None)
        self.semantic_keep = _depthwise_pointwise(channels)
        self.fuse = ConvBNAct(channels, channels)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        size = detail.shape[-2:]
        up = F.interpolate(self.semantic_up(semantic), size=size, mode="nearest")
        high = self.detail_keep(detail) * torch.sigmoid(up)
        low = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        return self.fuse(high + F.interpolate(low, size=size, mode="nearest"))


class SegmentHead(nn.Module):
    """3×3 conv-BN-ReLU → dropout 0.1 → [nearest ×2 → 3×3 CBR to ``up_channels``] → 1×1 classifier.

    The main head has no middle step (``up_channels=None``). An aux head at stride ``s`` uses ``up_channels = s²``,
    as in the reference. The logits stay at the head's resolution; :class:`BiSeNetV2` resizes them to the input
    (the reference's bilinear upsampling, ``align_corners=False``).
    """

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int, up_channels: int | None = None) -> None:
        super().__init__()
        self.conv = ConvBNAct(in_channels, mid_channels)
        self.drop = nn.Dropout(0.1)
        self.up_conv = ConvBNAct(mid_channels, up_channels) if up_channels else None
        self.classifier = nn.Conv2d(up_channels or mid_channels, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.conv(x))
        if self.up_conv is not None:
            x = self.up_conv(F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="nearest"))
        return self.classifier(x)


class BiSeNetV2(Segmenter):
    """BiSeNetV2: detail and semantic branches, BGA fusion, a 1024-channel head, and four training-only aux heads.

    Eval: ``forward(x)`` returns logits ``(N, num_classes, H, W)``. Train: ``{"out": logits, "aux": [4 logits]}``,
    all at ``(H, W)``. ``H`` and ``W`` should be multiples of 32.

    Example:
        >>> model = BiSeNetV2(num_classes=2).train()
        >>> out = model(torch.zeros(2, 3, 64, 64))
        >>> out["out"].shape, len(out["aux"])
        (torch.Size([2, 2, 64, 64]), 4)
    """

    #: (channels, stride) of the semantic features read by the aux heads: stem, stage 3, stage 4, stage 5.
    AUX_FEATURES = ((16, 4), (32, 8), (64, 16), (128, 32))

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.detail = DetailBranch()
        self.semantic = SemanticBranch()
        self.bga = BilateralGuidedAggregation(128)
        self.head = SegmentHead(128, 1024, num_classes)
        self.aux_heads = nn.ModuleList(
            SegmentHead(channels, 128, num_classes, up_channels=stride * stride)
            for channels, stride in self.AUX_FEATURES
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: Kaiming-normal (fan-out) convs, zero biases, BN γ=1 except γ=0 closing each GE branch."""
        init_conv_bn(self)
        for module in self.modules():
            if isinstance(module, GatherExpand):
                nn.init.zeros_(module.project.bn.weight)

    def forward_logits(self, x: torch.Tensor) -> SegmenterOutput:
        aux_features, semantic = self.semantic(x)
        out = self.head(self.bga(self.detail(x), semantic))  # 1/8; Segmenter resizes it in eval mode
        if not self.training:
            return out
        size = x.shape[-2:]
        aux = [self.to_input(head(feature), size) for head, feature in zip(self.aux_heads, aux_features, strict=True)]
        return {"out": self.to_input(out, size), "aux": aux}
