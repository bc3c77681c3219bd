"""The GPU path (issue 21 §3), proven where a CUDA GPU is there: every precision trains, ``--resume`` is bit-exact,
fused SGD and channels-last are used, eval / predict / ONNX Runtime run on the GPU, a GPU-trained checkpoint is
evaluated, predicted and exported on the CPU, ``--devices 2`` DDP over NCCL, ``--compile``.

Every test is marked ``gpu`` and skips, saying why, without CUDA (``pytest -m gpu tests/gpu -v``; bench/gpu_check.sh
runs them with the bench). The data is the demo set's ``mesh`` category at 64², so the module takes about a minute
on one GPU (``--compile`` most of it).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

# cuBLAS is deterministic only with a fixed workspace; it must be set before cuBLAS starts (the first matmul)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here (torch.cuda.is_available() is False); "
                       "run on a GPU machine: bash bench/gpu_check.sh"),
]

RECIPE = """\
name: demo
task: anomaly
layout: mvtec_ad
data_root: {data_root}
generated_root: {generated_root}
generator: seas
categories: [weave, disk, mesh]
image_size: [64, 64]
num_classes: 2
class_names: [good, defect]
train:
  epochs: 2
  eval_epoch: null
  checkpoint_every: 1
  batch_size: 4
  lr: 0.01
  ohem_min_kept: 1000
  workers: 0
