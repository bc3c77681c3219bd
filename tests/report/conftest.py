"""Fixtures of the report tests: a hand-made outputs/ folder in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import GOLDEN_RUNS, write_bench, write_metrics


@pytest.fixture
def golden_outputs(tmp_path: Path) -> Path:
    """Two segmenters × two generators × two categories; SANet-S + SeaS lacks ``metal_nut``."""
    outputs = tmp_path / "outputs"
    for (generator, model), categories in GOLDEN_RUNS.items():
        write_metrics(outputs, "mvtec_ad", generator, model, "all", categories)
    write_bench(outputs)
    return outputs
