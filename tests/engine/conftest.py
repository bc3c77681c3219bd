"""A prepared copy of the built-in demo data, shared by the engine tests (built once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from anoseg.data.synth import make_demo_data
from anoseg.jobs import PrepareJob
from anoseg.recipes import load_recipe
from anoseg.stages import run_prepare


@dataclass(frozen=True)
class DemoEnv:
    recipe_file: Path
    output: Path
    data_root: Path


RECIPE = """\
name: demo
task: anomaly
layout: mvtec_ad
data_root: {data_root}
generated_root: {generated_root}
generator: seas
categories: [weave, disk, mesh]
image_size: [{size}, {size}]
num_classes: 2
class_names: [good, defect]
train:
  epochs: 2
  eval_epoch: null
  checkpoint_every: 1
  batch_size: 2
  lr: 0.03  # with batch 2, two epochs learn at every seed and thread count tried (pixel AP 12-56x the defect fraction)
  ohem_min_kept: 5000
  workers: 0
"""


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory) -> DemoEnv:
    root = tmp_path_factory.mktemp("demo")
    paths = make_demo_data(root / "data", seed=0)
    recipe_file = root / "demo.yaml"
    generated_root = Path(paths["generated_root"]).parent
    recipe_file.write_text(RECIPE.format(data_root=paths["data_root"], generated_root=generated_root, size=128))
    output = root / "outputs"
    run_prepare(PrepareJob(load_recipe(recipe_file), output=output))
    return DemoEnv(recipe_file, output, Path(paths["data_root"]))
