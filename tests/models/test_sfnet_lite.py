"""SFNet-Lite (R18 / STDC1 / STDC2) and SFNet v1: flow warp, GD-FAM, backbones, per-part counts, weights, export."""

from __future__ import annotations

import warnings

import pytest
import torch

from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.models.backbones.resnet import DeepStemResNet18
from anoseg.models.backbones.stdc import STDCNet
from anoseg.models.blocks import PyramidPooling, resize
from anoseg.models.profile import count_used_parameters
from anoseg.models.sfnet_lite import FlowAlign, GatedDualFlowAlign, flow_warp


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------------ flow warp


def test_zero_flow_warp_is_align_corners_bilinear_upsampling():
    torch.manual_seed(0)
    coarse = torch.randn(2, 5, 4, 6)
    out = flow_warp(coarse, torch.zeros(2, 2, 16, 24))
    torch.testing.assert_close(out, resize(coarse, (16, 24), align_corners=True), atol=1e-5, rtol=1e-5)


def test_flow_units_shift_by_half_a_pixel_per_unit():
    # One pixel of a w-wide grid is 2/(w-1) in normalised coordinates; offsets are flow / w, so a shift of one
    # pixel to the right needs a flow of 2w/(w-1) in channel 0 (x); channel 1 moves along y.
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 10)
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 0] = 2 * 10 / 9
    torch.testing.assert_close(flow_warp(x, flow)[..., :-1], x[..., 1:], atol=1e-5, rtol=1e-5)
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 1] = -2 * 8 / 7
    torch.testing.assert_close(flow_warp(x, flow)[..., 1:, :], x[..., :-1, :], atol=1e-5, rtol=1e-5)


def test_gd_fam_with_zero_flow_and_gate_averages_upsampled_high_and_low():
    torch.manual_seed(0)
    gd = GatedDualFlowAlign(16).eval()
    with torch.no_grad():
        gd.flow_make.weight.zero_()
        gd.flow_gate.weight.zero_()  # gate = sigmoid(0) = 0.5
    low, high = torch.randn(2, 16, 32, 32), torch.randn(2, 16, 4, 4)
    expected = 0.5 * resize(high, (32, 32), align_corners=True) + 0.5 * low
    torch.testing.assert_close(gd(low, high), expected, atol=1e-5, rtol=1e-5)


def test_gd_fam_gate_reads_projected_high_and_raw_low_statistics():
    gd = GatedDualFlowAlign(128)
    assert gd.flow_make.out_channels == 4 and gd.flow_gate.in_channels == 4
    assert _params(gd) == 21_028  # spec §6.1: GD-FAM 21,028
    assert _params(FlowAlign(128)) * 3 == 56_064  # spec §5.1: 3 FAMs 56,064


# ------------------------------------------------------------------------------------------------------ backbones


def test_deep_stem_r18_keeps_output_stride_32_with_dilated_second_convs():
    backbone = DeepStemResNet18().eval()
    feats = backbone(torch.zeros(1, 3, 96, 160))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 24, 40), (128, 12, 20), (256, 6, 10), (512, 3, 5)]
    for block in backbone.layer3:
        assert block.conv2.dilation == (2, 2) and block.conv1.dilation == (1, 1)
    for block in backbone.layer4:
        assert block.conv2.dilation == (4, 4)
    assert backbone.layer1[0].downsample is not None  # 128-ch stem → 64-ch layer1 needs a projection
    assert _params(backbone) == 11_324_992
    assert _params(backbone.stem) == 112_832  # spec §5.1 per-stage counts
    assert [_params(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == [193_152, 525_568, 2_099_712, 8_393_728]


@pytest.mark.parametrize(("layers", "params"), [((2, 2, 2), 5_318_304), ((4, 5, 3), 9_348_768)])
def test_stdc_feature_shapes_and_used_parameters(layers, params):
    backbone = STDCNet(layers).eval()
    feats = backbone(torch.zeros(1, 3, 64, 128))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 32), (256, 8, 16), (512, 4, 8), (1024, 2, 4)]
    assert [len(getattr(backbone, f"stage{i}")) for i in (3, 4, 5)] == list(layers)
    assert _params(backbone) == params  # registered == used: the ImageNet classifier is not built


def test_stdc_block_concatenates_halving_branches_without_residual():
    block = STDCNet((2, 2, 2)).stage3[0]
    assert [m.conv.out_channels for m in block.conv_list] == [128, 64, 32, 32]
    assert block.avd_layer.conv.groups == 128 and not hasattr(block.avd_layer, "act")


# ------------------------------------------------------------------------------------------------- heads and models


def test_sfnet_ppm_has_no_bin_relu_and_a_1x1_bottleneck_with_dropout():
    ppm = create_model("sfnet_lite_r18").head.ppm
    assert isinstance(ppm, PyramidPooling)
    assert all(not hasattr(stage[1], "act") for stage in ppm.stages)
    assert ppm.bottleneck.conv.kernel_size == (1, 1) and isinstance(ppm.dropout, torch.nn.Dropout2d)
    assert _params(ppm) == 394_496


@pytest.mark.parametrize(("name", "head", "ppm"), [("sfnet_lite_r18", 752_678, 394_496),
                                                   ("sfnet_lite_stdc1", 1_113_126, 722_176)])
def test_lite_head_counts_match_spec(name, head, ppm):
    model = create_model(name)
    assert _params(model.head) == head
    assert _params(model.head.ppm) == ppm


