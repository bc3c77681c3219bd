"""Export: ONNX round trip of every registered model, TorchScript, dynamic axes, sidecar, predict parity, errors."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn as nn
from PIL import Image

from anoseg.constants import CHECKPOINT_FORMAT
from anoseg.engine.checkpoint import load_checkpoint, save_checkpoint
from anoseg.engine.conversion import (
    _SlicedAdaptiveAvgPool2d,
    example_input,
    export_onnx,
    export_torchscript,
    onnx_session,
)
from anoseg.engine.results import thresholds_document, weights_sha256
from anoseg.errors import AnosegError
from anoseg.export import export_model
from anoseg.io import write_json
from anoseg.models import create_model, list_models
from anoseg.paths import eval_dir

SIZE = (64, 96)  # non-square, so a swapped height/width cannot pass
SMALL = {"upernet_r50": (64, 64), "liteseg_darknet19": (64, 64)}  # the heaviest two
# Models that do not export, with the reason (each becomes a strict xfail). All 14 export with torch 2.14.
NOT_EXPORTABLE: dict[str, str] = {}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _registry_params() -> list:
    return [pytest.param(name, id=name, marks=[pytest.mark.xfail(reason=NOT_EXPORTABLE[name], strict=True)]
                         if name in NOT_EXPORTABLE else []) for name in list_models()]


def _assert_as_accurate_as_eager(model: nn.Module, run, x: torch.Tensor) -> None:
    """Independent of the exporter's own check: exported logits are as close to exact (float64) as eager float32's.

    Allowed: twice eager's own float32 error plus 1e-4 (relative to the output scale above 1). Comparing with float64
    rather than with eager float32 keeps the test fair to ill-conditioned untrained networks, whose float32 result
    is itself ~1e-4 off (SANet-L's logits reach ~1e6 at initialisation).
    """
    with torch.inference_mode():
        eager = model(x).double()
        exact = copy.deepcopy(model).double()(x.double())
    output = torch.from_numpy(np.asarray(run(x))).double()
    assert output.shape == eager.shape == (x.shape[0], 2, *x.shape[-2:])
    error, eager_error = (output - exact).abs().max().item(), (eager - exact).abs().max().item()
    assert error <= 2 * eager_error + 1e-4 * max(1.0, exact.abs().max().item()), (error, eager_error)


def _ort(data: bytes) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", _registry_params())
def test_onnx_round_trip_every_model(name):
    size = SMALL.get(name, SIZE)
    torch.manual_seed(0)
    model = create_model(name).eval()
    data, info = export_onnx(model, example_input(size))
    # static exports of every registered model need neither the fallback exporter nor an older opset
    assert (info["exporter"], info["opset"], info["fallback_from"]) == ("dynamo", 18, [])
    assert info["verification"]["max_abs_diff"] < info["verification"]["tolerance"]
    session = _ort(data)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    _assert_as_accurate_as_eager(model, lambda t: session.run(None, {"image": t.numpy()})[0], x)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", ["lfd", "bisenetv2", "sfnet_lite_stdc1"])
def test_torchscript_round_trip_at_two_sizes(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    data, info = export_torchscript(model, example_input(SIZE), dynamic=True)
    assert info["exporter"] == "torch.jit.trace" and len(info["verification"]["shapes"]) == 2
    loaded = torch.jit.load(io.BytesIO(data))
    for shape in [(1, 3, *SIZE), (2, 3, 128, 64)]:  # the second is neither the traced nor the verified size
        with torch.no_grad():
            _assert_as_accurate_as_eager(model, lambda t: loaded(t).numpy(), torch.randn(*shape))


@pytest.mark.parametrize(("name", "exporter"), [
    ("lfd", "dynamo"),
    # torch.export bakes flow_warp's linspace grid to the example size; the legacy exporter keeps it symbolic
    ("sfnet_lite_stdc1", "legacy"),
])
def test_onnx_dynamic_axes_at_other_sizes(name, exporter):
    torch.manual_seed(0)
    model = create_model(name).eval()
    data, info = export_onnx(model, example_input(SIZE), dynamic=True)
    assert info["exporter"] == exporter
    assert info["verification"]["shapes"] == [[1, 3, *SIZE], [2, 3, SIZE[0] + 32, SIZE[1] + 64]]
    session = _ort(data)
    assert [d if isinstance(d, int) else "sym" for d in session.get_inputs()[0].shape] == ["sym", 3, "sym", "sym"]
    for shape in [(3, 3, 128, 64), (1, 3, 96, 96)]:
        _assert_as_accurate_as_eager(model, lambda t: session.run(None, {"image": t.numpy()})[0], torch.randn(*shape))


def test_legacy_exporter_handles_pyramid_pools_that_do_not_divide_the_map():
    # at 64×96 the 1/32 map is 2×3: PSP bins 3 and 6 do not divide it, which the legacy exporter alone refuses
    torch.manual_seed(0)
    model = create_model("sfnet_lite_stdc1").eval()
    data, info = export_onnx(model, example_input(SIZE), exporter="legacy")
    assert (info["exporter"], info["opset"]) == ("legacy", 17)
    session = _ort(data)
    _assert_as_accurate_as_eager(model, lambda t: session.run(None, {"image": t.numpy()})[0], torch.randn(1, 3, *SIZE))


def test_sliced_adaptive_pool_equals_torch_and_exports_size_free():
    x = torch.randn(2, 4, 13, 5)
    for bins in [(2, 2), (3, 3), (6, 6), (6, 4)]:
        expected = nn.AdaptiveAvgPool2d(bins)(x)
        assert torch.allclose(_SlicedAdaptiveAvgPool2d(bins)(x), expected, atol=1e-6)
    # a PSP-like block: one dynamo export must pool correctly at sizes whose bins have other boundaries
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d(6), nn.Upsample(size=(64, 64))).eval()
    data, _ = export_onnx(model, example_input((64, 96)), dynamic=True, exporter="dynamo")
    session = _ort(data)
    for shape in [(1, 3, 96, 160), (2, 3, 224, 32)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() < 1e-5


def test_onnx_session_for_bench():
    model = create_model("lfd").eval()
    x = torch.randn(1, 3, 64, 64)
    session, input_name, diff = onnx_session(model, x)
    output = session.run(None, {input_name: x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert output.shape == (1, 2, 64, 64)
    assert diff == pytest.approx(float(np.abs(output - expected).max()), abs=1e-7) and diff < 1e-4


class _ExportsDifferently(nn.Module):
    """Deterministic, but adds 1 while it is being exported or traced: every exporter must be caught out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            return x[:, :2] + 1.0
        return x[:, :2]


class _Noisy(nn.Module):
    """Not deterministic (noise of 5 % of the scale): its float32 "error" must not excuse the export's difference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] + 0.05 * x.abs().max() * torch.rand_like(x[:, :2])


def test_verification_rejects_an_export_that_differs():
    x = example_input((32, 32))
    with pytest.raises(AnosegError, match=r"dynamo: .*differs from PyTorch.*; legacy: .*differs from PyTorch"):
        export_onnx(_ExportsDifferently().eval(), x)
    with pytest.raises(AnosegError, match="differs from PyTorch"):
        export_torchscript(_ExportsDifferently().eval(), x)
    with pytest.raises(AnosegError, match="differs from PyTorch"):
        export_torchscript(_Noisy().eval(), x)
    with pytest.raises(ValueError, match="eval"):
        export_onnx(create_model("lfd").train(), x)


def test_dynamic_export_falls_back_when_the_first_exporter_bakes_a_size():
    class Ramp(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :2] * torch.linspace(0.0, 1.0, x.shape[-1])

    with pytest.raises(AnosegError, match="dynamic axes: dynamo: "):
        export_onnx(Ramp().eval(), example_input((64, 64)), dynamic=True, exporter="dynamo")
    _, info = export_onnx(Ramp().eval(), example_input((64, 64)), dynamic=True)
    assert info["exporter"] == "legacy" and info["opset"] == 17
    assert len(info["fallback_from"]) == 1 and info["fallback_from"][0].startswith("dynamo: ")


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory holding an ``lfd`` checkpoint in ``anoseg train``'s format and eval's results for it."""
    torch.manual_seed(0)
    model = create_model("lfd")
    meta = {"dataset": "demo", "task": "anomaly", "generator": "seas", "trained_on": "all", "categories": ["a", "b"],
            "image_size": [64, 64], "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "protocol": "lfd", "seed": 0,
            "class_names": ["good", "defect"]}
    checkpoint = {"format": CHECKPOINT_FORMAT, "model": "lfd", "num_classes": 2, "epoch": 1, "iteration": 4,
                  "state_dict": model.state_dict(), "optimizer": {}, "meta": meta,
                  "history": [{"epoch": 1, "loss": 0.5, "lr": 0.01, "images_per_s": 10.0}]}
    run = tmp_path / "run"
    save_checkpoint(run / "last.pt", checkpoint)
    save_checkpoint(run / "checkpoints" / "epoch_001.pt", checkpoint)
    metrics = {"epoch": 1, "weights_sha256": weights_sha256(checkpoint),
               "categories": {"a": {"pixel_threshold": 0.3}, "b": {"pixel_threshold": 0.5}}}
    write_json(eval_dir(run, 1) / "thresholds.json", thresholds_document(metrics))
    write_json(eval_dir(run, 1) / "metrics.json", metrics)
    return run


def test_export_model_writes_verified_onnx_and_sidecar(run_dir):
    info = export_model(run_dir / "checkpoints" / "epoch_001.pt")  # an epoch checkpoint exports into its run too
    model_file, sidecar_file = run_dir / "export" / "model.onnx", run_dir / "export" / "model.json"
    assert (info["path"], info["sidecar"]) == (str(model_file), str(sidecar_file))
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["model.json", "model.onnx"]  # no temp files left
    sidecar = json.loads(sidecar_file.read_text())
    assert {k: sidecar[k] for k in ["format", "model", "num_classes", "class_names", "image_size", "mean", "std",
                                    "dynamic", "exporter", "opset", "input_shape", "task"]} == {
        "format": "onnx", "model": "lfd", "num_classes": 2, "class_names": ["good", "defect"], "image_size": [64, 64],
        "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "dynamic": False, "exporter": "dynamo", "opset": 18,
        "input_shape": [1, 3, 64, 64], "task": "anomaly"}
    assert sidecar["threshold"] == pytest.approx(0.4)  # mean of the categories' pixel thresholds
    assert sidecar["thresholds"] == {"a": 0.3, "b": 0.5} and sidecar["threshold_source"].endswith("epoch_001")
    assert 0 <= sidecar["verification"]["max_abs_diff"] == info["max_abs_diff"] < 1e-4
    assert sidecar["source"]["epoch"] == 1 and sidecar["training"]["dataset"] == "demo"
    written = onnx.load(str(model_file))  # one self-contained file (no external .data) at the recorded opset
    assert [o.version for o in written.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert [i.name for i in written.graph.input] == ["image"]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_model_torchscript_dynamic(run_dir):
    info = export_model(run_dir / "last.pt", "torchscript", out=run_dir / "deploy" / "lfd.ts", dynamic=True)
    sidecar = json.loads((run_dir / "deploy" / "lfd.json").read_text())
    assert (sidecar["format"], sidecar["opset"], sidecar["dynamic"]) == ("torchscript", None, True)
    assert sidecar["input_shape"] == ["batch", 3, "height", "width"] and info["path"].endswith("lfd.ts")
    loaded = torch.jit.load(str(run_dir / "deploy" / "lfd.ts"))
    assert loaded(torch.randn(2, 3, 96, 128)).shape == (2, 2, 96, 128)


def test_predict_from_onnx_equals_predict_from_checkpoint(run_dir, tmp_path):
    from anoseg.engine.predict import predict

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (height, width) in {"a.png": (64, 64), "b.png": (80, 112)}.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(images / name)
    export_model(run_dir / "last.pt")
    from_checkpoint = predict([images], checkpoint=run_dir / "last.pt", threshold=0.5, out=tmp_path / "ckpt",
                              device="cpu")
    from_onnx = predict([images], model_file=run_dir / "export" / "model.onnx", threshold=0.5, out=tmp_path / "onnx")
    masks = 0
    for a, b in zip(from_checkpoint, from_onnx, strict=True):
        mask_a, mask_b = np.asarray(Image.open(a["mask"])), np.asarray(Image.open(b["mask"]))
        np.testing.assert_array_equal(mask_a, mask_b)
        assert b["score"] == pytest.approx(a["score"], abs=1e-5)
        masks += mask_a.size
        assert 0 < (mask_a > 0).mean() < 1  # the masks are not trivially empty or full
    assert masks == 64 * 64 + 80 * 112


def test_bad_inputs_raise_anoseg_error(run_dir, tmp_path):
    with pytest.raises(AnosegError, match="checkpoint not found"):
        export_model(tmp_path / "missing.pt")
    with pytest.raises(AnosegError, match="--format 'tflite'"):
        export_model(run_dir / "last.pt", "tflite")
    with pytest.raises(AnosegError, match="--exporter"):
        export_model(run_dir / "last.pt", exporter="tensorrt")
    with pytest.raises(AnosegError, match="multiples of 32"):
        export_model(run_dir / "last.pt", image_size=(60, 64))
    with pytest.raises(AnosegError, match="sidecar"):
        export_model(run_dir / "last.pt", out=tmp_path / "model.json")
    (tmp_path / "not_a_checkpoint.pt").write_bytes(b"junk")
    with pytest.raises(AnosegError, match="is not a checkpoint file"):
        export_model(tmp_path / "not_a_checkpoint.pt")
    assert not (run_dir / "export").exists()  # nothing written by a failed export


def test_export_takes_the_threshold_of_the_weights_it_exports_or_refuses(run_dir, tmp_path):
    """Issue 11 item 2: a later epoch's checkpoint must not get the threshold eval found for epoch 1."""
    later = load_checkpoint(run_dir / "last.pt")
    later["epoch"] = 3
    later["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in later["state_dict"].items()}
    save_checkpoint(run_dir / "last.pt", later)
    with pytest.raises(AnosegError, match=r"no decision threshold .*epoch 3.*`anoseg eval --recipe demo --model lfd "
                                          r"--category all --generator seas.* --epoch 3` first, or pass --threshold"):
        export_model(run_dir / "last.pt")
    assert not (run_dir / "export").exists()
    with pytest.raises(AnosegError, match=r"--threshold must be a number in \[0, 1\]"):
        export_model(run_dir / "last.pt", threshold=float("nan"))
    info = export_model(run_dir / "last.pt", threshold=0.25, out=tmp_path / "m.onnx")
    assert (info["threshold"], info["threshold_source"]) == (0.25, "--threshold")
    # the epoch-1 checkpoint still finds its own eval
    assert export_model(run_dir / "checkpoints" / "epoch_001.pt", out=tmp_path / "e1.onnx")["threshold"] == \
        pytest.approx(0.4)
