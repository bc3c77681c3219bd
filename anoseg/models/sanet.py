"""SANet (Spatial-Assistant Encoder-Decoder Network) S / M / L: registry names ``sanet_s``, ``sanet_m``, ``sanet_l``.

A DualResNet-style encoder (``planes = 32``) whose 1/8 feature is split in two: one half feeds a semantic path
(layers 4–6 down to 1/64, then the APPPM pyramid), the other a dilated spatial path kept at 1/8. The two paths
exchange features twice (``down4``/``down5`` and bilinear ups), and the SAD decoder mixes the spatial detail with
the context through strip-convolution attention. Reference: CuZaoo/SANet-main ``models/sanet_{S,M,L}.py``;
facts in docs/architectures/sanet.md.

Variants differ only in block counts ``(n1, n2, n3, n4)`` (``n2`` is used by layer2 *and* layer3, as in the
authors' code) and the spatial-path dilations: S (2,2,2,2), M (3,3,9,3), L (3,3,27,3); dilations
[1,2,5] + [7,13] for S and M, [1,2,5,7,13] + [1,2,5,7,13] for L.

Outputs:
    * eval: one tensor ``(N, num_classes, H, W)``. The authors' deploy model stops at 1/8 resolution; their training
      wrapper and inference code upsample bilinearly with ``align_corners=True`` (``MODEL.ALIGN_CORNERS``), which
      this module does inside ``forward`` so that it returns input-resolution logits like every anoseg model.
    * train: ``{"out": main (1/8), "aux": [aux (1/16, from the layer4 output x4)], "boundary": (1/8, 1 channel)}``.
      The authors switch with a constructor flag (``augment``); here ``self.training`` switches.

Dead modules of the reference (APPPM ``process1..4``, the ImageNet ``classifier``/``fc``, the second boundary head
``seghead_d2``) are not built, so the used-parameter counts equal the reference (S 8,263,715 / M 11,900,323 /
L 17,956,515 at 2 classes in eval; the train graph adds the aux and boundary heads).

Loss facts for ``anoseg.losses`` (authors' ``FullModel``; every output is first upsampled bilinearly with
``align_corners=True`` to the label size):
    * ``0.4 · CE(aux, y) + 1.0 · OHEM-CE(out, y)``; OHEM keeps pixels whose GT-class probability is below
      ``max(p_sorted[min_kept], 0.9)``, ``min_kept = 131072``, ignore index 255.
    * ``20 · BCE-with-logits(boundary, edge)`` with class-balanced weights: edge pixels weigh #neg/#all, the others
      #pos/#all. ``edge`` = Canny(label, 0.1, 0.2), a 6-px frame at the image border zeroed, dilated with a 4×4 kernel
      of ones, binarised.
    * ``1.0 · OHEM-CE(out, y')`` where ``y'`` keeps the label only where ``sigmoid(boundary) > 0.8`` (else ignored).

Weights: the authors pretrain the *whole* DualResNet on ImageNet; torchvision has no such weights, so
``backbone_weights="imagenet"`` warns once and stays random. A file path is loaded by name and shape match (as the
authors' ``get_seg_model`` does; ``anoseg.models.build.load_matching``), the authors' own checkpoints included
(:func:`convert_author_state_dict`); the class-dependent head convs are skipped when their shape differs.

Example:
    >>> from anoseg.models import create_model
    >>> model = create_model("sanet_s", num_classes=2).eval()
    >>> model(torch.zeros(1, 3, 256, 256)).shape
    torch.Size([1, 2, 256, 256])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from anoseg.models.base import Segmenter, SegmenterOutput
from anoseg.models.blocks import ConvBNAct, init_conv_bn, resize
from anoseg.models.keys import rename_keys
from anoseg.models.weights import StateDict

__all__ = ["SANet", "SANetConfig", "convert_author_state_dict"]


@dataclass(frozen=True)
class SANetConfig:
    """Depth and spatial-path dilations of one SANet variant."""

    name: str
    blocks: tuple[int, int, int, int]  # (layer1, layer2 = layer3, layer4, layer5)
    dilations1: tuple[int, ...]  # dp1, before the first cross-path fusion
    dilations2: tuple[int, ...]  # dp2, after it


VARIANTS = {
    "s": SANetConfig("SANet-S", (2, 2, 2, 2), (1, 2, 5), (7, 13)),
    "m": SANetConfig("SANet-M", (3, 3, 9, 3), (1, 2, 5), (7, 13)),
    "l": SANetConfig("SANet-L", (3, 3, 27, 3), (1, 2, 5, 7, 13), (1, 2, 5, 7, 13)),
}


# --------------------------------------------------------------------------------------------------------------------
# Encoder blocks


class BasicBlock(nn.Module):
    """3×3 conv-BN-ReLU → 3×3 conv-BN, plus an identity or 1×1 conv-BN shortcut, then ReLU unless ``last``.

    The last block of each stage returns the pre-activation sum: SANet applies ReLU where the tensor is consumed, and
    the spatial path adds the *pre-activation* layer3 output back (``d1 = x3 + dp1``).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, last: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, channels, 3, stride)
        self.conv2 = ConvBNAct(channels, channels, 3, act=None)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = ConvBNAct(in_channels, channels, 1, stride, act=None)
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x)) + shortcut
        return out if self.last else torch.relu(out)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 (×2 channels), each conv-BN, plus a 1×1 conv-BN shortcut; no final ReLU."""

    expansion = 2

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBNAct(in_channels, channels, 1)
        self.conv2 = ConvBNAct(channels, channels, 3, stride)
        self.conv3 = ConvBNAct(channels, out_channels, 1, act=None)
        self.downsample = ConvBNAct(in_channels, out_channels, 1, stride, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x))) + self.downsample(x)


def _stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels if i == 0 else channels, channels, stride if i == 0 else 1, last=i == blocks - 1)
              for i in range(blocks)]
    return nn.Sequential(*layers)


class DilatedSpatialPath(nn.Module):
    """Optional 1×1 projection (with bias), then a chain of dilated 3×3 conv-BN-ReLU at constant width."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, 1) if in_channels != channels else None
        self.layers = nn.Sequential(*(ConvBNAct(channels, channels, 3, dilation=d) for d in dilations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            x = self.proj(x)
        return self.layers(x)


# --------------------------------------------------------------------------------------------------------------------
# Context pyramid, decoder, heads


class PreActConv(nn.Sequential):
    """``[pool →] BN → ReLU → conv``: the pre-activation unit of APPPM (children ``pool``, ``bn``, ``act``, ``conv``).

    Pre-activation order means ``anoseg.bench`` cannot fold these BNs into a conv; the reference has them this way.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, pool: nn.Module | None = None
    ) -> None:
        super().__init__()
        if pool is not None:
            self.pool = pool
        self.bn = nn.BatchNorm2d(in_channels)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)


def _strip_branch(in_channels: int, channels: int, stride: int) -> nn.Sequential:
    """Average-pool the width by ``stride`` then the height, each pool followed by BN-ReLU-3×3 conv.

    Kernel ``2·stride + 1`` with padding ``stride`` and PyTorch's defaults (``count_include_pad=True``,
    ``ceil_mode=False``) give ``ceil(n / stride)`` outputs. All of it is fixed at construction, so nothing depends on
    tensor values and the pyramid traces and exports (ONNX ``AveragePool``) for any input size.
    """
    k, p = 2 * stride + 1, stride
    pool_w = nn.AvgPool2d((1, k), (1, stride), (0, p))
    pool_h = nn.AvgPool2d((k, 1), (stride, 1), (p, 0))
    return nn.Sequential(PreActConv(in_channels, channels, 3, pool_w), PreActConv(channels, channels, 3, pool_h))


class APPPM(nn.Module):
    """Asymmetric pooling pyramid (``TAPPM`` in the authors' code) with a one-channel gated shortcut.

    Branches: 1×1 on the input; three strip-pooled branches (÷2, ÷4, ÷8 per axis); a global-pool branch. Each is
    upsampled to the input size (no DAPPM-style branch-to-branch sums), concatenated and compressed to
    ``out_channels`` (``P``); a 1×1 shortcut gives ``S``; the output is ``S·a + P·(1−a)`` with
    ``a = sigmoid(conv1×1(ReLU(S + P)))``.
    """

    def __init__(self, in_channels: int = 512, branch_channels: int = 128, out_channels: int = 128) -> None:
        super().__init__()
        self.scale0 = PreActConv(in_channels, branch_channels)
        self.strips = nn.ModuleList(_strip_branch(in_channels, branch_channels, s) for s in (2, 4, 8))
        self.pooled = PreActConv(in_channels, branch_channels, pool=nn.AdaptiveAvgPool2d(1))
        self.compression = PreActConv(5 * branch_channels, out_channels)
        self.shortcut = PreActConv(in_channels, out_channels)
        self.gate = nn.Conv2d(out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        branches = [self.scale0(x)]
        branches += [resize(strip(x), size) for strip in self.strips]
        branches.append(resize(self.pooled(x), size))
        pyramid = self.compression(torch.cat(branches, dim=1))
        shortcut = self.shortcut(x)
        alpha = torch.sigmoid(self.gate(torch.relu(shortcut + pyramid)))
        return shortcut * alpha + pyramid * (1 - alpha)


class SADecoder(nn.Module):
    """Simple Attention Decoder: strip-conv attention from the spatial paths mixes detail and context.

    ``A = sigmoid(conv1×3(d)) + sigmoid(conv3×1(d))`` with ``d = d1 + d2``;
    ``out = conv1×1(detail·A + detail + context·(1−A) + context)``.
    """

    def __init__(self, channels: int = 128, out_channels: int = 64) -> None:
        super().__init__()
        self.conv_h = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=False)
        self.conv_w = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=False)
        self.conv_out = nn.Conv2d(channels, out_channels, 1, bias=False)

    def forward(self, d1: torch.Tensor, d2: torch.Tensor, detail: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context = resize(torch.relu(context), detail.shape[-2:])
        d = d1 + d2
        attn = torch.sigmoid(self.conv_h(d)) + torch.sigmoid(self.conv_w(d))
        return self.conv_out(detail * attn + detail + context * (1 - attn) + context)


class SegHead(nn.Module):
    """BN-ReLU-3×3 conv (→ ``mid``) - BN-ReLU-1×1 conv with bias (→ ``out``). The authors' dropout is p=0: omitted."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(torch.relu(self.bn1(x)))
        return self.conv2(torch.relu(self.bn2(x)))


# --------------------------------------------------------------------------------------------------------------------
# The network


class SANet(Segmenter):
    """SANet for ``num_classes`` classes. See the module docstring for the outputs in eval and train mode.

    Example:
        >>> model = SANet(VARIANTS["s"], num_classes=2).eval()
        >>> model(torch.zeros(1, 3, 256, 512)).shape
        torch.Size([1, 2, 256, 512])
    """

    align_corners = True  # the authors' MODEL.ALIGN_CORNERS

    def __init__(self, variant: str | SANetConfig = "s", num_classes: int = 2) -> None:
        super().__init__()
        config = VARIANTS[variant] if isinstance(variant, str) else variant
        n1, n2, n3, n4 = config.blocks
        self.config = config
        self.num_classes = num_classes
        self.stem = nn.Sequential(ConvBNAct(3, 32, 3, 2, bias=True), ConvBNAct(32, 32, 3, 2, bias=True))  # 1/4
        self.layer1 = _stage(32, 32, n1, 1)
        self.layer2 = _stage(32, 64, n2, 2)  # 1/8
        self.layer3 = _stage(64, 128, n2, 1)  # the authors reuse layers[1] here
        self.layer4 = _stage(64, 128, n3, 2)  # 1/16, on the semantic half of layer3
        self.layer5 = _stage(128, 256, n4, 2)  # 1/32
        self.layer6 = nn.Sequential(Bottleneck(256, 256, 2))  # 1/64, 512 channels
        self.dp1 = DilatedSpatialPath(64, 128, config.dilations1)  # 1/8, on the spatial half of layer3
        self.dp2 = DilatedSpatialPath(128, 128, config.dilations2)
        self.down4 = ConvBNAct(128, 128, 3, 2, act=None)
        self.down5 = nn.Sequential(ConvBNAct(128, 128, 3, 2), ConvBNAct(128, 256, 3, 2, act=None))
        self.compression = ConvBNAct(256, 128, 1, act=None)
        self.spp = APPPM(512, 128, 128)
        self.decoder = SADecoder(128, 64)
        self.head = SegHead(64, 64, num_classes)
        self.aux_head = SegHead(128, 64, num_classes)  # training only
        self.boundary_head = SegHead(128, 32, 1)  # training only
        init_conv_bn(self, zero_bias=False)  # the authors keep PyTorch's default conv biases


    def forward_logits(self, x: torch.Tensor) -> SegmenterOutput:
        x = self.layer1(self.stem(x))
        x = self.layer2(torch.relu(x))
        x3 = self.layer3(torch.relu(x))  # 128 ch at 1/8, pre-activation
        size8 = x3.shape[-2:]
        half = x3.shape[1] // 2
        spatial = self.dp1(torch.relu(x3[:, :half]))
        x4 = self.layer4(torch.relu(x3[:, half:]))
        # First exchange: spatial → semantic by a strided conv, semantic → spatial by upsampling.
        x = x4 + self.down4(spatial)
        spatial = spatial + resize(torch.relu(x4), size8)
        x = self.layer5(torch.relu(x))
        d1 = x3 + spatial  # the full pre-activation x3 comes back in
        d2 = self.dp2(d1)
        # Second exchange.
        x = x + self.down5(torch.relu(d2))
        detail = d2 + resize(self.compression(torch.relu(x)), size8)
        x = self.layer6(torch.relu(x))
        context = self.spp(torch.relu(x))
        out = self.head(self.decoder(d1, d2, detail, context))  # 1/8
        if self.training:
            return {"out": out, "aux": [self.aux_head(x4)], "boundary": self.boundary_head(detail)}
        return out


# --------------------------------------------------------------------------------------------------------------------
# Weights


def _author_rules() -> list[tuple[str, str]]:
    """Rename rules from the authors' state-dict keys (``DualResNet``) to this module's."""
    rules = [
        (r"stom\.0\.", "stem.0.conv."), (r"stom\.1\.", "stem.0.bn."),
        (r"stom\.3\.", "stem.1.conv."), (r"stom\.4\.", "stem.1.bn."),
        (r"(layer\d\.\d+)\.conv(\d)\.", r"\1.conv\2.conv."), (r"(layer\d\.\d+)\.bn(\d)\.", r"\1.conv\2.bn."),
        (r"(layer\d\.\d+)\.downsample\.0\.", r"\1.downsample.conv."),
        (r"(layer\d\.\d+)\.downsample\.1\.", r"\1.downsample.bn."),
        (r"dp1\.hconv\.", "dp1.proj."),
        (r"(dp\d)\.conv\.(\d+)\.0\.", r"\1.layers.\2.conv."), (r"(dp\d)\.conv\.(\d+)\.1\.", r"\1.layers.\2.bn."),
        (r"(down4|compression)\.0\.", r"\1.conv."), (r"(down4|compression)\.1\.", r"\1.bn."),
        (r"down5\.0\.", "down5.0.conv."), (r"down5\.1\.", "down5.0.bn."),
        (r"down5\.3\.", "down5.1.conv."), (r"down5\.4\.", "down5.1.bn."),
        (r"spp\.(scale0|compression|shortcut)\.0\.", r"spp.\1.bn."),
        (r"spp\.(scale0|compression|shortcut)\.2\.", r"spp.\1.conv."),
        (r"spp\.scale4\.1\.", "spp.pooled.bn."), (r"spp\.scale4\.3\.", "spp.pooled.conv."),
        (r"spp\.atten\.conv3\.", "spp.gate."),
        (r"decoder\.conv_H\.", "decoder.conv_h."), (r"decoder\.conv_W\.", "decoder.conv_w."),
        (r"final_layer\.", "head."), (r"seghead_extra\.", "aux_head."), (r"seghead_d\.", "boundary_head."),
    ]
    # Strip branches: scale{i} pools the width, scale{i}{i} the height; in each, index 1 is the BN and 3 the conv.
    for i in (1, 2, 3):
        for suffix, j in ((f"{i}", 0), (f"{i}{i}", 1)):
            rules.append((rf"spp\.scale{suffix}\.1\.", f"spp.strips.{i - 1}.{j}.bn."))
            rules.append((rf"spp\.scale{suffix}\.3\.", f"spp.strips.{i - 1}.{j}.conv."))
    return [(rf"^{pattern}", repl) for pattern, repl in rules]


_AUTHOR_RULES = _author_rules()


def convert_author_state_dict(state: StateDict, module: nn.Module | None = None) -> StateDict:
    """Map a CuZaoo/SANet-main checkpoint's keys onto :class:`SANet`'s names (the registry's key filter).

    The authors' files (ImageNet DualResNet or a ``FullModel`` segmentation checkpoint) are recognised by their
    ``stom.`` stem; any other state dict (e.g. one saved from this module) passes unchanged. The ``model.`` prefix of
    ``FullModel`` checkpoints is dropped; keys of their dead modules (``classifier``, ``fc``, ``spp.process*``,
    ``seghead_d2``) keep their names and are later ignored as unknown.

    Example:
        >>> list(convert_author_state_dict({"model.stom.1.weight": torch.ones(32)}))
        ['stem.0.bn.weight']
    """
    if not any(k.removeprefix("model.").startswith("stom.") for k in state):
        return state
    if all(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items()}
    return rename_keys(state, _AUTHOR_RULES)