"""


@dataclass(frozen=True)
class Project:
    recipe_file: Path
    output: Path  # holds the prepared manifest only; each test trains in its own copy (``outputs``)
    data_root: Path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    from anoseg.data.synth import make_demo_data
    from anoseg.jobs import PrepareJob
    from anoseg.recipes import load_recipe
    from anoseg.stages import run_prepare

    root = tmp_path_factory.mktemp("gpu")
    paths = make_demo_data(root / "data", seed=0)
    recipe_file = root / "demo.yaml"
    recipe_file.write_text(RECIPE.format(data_root=paths["data_root"],
                                         generated_root=Path(paths["generated_root"]).parent))
    run_prepare(PrepareJob(load_recipe(recipe_file), output=root / "prepared"))
    return Project(recipe_file, root / "prepared", Path(paths["data_root"]))


def outputs(project: Project, folder: Path) -> Path:
    """A fresh outputs root with the prepared manifest (one run folder per test)."""
    target = folder / "outputs" / "demo" / "seas"
    target.mkdir(parents=True)
    for name in ("manifest.csv", "data_report.json"):
        shutil.copy(project.output / "demo" / "seas" / name, target / name)
    return folder / "outputs"


def train_job(project: Project, output: Path, **overrides):
    from anoseg.engine.train import TrainJob
    from anoseg.recipes import load_recipe

    settings = {"recipe": load_recipe(project.recipe_file), "model": "lfd", "category": "mesh", "generator": "seas",
                "output": output, "device": "cuda", "seed": 42, "backbone_weights": "none"}
    return TrainJob(**{**settings, **overrides})


def one_epoch(project: Project):
    from anoseg.recipes import load_recipe

    return load_recipe(project.recipe_file).override(train__epochs=1)


def eval_job(project: Project, output: Path, device: str):
    from anoseg.engine.evaluate import EvalJob
    from anoseg.recipes import load_recipe

    return EvalJob(recipe=load_recipe(project.recipe_file), model="lfd", category="mesh", generator="seas",
                   output=output, device=device, overlays=0)


def sample_images(project: Project) -> list[Path]:
    return sorted((project.data_root / "mesh" / "test").rglob("*.png"))[:6]


@pytest.fixture(scope="module")
def gpu_run(project, tmp_path_factory) -> Path:
    """A run trained on the GPU in fp32 (2 epochs) and evaluated there: the checkpoint the CPU tests load."""
    from anoseg.engine.evaluate import evaluate
    from anoseg.engine.train import train

    output = outputs(project, tmp_path_factory.mktemp("gpu_run"))
    run = train(train_job(project, output, precision="32-true"))
    evaluate(eval_job(project, output, "cuda"))
    return run


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_trains_in_each_precision_and_records_it(project, tmp_path, precision):
    from anoseg.engine.checkpoint import LAST, load_checkpoint
    from anoseg.engine.train import train

    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")
    run = train(train_job(project, outputs(project, tmp_path), precision=precision, recipe=one_epoch(project)))
    checkpoint = load_checkpoint(run / LAST)  # refuses non-finite weights
    assert checkpoint["meta"]["precision"] == precision
    assert checkpoint["meta"]["device_kind"].startswith("cuda sm_")
    losses = [entry["loss"] for entry in checkpoint["history"]]
    assert len(losses) == 1 and all(math.isfinite(loss) for loss in losses), losses


def test_resume_after_an_interruption_is_bit_exact_on_the_gpu(project, tmp_path, monkeypatch):
    import anoseg.engine.train as train_module
    from anoseg.engine.checkpoint import LAST, load_checkpoint
    from anoseg.errors import AnosegError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        straight = train_module.train(train_job(project, outputs(project, tmp_path / "a"), precision="32-true"))
    original = train_module.cosine_lr

    def interrupt_in_epoch_two(iteration, total, base, low):
        if iteration == total // 2 + 1:  # in the middle of the second epoch, like Ctrl-C
            raise KeyboardInterrupt
        return original(iteration, total, base, low)

    interrupted = train_job(project, outputs(project, tmp_path / "b"), precision="32-true")
    monkeypatch.setattr(train_module, "cosine_lr", interrupt_in_epoch_two)
    with pytest.raises(AnosegError, match="--resume"):
        train_module.train(interrupted)
    assert load_checkpoint(interrupted.run / LAST)["epoch"] == 1
    monkeypatch.setattr(train_module, "cosine_lr", original)
    train_module.train(train_job(project, interrupted.output, precision="32-true", resume=True))
    expected, got = (load_checkpoint(run / LAST)["state_dict"] for run in (straight, interrupted.run))
    # the CUDA ops without a deterministic kernel warn (use_deterministic_algorithms(warn_only=True)): name them
    nondeterministic = sorted({str(w.message).split(" does not")[0] for w in caught
                               if "deterministic" in str(w.message)})
    differ = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}; nondeterministic ops: {nondeterministic}"


def test_fused_sgd_channels_last_and_pinned_memory_on_cuda(project, tmp_path, monkeypatch):
    import anoseg.engine.train as train_module

    built = {}
    setup = train_module.setup

    def keep(state, rows):
        built["trainer"] = setup(state, rows)
        return built["trainer"]

    monkeypatch.setattr(train_module, "setup", keep)
    train_module.train(train_job(project, outputs(project, tmp_path / "fast"), precision="32-true"))
    trainer = built["trainer"]
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # Fabric wraps it
    assert optimizer.defaults.get("fused") is True
    convolutions = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert convolutions and all(p.is_cuda and p.is_contiguous(memory_format=torch.channels_last)
                                for p in convolutions if min(p.shape[2:]) > 1)
    assert trainer.loader.pin_memory
    # the authors' numerics: per-parameter SGD, NCHW
    train_module.train(train_job(project, outputs(project, tmp_path / "paper"), paper_numerics=True))
    optimizer = getattr(built["trainer"].optimizer, "optimizer", built["trainer"].optimizer)
    assert not optimizer.defaults.get("fused") and optimizer.defaults.get("foreach") is False
    assert all(p.is_contiguous() for p in built["trainer"].model.parameters())


def test_eval_and_predict_on_the_gpu_agree_with_the_cpu(project, gpu_run, tmp_path):
    import json

    from anoseg.bench import strict_fp32
    from anoseg.engine.checkpoint import LAST
    from anoseg.engine.evaluate import evaluate
    from anoseg.engine.predict import load_predictor, predict
    from anoseg.paths import eval_dir

    output = gpu_run.parents[3]
    written = json.loads((eval_dir(gpu_run, 2) / "metrics.json").read_text())
    assert written["eval_device_kind"].startswith("cuda") and written["device_kind"].startswith("cuda")
    with strict_fp32(torch.device("cuda")):  # TF32 convolutions would round the maps to ~1e-3
        on_gpu = evaluate(eval_job(project, output, "cuda"))
    on_cpu = evaluate(eval_job(project, output, "cpu"))  # the GPU-trained checkpoint, evaluated on the CPU
    for metric in ("pixel_ap", "pixel_auroc", "image_auroc", "pixel_f1max"):
        assert on_cpu["mean"][metric] == pytest.approx(on_gpu["mean"][metric], abs=1e-3), metric
    # with the defaults (TF32 convolutions on the GPU) the logits agree to ~1e-3 of their scale
    run_gpu, meta = load_predictor(gpu_run / LAST, None, "cuda")
    run_cpu, _ = load_predictor(gpu_run / LAST, None, "cpu")
    assert meta["device"] == "cuda"
    batch = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    expected = run_cpu(batch)
    assert np.abs(run_gpu(batch) - expected).max() <= 1e-2 * max(1.0, float(np.abs(expected).max()))
    rows = {}
    for device in ("cuda", "cpu"):
        found = predict(sample_images(project), checkpoint=gpu_run / LAST, threshold=0.5, device=device,
                        out=tmp_path / device, overlays=False)
        rows[device] = {str(r["image"]): float(r["score"]) for r in found}
    assert rows["cuda"].keys() == rows["cpu"].keys() and len(rows["cuda"]) == len(sample_images(project))
    for name, score in rows["cuda"].items():
        assert score == pytest.approx(rows["cpu"][name], abs=1e-2), name


def test_a_gpu_trained_checkpoint_exports_on_the_cpu_and_runs_in_onnx_runtime(project, gpu_run, tmp_path):
    from anoseg.engine.checkpoint import LAST
    from anoseg.engine.inference import ort_has_cuda
    from anoseg.engine.predict import load_predictor
    from anoseg.export import export_model

    info = export_model(gpu_run / LAST, "onnx", out=tmp_path / "model.onnx")
    assert info["training"]["device_kind"].startswith("cuda") and info["verification"]["max_abs_diff"] < 1e-3
    run_cpu, meta = load_predictor(None, tmp_path / "model.onnx", "cpu")
    assert meta["device"] == "cpu"
    batch = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    expected = run_cpu(batch)
    if not ort_has_cuda():
        pytest.skip("onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu); CPU part passed")
    run_gpu, meta = load_predictor(None, tmp_path / "model.onnx", "cuda")
    assert meta["device"] == "cuda"
    assert np.abs(run_gpu(batch) - expected).max() <= 1e-2 * max(1.0, float(np.abs(expected).max()))


def test_compile_trains_and_saves_plain_weights(project, tmp_path):
    from anoseg.engine.checkpoint import LAST, build_model, load_checkpoint
    from anoseg.engine.train import train

    run = train(train_job(project, outputs(project, tmp_path), precision="32-true", compile=True,
                          recipe=one_epoch(project)))
    checkpoint = load_checkpoint(run / LAST)
    assert all(math.isfinite(entry["loss"]) for entry in checkpoint["history"])
    assert not any(key.startswith("_orig_mod.") for key in checkpoint["state_dict"])
    build_model(checkpoint)  # loads into the plain network on the CPU


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="--devices 2 needs two CUDA GPUs")
def test_ddp_on_two_gpus_trains_and_saves_once(project, tmp_path):
    from anoseg.engine.checkpoint import load_checkpoint

    output = outputs(project, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "anoseg", "train", "--recipe", str(project.recipe_file), "--output", str(output),
         "--model", "lfd", "--generator", "seas", "--category", "mesh", "--epochs", "1",
         "--backbone-weights", "none", "--device", "cuda", "--devices", "2"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("checkpoints:") == 1  # rank 0 alone speaks
    checkpoint = load_checkpoint(output / "demo" / "seas" / "lfd" / "mesh" / "last.pt")
    assert checkpoint["meta"]["devices"] == 2 and checkpoint["meta"]["device_kind"].startswith("cuda")
    assert all(math.isfinite(entry["loss"]) for entry in checkpoint["history"])
