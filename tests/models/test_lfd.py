"""LFD_Core specifics: branch shapes, parameter breakdown, two independent ResNet-18 trunks and their weights."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

import anoseg.models.weights as weights_module
from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.models.backbones.resnet import ResNet18Trunk
from anoseg.models.lfd import LFD
from anoseg.models.profile import count_used_parameters


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _branch_outputs(model: LFD, x: torch.Tensor) -> dict[str, torch.Size]:
    shapes: dict[str, torch.Size] = {}
    def record(name: str):  # the trunks return their stage outputs (backbone contract): the last one is the path's
        return lambda m, i, o: shapes.__setitem__(name, (o[-1] if isinstance(o, list) else o).shape)

    hooks = [getattr(model, name).register_forward_hook(record(name)) for name in ("context", "detail", "fusion")]
    hooks.append(model.context.register_forward_pre_hook(lambda m, i: shapes.__setitem__("context_in", i[0].shape)))
    with torch.inference_mode():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize(("h", "w"), [(256, 256), (96, 320)])
def test_context_path_sees_width_halved_twice_as_much_as_height(h, w):
    shapes = _branch_outputs(LFD(), torch.zeros(1, 3, h, w))
    assert shapes["context_in"] == (1, 3, h // 2, w // 4)
    assert shapes["context"] == (1, 128, h // 16, w // 32)
    assert shapes["detail"] == (1, 64, h // 4, w // 4)
    assert shapes["fusion"] == (1, 128, h // 4, w // 4)


def test_scale_factor_sets_the_context_input_size():
    shapes = _branch_outputs(LFD(scale_factor=4), torch.zeros(1, 3, 256, 256))
    assert shapes["context_in"] == (1, 3, 64, 32)


def test_parameter_breakdown_matches_the_reference():
    model = LFD(num_classes=2)
    # docs/architectures/lfd.md: semantic 683,072; detail 166,080 incl. channel_adjust; context1+2; fusion; cls_head.
    assert _numel(model.context) == 683_072
    assert _numel(model.detail) + _numel(model.channel_adjust) == 166_080
    assert [_numel(unit) for unit in model.aggregation] == [18_304, 18_304]
    assert _numel(model.fusion) == 33_281
    assert _numel(model.head) == 17_026
    assert count_used_parameters(model, torch.zeros(1, 3, 64, 64)) == _numel(model)


def test_head_widens_with_num_classes():
    assert _numel(LFD(num_classes=19)) - _numel(LFD(num_classes=2)) == 17 * (128 + 1)


def test_aggregation_first_unit_reaches_further_horizontally():
    first, second = LFD().aggregation
    assert first.dw_row.dilation == (1, 2) and second.dw_row.dilation == (1, 1)
    # A single non-zero column spreads over 9 columns through unit 1's dilated 1×5, over 5 through unit 2's.
    x = torch.zeros(1, 128, 5, 21)
    x[..., 10] = 1.0
    with torch.no_grad():  # subtract the bias-only response of an all-zero input
        spread = [unit.dw_row(x) - unit.dw_row(torch.zeros_like(x)) for unit in (first, second)]
    reach = [(s.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten().tolist() for s in spread]
    assert reach[0] == [6, 8, 10, 12, 14]
    assert reach[1] == [8, 9, 10, 11, 12]


def test_trunks_have_their_own_weights():
    model = LFD()
    assert {id(p) for p in model.context.parameters()}.isdisjoint(id(p) for p in model.detail.parameters())
    assert not hasattr(model.detail, "layer2")
    with torch.no_grad():
        model.detail.conv1.weight.zero_()
    assert model.context.conv1.weight.abs().sum() > 0


def test_trunk_keys_are_a_prefix_of_torchvision_resnet18():
    tv_keys = set(resnet18().state_dict())
    trunk_keys = set(ResNet18Trunk(stages=2).state_dict())
    assert trunk_keys <= tv_keys
    assert {k.split(".")[0] for k in trunk_keys} == {"conv1", "bn1", "layer1", "layer2"}


def _random_resnet18_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = resnet18()
    with torch.no_grad():  # BN stats away from their defaults, so a missed copy shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return net.state_dict()


def _assert_trunks_hold(model: LFD, state: dict[str, torch.Tensor]) -> None:
    for trunk in (model.context, model.detail):
        for key, value in trunk.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert "layer2.1.conv2.weight" in model.context.state_dict()


def test_backbone_file_round_trip_loads_both_trunks(tmp_path):
    state = _random_resnet18_state(seed=1)  # includes fc.* and layer3/4, which must be ignored
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    torch.manual_seed(0)
    model = create_model("lfd", backbone_weights=str(path))
    _assert_trunks_hold(model, state)
    # Parts outside the trunks stay as the random init of an unloaded model with the same seed.
    torch.manual_seed(0)
    fresh = create_model("lfd")
    assert torch.equal(model.head[1].weight, fresh.head[1].weight)


def test_backbone_file_with_wrong_shapes_or_missing_stages_is_a_user_error(tmp_path):
    state = _random_resnet18_state(seed=2)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "bad_shape.pth")
    with pytest.raises(AnosegError, match=r"bad_shape\.pth"):
        create_model("lfd", backbone_weights=str(tmp_path / "bad_shape.pth"))
    torch.save(ResNet18Trunk(stages=1).state_dict(), tmp_path / "no_layer2.pth")
    with pytest.raises(AnosegError, match="layer2"):
        create_model("lfd", backbone_weights=str(tmp_path / "no_layer2.pth"))


def test_imagenet_weights_feed_both_trunks_from_one_read(monkeypatch):
    state = _random_resnet18_state(seed=3)
    calls = []
    monkeypatch.setattr(weights_module, "torchvision_state_dict", lambda w: calls.append(w) or state)
    model = create_model("lfd", backbone_weights="imagenet")
    assert len(calls) == 1 and "IMAGENET1K_V1" in str(calls[0])
    _assert_trunks_hold(model, state)


def test_builder_rejects_unknown_options():
    with pytest.raises(AnosegError, match="widht"):
        create_model("lfd", widht=2)
    with pytest.raises(AnosegError, match="scale_factor"):
        create_model("lfd", scale_factor=0)


def test_train_mode_returns_the_main_tensor():
    out = LFD(num_classes=3).train()(torch.randn(2, 3, 64, 96))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 64, 96)
