"""Options beyond the authors' recipe: linear warm-up before the cosine, its validation, resume of older runs, and
bench/parity.py's ``--set`` / ``--variant`` (docs/beyond.md)."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import math
from pathlib import Path

import pytest

from anoseg.engine import rundir
from anoseg.engine.train import TrainJob, cosine_lr, scheduled_lr, train
from anoseg.errors import AnosegError
from anoseg.recipes import load_recipe

REPO = Path(__file__).resolve().parents[2]


def bench_parity():
    spec = importlib.util.spec_from_file_location("bench_parity_beyond", REPO / "bench" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_warmup_the_schedule_is_lfds_cosine():
    for i in range(40):
        assert scheduled_lr(i, 40, 0.01, 1e-5) == cosine_lr(i, 40, 0.01, 1e-5)
    assert scheduled_lr(0, 40, 0.01, 1e-5) == 0.01


def test_warmup_rises_linearly_then_the_cosine_spans_the_remaining_steps():
    lrs = [scheduled_lr(i, 20, 0.01, 1e-5, warmup=4) for i in range(20)]
    assert lrs[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01], rel=1e-12)
    assert lrs[4] == pytest.approx(0.01, rel=1e-12)  # the cosine starts at the base lr after the warm-up
    assert lrs[4:] == pytest.approx([cosine_lr(i, 16, 0.01, 1e-5) for i in range(16)], rel=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    # the run ends where the plain cosine ends (one step before reaching min_lr)
    assert math.isclose(lrs[-1], cosine_lr(15, 16, 0.01, 1e-5))


@pytest.mark.parametrize("value", ["-1", "2.5", "'5'"])
def test_warmup_iters_is_validated_like_the_other_recipe_fields(tmp_path, value):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: x\ntrain: {{warmup_iters: {value}}}\n")
    with pytest.raises(AnosegError, match=r"train\.warmup_iters"):
        load_recipe(path)


def test_shipped_recipes_keep_the_paper_schedule():
    for name in ("mvtec_ad", "visa", "mvtec_3d_ad", "demo"):
        assert load_recipe(name).train.warmup_iters == 0


def test_a_warmup_as_long_as_the_run_is_refused_before_the_run_folder_is_made(demo_env):
    recipe = load_recipe(demo_env.recipe_file).override(train__warmup_iters=10_000)
    job = TrainJob(recipe=recipe, model="lfd", category="disk", generator="seas", output=demo_env.output,
                   device="cpu", seed=7, backbone_weights="none")
    with pytest.raises(AnosegError, match=r"warmup_iters 10000 must be below the run's \d+ steps"):
        train(job)
    assert not job.run.exists()


def test_a_run_saved_before_warmup_existed_resumes_and_a_changed_warmup_is_refused(tmp_path):
    current = {"seed": 0, "train": {"epochs": 4, "lr": 0.01, "warmup_iters": 0}}
    old = {"meta": {"seed": 0, "train": {"epochs": 4, "lr": 0.01}}, "epoch": 2, "history": [{}, {}]}
    assert rundir.plan_resume(old, current, None, tmp_path / "last.pt").start_epoch == 2
    with pytest.raises(AnosegError, match="warmup_iters 0 → 5"):
        rundir.plan_resume(old, {**current, "train": {**current["train"], "warmup_iters": 5}}, None,
                           tmp_path / "last.pt")


def test_bench_set_and_variant_parse_train_settings():
    parity = bench_parity()
    assert parity.train_setting("train.warmup_iters=10") == ("warmup_iters", 10)
    assert parity.variant("aug:train.augment=[hflip,vflip],train.epochs=16") == (
        "aug", {"augment": ["hflip", "vflip"], "epochs": 16})
    for bad in ("warmup_iters=10", "train.=3", "noequals"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"train\.KEY=VALUE"):
            parity.train_setting(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="new label"):
        parity.variant("anoseg:train.epochs=3")


def test_bench_summary_compares_each_variant_with_anoseg_and_averages_categories_per_seed():
    parity = bench_parity()
    metrics = parity.METRICS

    def side(a: list[float], b: list[float]) -> dict:
        return {"a": {m: a for m in metrics}, "b": {m: b for m in metrics}}

    table = parity.summarise({"anoseg": side([10.0, 12.0, 14.0], [0.0, 2.0, 4.0]),
                              "warm": side([11.0, 13.0, 15.0], [2.0, 4.0, 6.0])})
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in table.splitlines()[2:]}
    assert "warm − anoseg (t, p)" in table.splitlines()[0]
    # per-seed means over categories a and b: anoseg 5, 7, 9; warm 6.5, 8.5, 10.5
    mean_row = rows[("mean", "pixel_ap")]
    assert "7.0 ± 2.0 (3)" in mean_row and "8.5 ± 2.0 (3)" in mean_row and "+1.5 (" in mean_row
    assert "+1.0 (" in rows[("a", "iou")] and "+2.0 (" in rows[("b", "iou")]
