"""LiteSeg-specific tests: backbone taps, the DarkNet19 padding fix, DASPP init, weight loading, export."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

import anoseg.models.weights as weights_module
from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.models.backbones.darknet import DarkNet19Backbone
from anoseg.models.backbones.mobilenet import MobileNetV2Backbone
from anoseg.models.backbones.shufflenet import ShuffleNetV1Backbone
from anoseg.models.blocks import channel_shuffle
from anoseg.models.profile import count_macs

NAMES = ["liteseg_mobilenetv2", "liteseg_shufflenet", "liteseg_darknet19"]
BACKBONES = {
    "mobilenetv2": (MobileNetV2Backbone, 1280, 32, 24, 4),
    "shufflenet": (ShuffleNetV1Backbone, 1536, 32, 384, 8),  # stride 32: the reference's dilation=2 never applies
    "darknet19": (DarkNet19Backbone, 1024, 16, 128, 4),
}


@pytest.mark.parametrize("key", list(BACKBONES))
def test_backbone_taps_have_documented_channels_and_strides(key):
    cls, high_c, high_s, low_c, low_s = BACKBONES[key]
    backbone = cls().eval()
    assert (backbone.out_channels, backbone.reductions) == ((low_c, high_c), (low_s, high_s))
    with torch.inference_mode():
        low, high = backbone(torch.zeros(2, 3, 64, 96))
    assert high.shape == (2, high_c, 64 // high_s, 96 // high_s)
    assert low.shape == (2, low_c, 64 // low_s, 96 // low_s)


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(24.0).reshape(1, 24, 1, 1)
    out = channel_shuffle(x, 8).flatten().tolist()
    # 8 groups of 3: output takes channel j of every group in turn
    assert out == [float(g * 3 + j) for j in range(3) for g in range(8)]


def _high_conv_sizes(backbone: DarkNet19Backbone, size: int = 256) -> list[int]:
    sizes: list[int] = []
    convs = [m for m in backbone.high_layers.modules() if isinstance(m, nn.Conv2d)]
    handles = [c.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for c in convs]
    with torch.inference_mode():
        backbone.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return sizes


def test_darknet_fixed_paddings_keep_stride_16_everywhere():
    sizes = _high_conv_sizes(DarkNet19Backbone())
    assert sizes == [32] * 3 + [16] * 10


def test_darknet_reference_paddings_reproduce_wandering_maps_and_reference_macs():
    """Put the reference's paddings back: the maps wander as the spec measured, and the MACs become the reference's
    7.831 G (within 1%), which shows the padding fix is the only difference from the authors' graph."""
    model = create_model("liteseg_darknet19")
    convs = [m for m in model.backbone.high_layers.modules() if isinstance(m, nn.Conv2d)]
    fixed_macs = count_macs(model, torch.zeros(1, 3, 256, 256))
    # conv9..conv18 of tahaemara/LiteSeg's darknet.py: padding 1 everywhere except the 1×1 before the last conv
    for conv, pad in zip(convs[3:], [1, 1, 1, 1, 1, 1, 1, 1, 0, 1], strict=True):
        conv.padding = (pad, pad)
    sizes = _high_conv_sizes(model.backbone)
    assert sizes[3:] == [16, 18, 18, 20, 20, 18, 20, 18, 18, 16]
    reference_macs = count_macs(model, torch.zeros(1, 3, 256, 256))
    assert abs(reference_macs - 7.831e9) / 7.831e9 < 0.01
    assert fixed_macs < 0.9 * reference_macs


@pytest.mark.parametrize("name", NAMES)
def test_daspp_rate_branches_use_kaiming_normal_and_pool_branch_keeps_default(name):
    torch.manual_seed(0)
    model = create_model(name)
    in_channels = model.backbone.out_channels[-1]
    pointwise = model.daspp.branches[0].pointwise.conv.weight  # 1×1 conv C→96, fan_in = C
    assert pointwise.std().item() == pytest.approx((2 / in_channels) ** 0.5, rel=0.05)
    pool_conv = model.daspp.image_pool[1].conv.weight  # PyTorch default: kaiming_uniform(a=√5), std = 1/√(3·fan_in)
    assert pool_conv.std().item() == pytest.approx((1 / (3 * in_channels)) ** 0.5, rel=0.05)


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_returns_main_logits_at_input_resolution(name):
    model = create_model(name, num_classes=3).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 64, 96)


def test_darknet_variant_accepts_sizes_the_reference_rejects():
    # The reference fails unless H, W are divisible by 4; we resize to the low-level map instead of ceil(H / 4).
    model = create_model("liteseg_darknet19").eval()
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 90, 122)).shape == (1, 2, 90, 122)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")  # deprecated in torch 2.14, still what export tests use
@pytest.mark.parametrize("name", NAMES)
def test_eval_forward_traces(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        assert torch.allclose(traced(x), model(x), atol=1e-5)


def test_unknown_option_is_a_user_error():
    with pytest.raises(AnosegError, match="dilation"):
        create_model("liteseg_shufflenet", dilation=2)


def test_mobilenet_imagenet_maps_torchvision_keys(monkeypatch):
    reference = mobilenet_v2(weights=None)
    requested = []

    def fake_download(weights):
        requested.append(weights)
        return reference.state_dict()

    monkeypatch.setattr(weights_module, "torchvision_state_dict", fake_download)
    model = create_model("liteseg_mobilenetv2", backbone_weights="imagenet")
    assert requested == [MobileNet_V2_Weights.IMAGENET1K_V1]
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key


@pytest.mark.parametrize("features_only", [False, True])
def test_mobilenet_path_accepts_torchvision_style_state_dicts(tmp_path, features_only):
    source = mobilenet_v2(weights=None)
    state = (source.features if features_only else source).state_dict()
    torch.save(state, tmp_path / "mnv2.pth")
    model = create_model("liteseg_mobilenetv2", backbone_weights=str(tmp_path / "mnv2.pth"))
    stem = model.backbone.features[0][0].weight
    assert torch.equal(stem, source.features[0][0].weight)


def test_backbones_without_imagenet_weights_warn_and_stay_random(monkeypatch):
    messages: list[str] = []
    monkeypatch.setattr(weights_module, "warn_once", messages.append)
    torch.manual_seed(0)
    model = create_model("liteseg_shufflenet", backbone_weights="imagenet")
    torch.manual_seed(0)
    plain = create_model("liteseg_shufflenet")
    assert len(messages) == 1 and "ShuffleNet" in messages[0]
    assert torch.equal(model.backbone.conv1.weight, plain.backbone.conv1.weight)


@pytest.mark.parametrize("name", ["liteseg_shufflenet", "liteseg_darknet19"])
def test_backbone_state_dict_round_trip_and_shape_mismatch(tmp_path, name):
    torch.manual_seed(1)
    source = create_model(name).backbone
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    model = create_model(name, backbone_weights=str(path))
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key

    broken = source.state_dict()
    key = next(k for k in broken if k.endswith("weight"))
    broken[key] = torch.zeros(1)
    torch.save(broken, path)
    with pytest.raises(AnosegError, match="wrong shapes"):
        create_model(name, backbone_weights=str(path))
