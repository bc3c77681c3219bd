"""Generic tests for every registered segmenter: fidelity to the reference counts, shapes, gradients, determinism."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from anoseg.errors import AnosegError
from anoseg.losses import build_loss
from anoseg.models import MODELS, create_model, list_models, model_spec
from anoseg.models.backbones import Backbone
from anoseg.models.build import create_backbone
from anoseg.models.profile import count_macs, count_used_parameters
from anoseg.models.registry import BACKBONES

BIG = {"upernet_r50", "liteseg_darknet19"}


def _models() -> list[str]:
    return list_models()


def test_registry_has_every_reference_model_in_report_order():
    assert list_models() == [
        "lfd", "sanet_s", "sanet_m", "sanet_l", "liteseg_mobilenetv2", "liteseg_shufflenet", "liteseg_darknet19",
        "lednet", "sfnet_lite_r18", "sfnet_lite_stdc1", "sfnet_lite_stdc2", "sfnet_r18", "bisenetv2", "upernet_r50"]
    assert model_spec("sfnet_r18").display_name == "SFNet-R18"


def test_unknown_model_lists_valid_names():
    with pytest.raises(AnosegError) as info:
        create_model("no_such_net")
    assert "lfd" in str(info.value) and "sanet_s" in str(info.value)


@pytest.mark.parametrize("name", _models())
def test_unknown_option_is_one_message_naming_it(name):
    with pytest.raises(AnosegError, match=rf"^model {name}: unknown option\(s\) no_such_option; it accepts: "):
        create_model(name, no_such_option=1)


@pytest.mark.parametrize("name", _models())
@pytest.mark.parametrize("num_classes", [2, 19])
def test_used_parameters_equal_reference(name, num_classes):
    reference = MODELS[name].reference
    expected = reference.params_2 if num_classes == 2 else reference.params_19
    if expected is None:
        pytest.skip("no reference count at this class count")
    model = create_model(name, num_classes=num_classes)
    assert count_used_parameters(model, torch.zeros(1, 3, 256, 256)) == expected


@pytest.mark.parametrize("name", _models())
def test_macs_match_reference(name):
    reference = MODELS[name].reference
    if reference.macs_256 is None:
        pytest.skip("no reference MACs")
    if name == "liteseg_darknet19":
        pytest.skip(reference.note)  # deliberate: test_liteseg reproduces the reference MACs with its paddings
    macs = count_macs(create_model(name), torch.zeros(1, 3, 256, 256))
    assert abs(macs - reference.macs_256) / reference.macs_256 < 0.01, f"{name}: {macs / 1e9:.3f} GMACs"


@pytest.mark.parametrize("name", _models())
def test_eval_output_at_input_resolution(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()
    sizes = [(2, 256, 256), (1, 96, 160)] + ([] if name in BIG else [(1, 384, 1280), (1, 512, 1024)])
    with torch.inference_mode():
        for n, h, w in sizes:
            out = model(torch.randn(n, 3, h, w))
            assert isinstance(out, torch.Tensor), f"{name} must return one tensor in eval mode"
            assert out.shape == (n, 3, h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", _models())
def test_backward_gives_finite_gradients_for_every_used_parameter(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    x = torch.randn(2, 3, 128, 128)
    called: list[torch.nn.Module] = []
    handles = [m.register_forward_hook(lambda m, i, o: called.append(m)) for m in model.modules()]
    out = model(x)
    for h in handles:
        h.remove()
    outputs = [out] if isinstance(out, torch.Tensor) else [out["out"], *out.get("aux", []), *(
        [out["boundary"]] if "boundary" in out else [])]
    sum(o.float().square().mean() for o in outputs).backward()
    for module in called:
        for pname, p in module.named_parameters(recurse=False):
            assert p.grad is not None, f"{name}: {type(module).__name__}.{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: {type(module).__name__}.{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", _models())
def test_eval_is_deterministic(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, 3, 128, 160)
    with torch.inference_mode():
        assert torch.equal(model(x), model(x))
    torch.manual_seed(0)
    same_seed = create_model(name).eval()
    with torch.inference_mode():
        assert torch.equal(model(x), same_seed(x))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", _models())
def test_traced_model_follows_the_input_size(name):
    """Export-friendliness: no Python control flow on tensor values, sizes taken from the input."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.inference_mode():
        traced = torch.jit.trace(model, torch.randn(1, 3, 64, 96))
        other = torch.randn(1, 3, 96, 64)
        expected = model(other)
        assert torch.allclose(traced(other), expected, atol=1e-4 * max(1.0, expected.abs().max().item()))


@pytest.mark.parametrize("name", _models())
def test_unavailable_imagenet_weights_warn_once_and_leave_random_init(name, monkeypatch):
    import anoseg.models.weights as weights_module

    messages: list[str] = []
    monkeypatch.setattr(weights_module, "torchvision_state_dict", lambda weights: None)  # as offline
    monkeypatch.setattr(weights_module, "warn_once", messages.append)
    torch.manual_seed(0)
    model = create_model(name, backbone_weights="imagenet")
    torch.manual_seed(0)
    fresh = create_model(name, backbone_weights="none")
    assert len(messages) == 1, messages
    for (key, value), same in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(value, same), key


def test_models_command_lists_records_without_importing_torch():
    code = ("import sys; from click.testing import CliRunner; from anoseg.cli import main; "
            "r = CliRunner().invoke(main, ['models']); assert r.exit_code == 0, r.output; "
            "n = CliRunner().invoke(main, ['models', '--names-only']); "
            "print(sorted(m for m in ('torch', 'torchvision', 'pandas') if m in sys.modules)); "
            "print('SFNet-R18' in r.output, '12,867,522' in r.output, n.output.split())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1].startswith("True True")
    assert out[1].endswith(str(list_models()))


@pytest.mark.parametrize("name", _models())
def test_training_outputs_are_covered_by_the_recorded_loss(name):
    """The record's loss spec names exactly the auxiliary outputs the model returns in training."""
    if name in BIG:
        pytest.skip("slow to run in train mode; no aux outputs (its record has none)")
    torch.manual_seed(0)
    out = create_model(name).train()(torch.randn(2, 3, 64, 64))
    spec = model_spec(name).loss
    aux = out.get("aux", []) if isinstance(out, dict) else []
    assert (len(aux) > 0) == (spec.aux is not None)
    assert (isinstance(out, dict) and "boundary" in out) == (spec.boundary_weight > 0)
    loss = build_loss(name, min_kept=10)(out, torch.randint(0, 2, (2, 64, 64)))
    assert torch.isfinite(loss) and loss.item() > 0


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_keeps_the_contract(name):
    """``list[Tensor]`` finest first, with the channels and reductions it declares; ``load_weights`` from its record."""
    torch.manual_seed(0)
    backbone = create_backbone(name).eval()
    assert isinstance(backbone, Backbone) and backbone.registry_name == name
    with torch.inference_mode():
        features = backbone(torch.zeros(1, 3, 64, 96))
    assert isinstance(features, list)
    assert [f.shape[1:] for f in features] == [
        (c, 64 // r, 96 // r) for c, r in zip(backbone.out_channels, backbone.reductions, strict=True)]
    assert list(backbone.reductions) == sorted(backbone.reductions)
    assert backbone.load_weights("none") is False
