"""SANet-specific tests: train-mode outputs and counts, internal strides, APPPM pooling, export, weight loading."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from anoseg import log
from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.models.build import load_matching
from anoseg.models.registry import model_spec
from anoseg.models.sanet import APPPM, SANet, convert_author_state_dict

# Used parameters of the authors' training graph (main + aux + boundary heads), 2 classes (docs/architectures/sanet.md).
TRAIN_REFERENCE = {"sanet_s": 8_375_174, "sanet_m": 12_011_782, "sanet_l": 18_067_974}


def _train_used_parameters(model: torch.nn.Module, x: torch.Tensor) -> int:
    called: list[torch.nn.Module] = []
    handles = [m.register_forward_hook(lambda m, i, o: called.append(m)) for m in model.modules()]
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    params = {id(p): p.numel() for m in called for p in m.parameters(recurse=False)}
    return sum(params.values())


@pytest.mark.parametrize("name", sorted(TRAIN_REFERENCE))
def test_train_graph_uses_reference_parameters_and_nothing_is_dead(name):
    model = create_model(name, num_classes=2)
    used = _train_used_parameters(model, torch.randn(2, 3, 64, 64))
    assert used == TRAIN_REFERENCE[name]
    # Dead modules of the reference (process1..4, classifier, fc, seghead_d2) are not built.
    assert used == sum(p.numel() for p in model.parameters())


def test_train_mode_returns_main_aux_and_boundary_at_reference_strides():
    torch.manual_seed(0)
    model = create_model("sanet_s", num_classes=3).train()
    out = model(torch.randn(2, 3, 128, 192))
    assert set(out) == {"out", "aux", "boundary"}
    assert out["out"].shape == (2, 3, 16, 24)  # 1/8
    assert [a.shape for a in out["aux"]] == [(2, 3, 8, 12)]  # 1/16, from x4
    assert out["boundary"].shape == (2, 1, 16, 24)  # 1/8, one channel


def test_internal_feature_strides_and_channels():
    model = create_model("sanet_s").eval()
    shapes: dict[str, tuple[int, ...]] = {}
    names = ["layer3", "layer4", "layer5", "layer6", "dp1", "dp2", "spp", "decoder", "head"]
    handles = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
               for n in names]
    with torch.no_grad():
        model(torch.zeros(1, 3, 256, 512))
    for h in handles:
        h.remove()
    assert shapes == {
        "layer3": (1, 128, 32, 64), "layer4": (1, 128, 16, 32), "layer5": (1, 256, 8, 16), "layer6": (1, 512, 4, 8),
        "dp1": (1, 128, 32, 64), "dp2": (1, 128, 32, 64), "spp": (1, 128, 4, 8), "decoder": (1, 64, 32, 64),
        "head": (1, 2, 32, 64),
    }


def test_eval_output_is_the_eighth_resolution_head_upsampled_with_align_corners():
    torch.manual_seed(0)
    model = create_model("sanet_s").eval()
    low: list[torch.Tensor] = []
    handle = model.head.register_forward_hook(lambda m, i, o: low.append(o))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    handle.remove()
    assert low[0].shape[-2:] == (8, 12)
    assert torch.allclose(out, F.interpolate(low[0], size=(64, 96), mode="bilinear", align_corners=True))
    assert not torch.allclose(out, F.interpolate(low[0], size=(64, 96), mode="bilinear", align_corners=False))


@pytest.mark.parametrize(("h", "w"), [(4, 4), (5, 7), (6, 20)])
def test_apppm_strip_pools_give_ceil_sizes_and_keep_the_input_size(h, w):
    spp = APPPM(512, 128, 128).eval()
    x = torch.randn(1, 512, h, w)
    with torch.no_grad():
        for strip, s in zip(spp.strips, (2, 4, 8), strict=True):
            assert strip[0](x).shape[-2:] == (h, math.ceil(w / s))  # width first
            assert strip(x).shape[-2:] == (math.ceil(h / s), math.ceil(w / s))
        assert spp(x).shape == (1, 128, h, w)


def test_traced_and_onnx_exported_model_match_eager():
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("sanet_s").eval()
    x, other = torch.randn(1, 3, 64, 96), torch.randn(1, 3, 96, 160)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in favour of torch.export
        traced = torch.jit.trace(model, x)
        # Pool geometry and resize sizes come from shapes, not values: the trace generalises to another size.
        assert torch.allclose(traced(other), model(other), atol=1e-5)
        expected = model(x).numpy()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, opset_version=17, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert got.shape == expected.shape
    assert abs(got - expected).max() < 1e-3 * max(1.0, abs(expected).max())


# --------------------------------------------------------------------------------------------------------------------
# Weights


def test_weight_file_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    source = create_model("sanet_s", num_classes=2).eval()
    path = tmp_path / "sanet_s.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    loaded = create_model("sanet_s", num_classes=2, backbone_weights=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_class_dependent_head_layers_are_skipped_and_everything_else_loads(tmp_path):
    torch.manual_seed(0)
    source = create_model("sanet_s", num_classes=19)
    path = tmp_path / "s19.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    target = create_model("sanet_s", num_classes=2)
    head_before = target.head.conv2.weight.clone()
    loaded = _load_by_name(target, path)
    assert loaded == len(target.state_dict()) - 4  # head.conv2 and aux_head.conv2, weight and bias
    assert torch.equal(target.head.conv2.weight, head_before)
    assert torch.equal(target.spp.gate.weight, source.spp.gate.weight)
    assert torch.equal(target.aux_head.conv1.weight, source.aux_head.conv1.weight)


def test_wrong_shape_outside_the_head_is_an_error_naming_the_tensor(tmp_path):
    state = create_model("sanet_s").state_dict()
    state["layer1.0.conv1.conv.weight"] = torch.zeros(32, 32, 1, 1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(AnosegError, match=r"layer1\.0\.conv1\.conv\.weight"):
        create_model("sanet_s", backbone_weights=str(path))


def test_file_sharing_nothing_with_the_model_is_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(AnosegError, match="share no tensor"):
        create_model("sanet_s", backbone_weights=str(path))


# Keys of the authors' checkpoints (CuZaoo/SANet-main DualResNet, wrapped by FullModel as ``model.``) → our names.
AUTHOR_KEYS = {
    "stom.0.weight": "stem.0.conv.weight",
    "stom.0.bias": "stem.0.conv.bias",
    "stom.4.running_var": "stem.1.bn.running_var",
    "layer2.0.downsample.1.weight": "layer2.0.downsample.bn.weight",
    "layer3.1.bn2.bias": "layer3.1.conv2.bn.bias",
    "layer6.0.conv3.weight": "layer6.0.conv3.conv.weight",
    "dp1.hconv.bias": "dp1.proj.bias",
    "dp1.conv.2.0.weight": "dp1.layers.2.conv.weight",
    "dp2.conv.1.1.running_mean": "dp2.layers.1.bn.running_mean",
    "down4.0.weight": "down4.conv.weight",
    "down5.3.weight": "down5.1.conv.weight",
    "down5.4.bias": "down5.1.bn.bias",
    "compression.1.weight": "compression.bn.weight",
    "spp.scale0.2.weight": "spp.scale0.conv.weight",
    "spp.scale1.1.weight": "spp.strips.0.0.bn.weight",
    "spp.scale33.3.weight": "spp.strips.2.1.conv.weight",
    "spp.scale4.3.weight": "spp.pooled.conv.weight",
    "spp.compression.0.running_var": "spp.compression.bn.running_var",
    "spp.shortcut.2.weight": "spp.shortcut.conv.weight",
    "spp.atten.conv3.bias": "spp.gate.bias",
    "decoder.conv_H.weight": "decoder.conv_h.weight",
    "decoder.conv_out.weight": "decoder.conv_out.weight",
    "final_layer.bn1.weight": "head.bn1.weight",
    "seghead_extra.conv1.weight": "aux_head.conv1.weight",
    "seghead_d.conv2.bias": "boundary_head.conv2.bias",
}
AUTHOR_DEAD = {"spp.process1.0.weight": (512,), "classifier.0.weight": (128, 64), "fc.weight": (1000, 128),
               "seghead_d2.conv1.weight": (32, 128, 3, 3), "final_layer.conv2.weight": (1000, 64, 1, 1)}


def _load_by_name(model: SANet, path) -> int:
    spec = model_spec("sanet_s").weight_spec
    return load_matching(model, path, convert=convert_author_state_dict, class_dependent=spec.class_dependent)


def test_authors_checkpoint_keys_are_mapped_and_loaded(tmp_path):
    torch.manual_seed(0)
    shapes = {k: v.shape for k, v in create_model("sanet_s").state_dict().items()}
    state = {f"model.{k}": torch.randn(shapes[ours]) for k, ours in AUTHOR_KEYS.items()}
    state |= {f"model.{k}": torch.randn(shape) for k, shape in AUTHOR_DEAD.items()}
    converted = convert_author_state_dict(state)
    assert set(AUTHOR_KEYS.values()) <= set(converted)
    path = tmp_path / "authors.pth"
    torch.save({"state_dict": state}, path)
    model = SANet(create_model("sanet_s").config, num_classes=2)
    assert _load_by_name(model, path) == len(AUTHOR_KEYS)
    ours = model.state_dict()
    for key, our_key in AUTHOR_KEYS.items():
        assert torch.equal(ours[our_key], state[f"model.{key}"]), key
    # the partial load is recorded in the provenance (the checkpoint's), not printed from the models floor
    from anoseg.models.weights import weights_provenance

    record = weights_provenance(model, path)
    assert record.startswith(f"file {path.resolve()} sha256:")
    assert f"({len(AUTHOR_KEYS)} of {len(ours)} tensors; class-dependent head layers kept random" in record


def test_imagenet_warns_once_and_stays_random(monkeypatch, capsys):
    monkeypatch.setattr(log, "_said", set())
    torch.manual_seed(0)
    model = create_model("sanet_s", backbone_weights="imagenet")
    torch.manual_seed(0)
    fresh = create_model("sanet_s", backbone_weights="none")
    assert "no ImageNet weights" in capsys.readouterr().err
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True))


def test_unknown_option_is_an_error():
    with pytest.raises(AnosegError, match="width"):
        create_model("sanet_m", width=2)
