"""BiSeNetV2-specific tests: branch strides, the train graph (aux heads), the authors' init, weight loading, export."""

from __future__ import annotations

import pytest
import torch

from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.models.bisenetv2 import BiSeNetV2, GatherExpand

# Used parameters of the training graph (main head + 4 aux heads), docs/architectures/bisenetv2.md.
TRAIN_REFERENCE = {2: 5_190_874, 19: 5_231_487}


def _used_in_train_forward(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, object]:
    """Parameters of the modules that run in a train-mode forward (counted once each), and the output."""
    called: list[torch.nn.Module] = []
    handles = [m.register_forward_hook(lambda m, i, o: called.append(m)) for m in model.modules()]
    try:
        out = model.train()(x)
    finally:
        for h in handles:
            h.remove()
    params = {id(p): p.numel() for m in called for p in m.parameters(recurse=False)}
    return sum(params.values()), out


@pytest.mark.parametrize("num_classes", [2, 19])
def test_train_graph_uses_reference_parameter_count(num_classes):
    torch.manual_seed(0)
    model = create_model("bisenetv2", num_classes=num_classes)
    used, out = _used_in_train_forward(model, torch.randn(2, 3, 64, 64))
    assert used == TRAIN_REFERENCE[num_classes]
    # every parameter the network owns is used in training: no dead modules are built
    assert used == sum(p.numel() for p in model.parameters())
    assert set(out) == {"out", "aux"}


def test_train_mode_returns_main_and_four_aux_logits_at_input_size():
    torch.manual_seed(0)
    model = create_model("bisenetv2", num_classes=3).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert out["out"].shape == (2, 3, 64, 96)
    assert len(out["aux"]) == 4
    for aux in out["aux"]:
        assert aux.shape == (2, 3, 64, 96)
        assert torch.isfinite(aux).all()
    # switching back to eval gives one tensor: the mode decides, not a constructor flag
    assert isinstance(model.eval()(torch.randn(1, 3, 64, 96)), torch.Tensor)


def test_branch_strides_and_channels():
    model = BiSeNetV2(num_classes=2).eval()
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        detail = model.detail(x)
        aux_features, semantic = model.semantic(x)
        fused = model.bga(detail, semantic)
    assert detail.shape == (1, 128, 16, 24)  # 1/8
    assert semantic.shape == (1, 128, 4, 6)  # 1/32 after the context block
    assert fused.shape == detail.shape
    for feature, (channels, stride) in zip(aux_features, BiSeNetV2.AUX_FEATURES, strict=True):
        assert feature.shape == (1, channels, 128 // stride, 192 // stride)


def test_aux_head_widths_follow_their_stride():
    model = BiSeNetV2(num_classes=2)
    widths = [head.up_conv.conv.out_channels for head in model.aux_heads]
    assert widths == [16, 64, 256, 1024]  # stride² as in the reference
    assert model.head.up_conv is None and model.head.conv.conv.out_channels == 1024


def test_authors_init_starts_each_gather_expand_layer_as_its_shortcut():
    torch.manual_seed(0)
    model = BiSeNetV2(num_classes=2)
    layers = [m for m in model.modules() if isinstance(m, GatherExpand)]
    assert len(layers) == 8  # 2 + 2 + 4 in stages 3, 4, 5
    assert all(torch.count_nonzero(layer.project.bn.weight) == 0 for layer in layers)
    # a stride-1 layer is therefore relu(x) at init, whatever its convs hold
    stride1 = model.semantic.stage5[1].eval()
    x = torch.randn(2, 128, 4, 4)
    with torch.no_grad():
        assert torch.equal(stride1(x), torch.relu(x))
    # Kaiming-normal fan-out: std ≈ sqrt(2 / (out_channels · k²)) for the 1024-channel head conv
    weight = model.head.conv.conv.weight
    expected = (2.0 / (1024 * 9)) ** 0.5
    assert abs(weight.std().item() - expected) / expected < 0.05
    assert torch.count_nonzero(model.head.classifier.bias) == 0


def _classifier_names(model: BiSeNetV2) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(("head.classifier.", "aux_heads."))
            and ".classifier." in f".{name}"}


def test_weights_path_loads_everything_but_the_classifiers(tmp_path):
    torch.manual_seed(1)
    source = create_model("bisenetv2", num_classes=19)
    with torch.no_grad():  # make BN statistics non-default so the copy is visible
        for tensor in source.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn_like(tensor))
    path = tmp_path / "bisenetv2_19.pt"
    torch.save(source.state_dict(), path)

    torch.manual_seed(2)
    model = create_model("bisenetv2", num_classes=2, backbone_weights=str(path))
    skipped = _classifier_names(model)
    assert len(skipped) == 10  # weight + bias of the main and 4 aux classifiers
    src = source.state_dict()
    for name, tensor in model.state_dict().items():
        if name in skipped:
            assert tensor.shape[0] == 2  # fresh, sized for this model's classes
        else:
            assert torch.equal(tensor, src[name]), name


def test_weights_path_shape_mismatch_and_missing_tensor_raise(tmp_path):
    state = BiSeNetV2(num_classes=2).state_dict()
    wrong = dict(state)
    wrong["bga.fuse.conv.weight"] = torch.zeros(64, 128, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(AnosegError, match=r"bga\.fuse\.conv\.weight"):
        create_model("bisenetv2", backbone_weights=str(tmp_path / "wrong.pt"))

    missing = {k: v for k, v in state.items() if not k.startswith("aux_heads.3.")}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(AnosegError, match="lack"):
        create_model("bisenetv2", backbone_weights=str(tmp_path / "missing.pt"))

    # a classifier of another class count is not a mismatch: classifiers are never loaded
    other = dict(state)
    other["head.classifier.weight"] = torch.zeros(7, 1024, 1, 1)
    torch.save(other, tmp_path / "other.pt")
    create_model("bisenetv2", backbone_weights=str(tmp_path / "other.pt"))


def test_imagenet_weights_warn_and_keep_random_init(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr("anoseg.models.weights.warn_once", said.append)
    torch.manual_seed(0)
    model = create_model("bisenetv2", backbone_weights="imagenet")
    torch.manual_seed(0)
    plain = create_model("bisenetv2", backbone_weights="none")
    assert len(said) == 1 and "BiSeNetV2" in said[0]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values(), strict=True))


def test_unknown_option_is_a_user_error():
    with pytest.raises(AnosegError, match="aux_mode"):
        create_model("bisenetv2", aux_mode="eval")


# torch.jit.trace is deprecated in torch 2.14 but is what the export path uses
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_traced_eval_graph_matches_and_generalises_to_other_sizes():
    torch.manual_seed(0)
    model = create_model("bisenetv2").eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 64, 96))
        x = torch.randn(2, 3, 96, 128)
        assert torch.allclose(traced(x), model(x), atol=1e-5)
