"""The bench: BN folding keeps every model's output, and the JSON it writes has the promised fields."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from anoseg.bench import fold_batchnorm, run_bench
from anoseg.models import MODELS, create_model, list_models


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


def test_run_bench_writes_the_schema_with_the_models_real_costs(tmp_path):
    result = run_bench(["lfd", "lednet"], (64, 64), "cpu", warmup=1, runs=2, output=tmp_path)
    written = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert written["schema"] == "anoseg.bench/1" and [m["model"] for m in written["models"]] == ["lfd", "lednet"]
    assert written["size"] == [64, 64] and written["runs"] == 2 and written["device"] == "cpu"
    for row in result["models"]:
        reference = MODELS[row["model"]].reference
        assert row["params"] == reference.params_2  # used parameters, exactly the authors' count
        # Every map of these fully convolutional models shrinks with the input: MACs at 64² are 1/16 of 256²'s.
        assert row["gmacs"] == pytest.approx(reference.macs_256 / 16 / 1e9, rel=2e-3)
        assert row["fps"] == pytest.approx(1000 / row["latency_ms"])
        assert row["fast_speedup"] == pytest.approx(row["latency_ms"] / row["fast_latency_ms"])
        assert 0 < row["fast_rel_diff"] <= 1e-4  # folding changes float rounding, never the values
        assert row["onnx_latency_ms"] is None  # not asked for
    assert written["models"] == json.loads(json.dumps(result["models"]))


def test_peak_memory_is_the_activations_so_it_grows_with_the_input_area():
    small, large = (run_bench(["lfd"], size, "cpu", warmup=1, runs=1)["models"][0] for size in ((64, 64), (128, 128)))
    assert large["params"] == small["params"] and large["gmacs"] == pytest.approx(4 * small["gmacs"], rel=1e-3)
    assert large["peak_mem_mb"] / small["peak_mem_mb"] == pytest.approx(4, rel=0.1)
