"""Provenance of a run's numerics: the device kind string, and where a run records it (checkpoint meta, metrics)."""

from __future__ import annotations

import json
import platform

import pytest
import torch

import anoseg.engine.checkpoint as checkpoint_module
from anoseg.engine.checkpoint import LAST, device_kind, load_checkpoint
from anoseg.engine.evaluate import EvalJob, evaluate
from anoseg.engine.train import TrainJob, _device_history, resolve_precision, train
from anoseg.errors import AnosegError
from anoseg.paths import eval_dir
from anoseg.recipes import load_recipe

XEON = {"model name": "Intel(R) Xeon(R)   Platinum 8481C", "flags": "fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile"}
ZEN5 = {"model name": "AMD EPYC 9B45", "flags": "fpu avx2 avx512f avx512_bf16"}
EPYC = {"model name": "AMD EPYC 7B13", "flags": "fpu avx avx2 fma"}


@pytest.mark.parametrize(("machine", "capability", "info", "expected"), [
    ("x86_64", "AVX512", XEON, "cpu avx512_bf16+amx · Intel(R) Xeon(R) Platinum 8481C"),
    ("x86_64", "AVX512", ZEN5, "cpu avx512_bf16 · AMD EPYC 9B45"),
    ("x86_64", "AVX2", EPYC, "cpu avx2 · AMD EPYC 7B13"),
    # ATEN_CPU_CAPABILITY=avx2 on an AMX machine: ATen's kernels are AVX2, the bf16 units are still there
    ("x86_64", "AVX2", XEON, "cpu avx2+avx512_bf16+amx · Intel(R) Xeon(R) Platinum 8481C"),
    ("aarch64", "SVE256", {"features": "fp asimd sve bf16"}, "cpu arm64+sve256+bf16"),
    ("aarch64", "DEFAULT", {"features": "fp asimd"}, "cpu arm64"),
])
def test_cpu_kind_names_the_isa_level_that_decides_the_numerics(monkeypatch, machine, capability, info, expected):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(checkpoint_module, "_cpuinfo", lambda: info)
    assert device_kind("cpu") == expected


def test_cpu_kind_of_this_machine_reads_its_cpuinfo():
    isa = device_kind(torch.device("cpu")).split(" · ")[0]
    level = str(torch.backends.cpu.get_cpu_capability()).lower()
    assert isa.startswith("cpu arm64") or isa.split()[1].split("+")[0] in (level, "avx512_bf16")


def test_a_resumed_run_on_another_machine_records_both():
    assert _device_history(None, "cpu avx2") == "cpu avx2"
    assert _device_history({"device_kind": "cpu avx2"}, "cpu avx2") == "cpu avx2"
    assert _device_history({"device_kind": "cpu avx2"}, "cuda sm_90 · H100") == "cpu avx2 + cuda sm_90 · H100"
    assert _device_history({}, "cpu avx2") == "unrecorded + cpu avx2"  # started before the field existed


def test_checkpoint_and_metrics_record_precision_and_device(demo_env, tmp_path):
    output = tmp_path / "out"
    (output / "demo" / "seas").mkdir(parents=True)
    for name in ("manifest.csv", "data_report.json"):
        (output / "demo" / "seas" / name).write_bytes((demo_env.output / "demo" / "seas" / name).read_bytes())
    recipe = load_recipe(demo_env.recipe_file).override(image_size=(64, 64), train__epochs=1)
    common = {"recipe": recipe, "model": "lfd", "category": "mesh", "generator": "seas", "output": output,
              "device": "cpu", "seed": 42}
    run = train(TrainJob(**common, backbone_weights="none", precision="32-true"))
    meta = load_checkpoint(run / LAST)["meta"]
    assert meta["precision"] == "32-true" and meta["device_kind"] == device_kind("cpu")
    evaluate(EvalJob(**common, overlays=0))
    written = json.loads((eval_dir(run, 1) / "metrics.json").read_text())
    assert written["precision"] == "32-true"
    assert written["device_kind"] == written["eval_device_kind"] == device_kind("cpu")


def test_fp16_autocast_off_cuda_is_refused_rather_than_recorded_falsely():
    # Lightning trains "16-mixed" on a CPU as bf16-mixed: the checkpoint would record a precision never used
    with pytest.raises(AnosegError, match=r"16-mixed \(fp16 autocast\) needs a CUDA GPU"):
        resolve_precision("16-mixed", torch.device("cpu"))
    assert resolve_precision("16-mixed", torch.device("cuda")) == "16-mixed"
