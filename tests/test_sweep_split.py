"""``split.real_fraction`` (and ``split.val``) as a sweep axis: one variant per value, each prepared with its own
split, every variant scored on the same test images."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from anoseg.data.synth import make_demo_data
from anoseg.errors import AnosegError
from anoseg.jobs import PrepareJob
from anoseg.paths import manifest_path
from anoseg.recipes import load_recipe
from anoseg.stages import run_prepare
from anoseg.sweep import SweepSpec, expand, parse_assignments, write_recipes

RECIPE = """\
name: tiny
layout: mvtec_ad
data_root: {root}/data/mvtec
generated_root: {root}/data/generated
generator: seas
categories: [weave, disk, mesh]
image_size: [32, 32]
train:
  epochs: 1
  eval_epoch: null
  workers: 0
"""


def test_real_fraction_is_a_sweep_axis_with_paired_test_sets(tmp_path: Path) -> None:
    make_demo_data(tmp_path / "data", seed=0)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE.format(root=tmp_path))
    settings, grid = parse_assignments(["split.real_fraction=0", "split.real_fraction=0.3333333333333333",
                                        "split.val=0.2"])
    assert grid == {"split.real_fraction": (0, 0.3333333333333333)} and settings == {"split.val": 0.2}
    plan = expand(SweepSpec(name="rf", recipe=str(recipe), models=("lfd",), generators=("seas",), seeds=(0,),
                            settings=settings, grid=grid), tmp_path / "out")
    assert [v.tag for v in plan.variants] == ["split.real_fraction=0", "split.real_fraction=0.3333333333333333"]
    write_recipes(plan)
    tests = []
    for variant, fraction in zip(plan.variants, (0.0, 1 / 3), strict=True):
        derived = load_recipe(variant.recipe_file)
        assert derived.split.real_fraction == pytest.approx(fraction) and derived.split.val == 0.2
        run_prepare(PrepareJob(derived, output=variant.output))
        manifest = pd.read_csv(manifest_path(variant.output, "tiny", "seas"), keep_default_na=False)
        real_train = manifest[(manifest["split"] != "test") & (manifest["source"] == "real") & (manifest["label"] == 1)]
        assert real_train.empty == (fraction == 0)
        tests.append(manifest[manifest["split"] == "test"].reset_index(drop=True))
    pd.testing.assert_frame_equal(tests[0], tests[1])


def test_a_bad_split_override_fails_before_any_work(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE.format(root=tmp_path))
    for item, words in (("split.real_fraction=2", "split.real_fraction"), ("split.val=1", "split.val"),
                        ("split.hold=0.1", "split.hold")):
        settings, grid = parse_assignments([item])
        with pytest.raises(AnosegError, match=words):
            expand(SweepSpec(name="rf", recipe=str(recipe), models=("lfd",), generators=("seas",), seeds=(0,),
                             settings=settings, grid=grid), tmp_path / "out")