def test_r18_lite_part_counts_match_spec():
    head = create_model("sfnet_lite_r18").head
    assert _params(head.lateral4) + _params(head.lateral16) == 41_728
    assert _params(head.fuse) + _params(head.classifier) == 295_426


def test_sfnet_v1_r18_matches_the_spec_count():
    model = create_model("sfnet_r18")
    assert count_used_parameters(model, torch.zeros(1, 3, 64, 64)) == 12_867_522
    assert _params(model.head) == 1_542_530


@pytest.mark.parametrize("name", ["sfnet_lite_stdc1", "sfnet_r18"])
def test_train_mode_returns_the_main_logits_only(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 64, 96)


def test_unknown_option_is_rejected():
    with pytest.raises(AnosegError, match="fpn_dim"):
        create_model("sfnet_lite_stdc1", fpn_dim=64)


# ---------------------------------------------------------------------------------------------------- weights


def test_imagenet_request_warns_and_stays_random(capsys, monkeypatch):
    monkeypatch.setattr("anoseg.log._said", set())  # warn_once may have spoken earlier in this process
    torch.manual_seed(0)
    random_init = create_model("sfnet_lite_stdc1")
    torch.manual_seed(0)
    model = create_model("sfnet_lite_stdc1", backbone_weights="imagenet")
    for a, b in zip(random_init.backbone.state_dict().values(), model.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert "STDC1" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["sfnet_lite_r18", "sfnet_lite_stdc2"])
def test_backbone_weights_file_round_trip(tmp_path, name):
    source = create_model(name)
    path = tmp_path / "backbone.pt"
    torch.save(source.backbone.state_dict(), path)
    loaded = create_model(name, backbone_weights=str(path))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key


def test_wrong_shape_weights_file_is_a_user_error(tmp_path):
    state = create_model("sfnet_lite_stdc1").backbone.state_dict()
    state["stage1.conv.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(AnosegError, match="wrong shapes"):
        create_model("sfnet_lite_stdc1", backbone_weights=str(tmp_path / "bad.pt"))


def test_authors_r18_deep_checkpoint_layout_loads(tmp_path):
    # SFSegNets' resnet_d names: conv1 = Sequential(conv, bn, relu, conv, bn, relu, conv), bn1, plus an fc.
    ours = DeepStemResNet18().state_dict()
    theirs_prefix = {"stem.0.conv.": "conv1.0.", "stem.0.bn.": "conv1.1.", "stem.1.conv.": "conv1.3.",
                     "stem.1.bn.": "conv1.4.", "stem.2.conv.": "conv1.6.", "stem.2.bn.": "bn1."}
    theirs = {}
    for key, value in ours.items():
        for mine, their in theirs_prefix.items():
            key = key.replace(mine, their) if key.startswith(mine) else key
        theirs[key] = value
    theirs["fc.weight"] = torch.zeros(1000, 512)
    torch.save(theirs, tmp_path / "resnet18-deep-inplane128.pth")
    backbone = DeepStemResNet18()
    assert backbone.load_weights(tmp_path / "resnet18-deep-inplane128.pth")
    assert torch.equal(backbone.stem[2].bn.running_var, ours["stem.2.bn.running_var"])
    assert torch.equal(backbone.layer4[1].conv2.weight, ours["layer4.1.conv2.weight"])


def test_authors_stdc_checkpoint_layout_loads(tmp_path):
    # STDC-Seg names: features.<i> (stage1, stage2, then every block in order), avd_layer.0/1, wrapped in
    # {"state_dict": ...}, with classifier tensors that must be ignored.
    ours = STDCNet((2, 2, 2)).state_dict()
    names = ["stage1", "stage2", "stage3.0", "stage3.1", "stage4.0", "stage4.1", "stage5.0", "stage5.1"]
    theirs = {}
    for key, value in ours.items():
        for index, name in enumerate(names):
            if key.startswith(name + "."):
                rest = key[len(name) + 1:].replace("avd_layer.conv.", "avd_layer.0.").replace("avd_layer.bn.",
                                                                                               "avd_layer.1.")
                theirs[f"features.{index}.{rest}"] = value
    assert len(theirs) == len(ours)
    theirs["linear.weight"] = torch.zeros(1000, 1024)
    torch.save({"state_dict": theirs}, tmp_path / "STDCNet813_73.91.tar")
    backbone = STDCNet((2, 2, 2))
    assert backbone.load_weights(tmp_path / "STDCNet813_73.91.tar")
    assert torch.equal(backbone.stage4[0].avd_layer.bn.weight, ours["stage4.0.avd_layer.bn.weight"])
    assert torch.equal(backbone.stage5[1].conv_list[3].conv.weight, ours["stage5.1.conv_list.3.conv.weight"])


# ----------------------------------------------------------------------------------------------------- export


def test_jit_trace_matches_eager():
    torch.manual_seed(0)
    model = create_model("sfnet_lite_stdc1").eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit.trace is deprecated in favour of torch.export
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), model(x))


def test_onnx_opset17_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("sfnet_lite_stdc1").eval()
    # 192² makes the 1/32 map 6×6, which the TorchScript exporter needs for the PPM's adaptive pools (bins 3, 6).
    x = torch.randn(1, 3, 192, 192)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), tmp_path / "m.onnx", opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), atol=1e-4, rtol=1e-4)
