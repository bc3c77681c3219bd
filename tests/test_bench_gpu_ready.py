"""What `anoseg bench` needs on a GPU, checked on the CPU: warm-up excluded from the median, larger batches timed for
throughput, the fast-path check in strict fp32, the device kind recorded, ONNX Runtime's provider named."""

from __future__ import annotations

import json
import time

import pytest
import torch

import anoseg.engine.checkpoint as checkpoint_module
import anoseg.engine.predict as predict_module
from anoseg.bench import run_bench, strict_fp32, time_forward
from anoseg.engine.checkpoint import device_kind
from anoseg.errors import AnosegError


def test_warmup_passes_are_run_but_not_in_the_median():
    calls = []

    def forward(x):
        calls.append(len(calls))
        time.sleep(0.05 if len(calls) <= 3 else 0.0)  # the first passes are slow (allocation, autotuning, compiling)

    latency = time_forward(forward, torch.zeros(1), warmup=3, runs=5)
    assert len(calls) == 8 and latency < 20


def test_a_cuda_input_is_synchronised_before_and_after_every_pass(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: events.append("sync"))

    class OnCuda:  # stands for a CUDA tensor: time_forward only looks at its device
        device = torch.device("cuda")

    time_forward(lambda x: events.append("pass"), OnCuda(), warmup=2, runs=3)
    assert events == ["sync", "pass", "sync"] * 5  # kernels are asynchronous: without it, launch time is measured


def test_strict_fp32_turns_tf32_off_on_cuda_only_and_restores_it():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with strict_fp32(torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32
        with strict_fp32(torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_a_larger_batch_is_timed_for_throughput_on_every_path(tmp_path):
    result = run_bench(["lfd"], (64, 64), "cpu", warmup=1, runs=2, onnx=True, batches=(1, 4), output=tmp_path)
    written = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert written["batches"] == [1, 4] and written["device_kind"] == device_kind("cpu")
    row = result["models"][0]
    assert row["onnx_provider"] == "cpu" and row["onnx_latency_ms"] > 0
    four = row["batches"]["4"]
    for path in ("", "fast_", "onnx_"):
        assert four[f"{path}images_per_s"] == pytest.approx(4000 / four[f"{path}latency_ms"])
    assert written["models"][0]["batches"] == json.loads(json.dumps(row["batches"]))


def test_a_batch_below_one_is_refused():
    with pytest.raises(AnosegError, match="--batch 0"):
        run_bench(["lfd"], (64, 64), "cpu", batches=(1, 0))


def test_predicting_an_onnx_file_on_cuda_without_the_cuda_provider_is_one_error(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoint_module, "resolve_device", lambda device, devices=1: torch.device("cuda"))
    monkeypatch.setattr(predict_module, "ort_has_cuda", lambda: False)
    with pytest.raises(AnosegError, match="--device cuda: this onnxruntime has no CUDAExecutionProvider"):
        predict_module.load_predictor(None, tmp_path / "model.onnx", "cuda")
    with pytest.raises(AnosegError, match="model file not found"):  # auto falls back to the CPU provider
        predict_module.load_predictor(None, tmp_path / "model.onnx", "auto")
