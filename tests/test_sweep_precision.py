"""A sweep says when the seeds of one cell trained in different precisions (issue 21 §2)."""

from __future__ import annotations

from pathlib import Path

from anoseg.paths import eval_dir
from anoseg.runid import EvalRecord
from anoseg.sweep import SweepSpec, expand, precision_warnings

RECIPE = """\
name: tiny
task: anomaly
layout: mvtec_ad
data_root: data/mvtec
generator: seas
categories: [weave, mesh]
image_size: [32, 32]
train:
  epochs: 1
  eval_epoch: null
"""


def plan(tmp_path: Path, seeds: tuple[int, ...]):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    return expand(SweepSpec(name="t", recipe=str(recipe), models=("lfd",), generators=("seas", "none"), seeds=seeds,
                            device="cpu"), tmp_path / "out", cwd=tmp_path)


def evaluated(cell, precision: str | None) -> None:
    """The cell's metrics.json, with ``precision`` (None: a file older than the field)."""
    record = EvalRecord(task="anomaly", dataset="tiny", generator=cell.generator, model=cell.model,
                        trained_on=cell.category, protocol="clean", epoch=cell.result_epoch,
                        categories={"mesh": {"image_auroc": 0.5}}, seed=cell.seed, precision=precision)
    record.write(eval_dir(cell.run, cell.result_epoch))


def test_seeds_of_one_cell_in_two_precisions_are_named(tmp_path):
    sweep = plan(tmp_path, (0, 1, 2))
    for cell in sweep.cells:  # seas: seed 2 on an fp32-only machine; none: every seed alike
        evaluated(cell, "32-true" if cell.generator == "seas" and cell.seed == 2 else "bf16-mixed")
    assert precision_warnings(sweep) == [
        "lfd · seas · all: seeds trained in different precisions (32-true: seed 2; bf16-mixed: seeds 0, 1); the "
        "report's mean over them mixes them (cells on machines with and without native bf16 under --precision auto)"]


def test_uniform_cells_and_old_or_missing_results_give_no_warning(tmp_path):
    sweep = plan(tmp_path, (0, 1))
    for cell in sweep.cells:
        if cell.seed == 0:
            evaluated(cell, "32-true")
        elif cell.generator == "seas":
            evaluated(cell, None)  # written before the field: unknown, not "different"
    assert precision_warnings(sweep) == []
