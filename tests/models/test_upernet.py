"""UperNet-R50 (ResNet-50-V1c + mmseg UPerHead): structure, per-part counts, weights. Kept light: 64² inputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.models.backbones.resnet import ResNet50V1c
from anoseg.models.upernet import UPerHead


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("upernet_r50", num_classes=2)


def test_backbone_is_v1c_deep_stem_plus_torchvision_stages(model):
    backbone = model.backbone
    assert [m.conv.out_channels for m in backbone.stem[:3]] == [32, 32, 64]
    assert backbone.stem[0].conv.stride == (2, 2) and isinstance(backbone.stem[3], torch.nn.MaxPool2d)
    stages = sum(_params(getattr(backbone, f"layer{i}")) for i in range(1, 5))
    # torchvision ResNet-50 minus its 7×7 stem conv, stem BN and fc.
    assert stages == 25_557_032 - 9_408 - 128 - 2_049_000
    with torch.no_grad():
        feats = backbone.eval()(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 16, 24), (512, 8, 12), (1024, 4, 6), (2048, 2, 3)]


def test_head_is_mmseg_uperhead_decode_only(model):
    head = model.head
    assert all(hasattr(stage[1], "act") for stage in head.ppm.stages)  # conv-BN-ReLU per bin
    assert [stage[0].output_size for stage in head.ppm.stages] == [1, 2, 3, 6]
    assert head.ppm.bottleneck.conv.kernel_size == (3, 3) and head.ppm.bottleneck.conv.in_channels == 2048 + 4 * 512
    assert len(head.laterals) == 3 and len(head.fpn_convs) == 3
    assert head.fpn_bottleneck.conv.kernel_size == (3, 3) and head.fpn_bottleneck.conv.in_channels == 4 * 512
    assert head.classifier.kernel_size == (1, 1)
    # 64,041,826 registered parameters at 2 classes (no auxiliary FCN head, which would add 2,360,322).
    assert _params(model) == 64_041_826


def test_eval_and_train_return_one_tensor_at_input_size(model):
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 2, 64, 64)
    model.train()
    out = model(x)
    model.eval()
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 64, 64)


def test_uperhead_fuses_all_levels_at_the_finest_resolution():
    torch.manual_seed(0)
    head = UPerHead((8, 16, 32, 64), num_classes=3, channels=16).eval()
    feats = [torch.randn(1, c, 32 // 2**i, 48 // 2**i) for i, c in enumerate((8, 16, 32, 64))]
    with torch.no_grad():
        out = head(feats)
        assert out.shape == (1, 3, 32, 48)
        # The coarsest (PPM) level reaches the output: changing C5 changes the logits.
        changed = head([*feats[:3], feats[3] + 1.0])
    assert not torch.allclose(out, changed)


def test_imagenet_loads_torchvision_stages_and_keeps_the_stem_random(monkeypatch, capsys):
    torch.manual_seed(1)
    reference = torchvision.models.resnet50(weights=None).state_dict()
    requested = []

    def fake_hub(weights):
        requested.append(weights)
        return reference

    monkeypatch.setattr("anoseg.models.weights.torchvision_state_dict", fake_hub)
    monkeypatch.setattr("anoseg.log._said", set())
    backbone = ResNet50V1c()
    stem_before = {k: v.clone() for k, v in backbone.stem.state_dict().items()}
    assert backbone.load_weights("imagenet")
    assert requested == [torchvision.models.ResNet50_Weights.IMAGENET1K_V1]
    assert torch.equal(backbone.layer3[5].conv2.weight, reference["layer3.5.conv2.weight"])
    assert torch.equal(backbone.layer1[0].downsample[1].running_mean, reference["layer1.0.downsample.1.running_mean"])
    for key, value in backbone.stem.state_dict().items():
        assert torch.equal(value, stem_before[key]), key
    assert "stays randomly initialised" in capsys.readouterr().err


def test_weights_file_round_trip_and_mmseg_layout(tmp_path):
    source = ResNet50V1c()
    own = source.state_dict()
    torch.save(own, tmp_path / "own.pt")
    target = ResNet50V1c()
    assert target.load_weights(tmp_path / "own.pt")
    assert torch.equal(target.stem[1].conv.weight, own["stem.1.conv.weight"])
    # mmseg: backbone.stem.{0,1,3,4,6,7}.* inside a whole-segmentor checkpoint.
    mmseg_index = {"0.conv": "0", "0.bn": "1", "1.conv": "3", "1.bn": "4", "2.conv": "6", "2.bn": "7"}
    mmseg = {}
    for key, value in own.items():
        if key.startswith("stem."):
            _, i, kind, leaf = key.split(".")
            key = f"stem.{mmseg_index[f'{i}.{kind}']}.{leaf}"
        mmseg[f"backbone.{key}"] = value
    mmseg["decode_head.conv_seg.weight"] = torch.zeros(2, 512, 1, 1)
    torch.save({"state_dict": mmseg}, tmp_path / "upernet_mmseg.pth")
    target = ResNet50V1c()
    assert target.load_weights(tmp_path / "upernet_mmseg.pth")
    assert torch.equal(target.stem[2].bn.running_mean, own["stem.2.bn.running_mean"])
    assert torch.equal(target.stem[0].conv.weight, own["stem.0.conv.weight"])


def test_wrong_shape_weights_file_is_a_user_error(tmp_path):
    state = ResNet50V1c().state_dict()
    state["stem.0.conv.weight"] = torch.zeros(64, 3, 3, 3)  # a V1b/V1d-style 64-wide stem
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(AnosegError, match="wrong shapes"):
        create_model("upernet_r50", backbone_weights=str(tmp_path / "bad.pt"))
