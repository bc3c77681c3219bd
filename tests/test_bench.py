"""The bench: BN folding keeps every model's output, and the JSON it writes has the promised fields."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from anoseg.bench import fold_batchnorm, run_bench
from anoseg.models import create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_folded_model_equals_eager_and_has_fewer_batchnorms(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():  # random BN statistics, so folding is not a no-op
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    folded = fold_batchnorm(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        expected, got = model(x), folded(x)
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())
    count = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) < count


def test_run_bench_writes_the_schema(tmp_path):
    result = run_bench(["lfd", "lednet"], (64, 64), "cpu", warmup=1, runs=2, output=tmp_path)
    written = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert written["schema"] == "anoseg.bench/1" and [m["model"] for m in written["models"]] == ["lfd", "lednet"]
    for row in result["models"]:
        assert row["params"] > 0 and row["gmacs"] > 0 and row["latency_ms"] > 0 and row["fast_speedup"] > 0
        assert row["peak_mem_mb"] > 0 and row["fast_rel_diff"] <= 1e-4
