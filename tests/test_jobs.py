"""Every command is one stage call with one typed job: the CLI parses options into the job, the stage applies the rules.

The stages are replaced by recorders here, so these tests check what each command hands over (and nothing runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from anoseg import jobs, stages
from anoseg.cli import main
from anoseg.constants import ALL_CATEGORIES
from anoseg.errors import AnosegError
from anoseg.recipes import load_recipe


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, object]]:
    """Replace every ``stages.run_*`` by a recorder of (stage name, job)."""
    seen: list[tuple[str, object]] = []
    for name in [n for n in dir(stages) if n.startswith("run_")]:
        monkeypatch.setattr(stages, name, lambda job, _name=name: seen.append((_name, job)))
    return seen


def invoke(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def test_every_command_is_one_stage_call_with_its_job(calls, tmp_path: Path) -> None:
    invoke("synth", "--out", str(tmp_path / "demo"), "--seed", "3")
    invoke("prepare", "--recipe", "demo", "--generator", "seas", "--category", "disk, pill", "--lenient",
           "--mask-threshold", "127", "--dry-run")
    invoke("init", str(tmp_path))
    invoke("train", "--model", "lfd", "--category", "disk", "--epochs", "3", "--lr", "0.02", "--resume",
           "--download-weights", "--seed", "7")
    invoke("eval", "--model", "sanet_s", "--protocol", "lfd-compat", "--resolution", "native", "--aupro")
    invoke("report", "--dataset", "demo", "--format", "csv", "--no-figures", "--aupro")
    invoke("bench", "--model", "lfd,lednet", "--size", "64", "96", "--runs", "2")
    invoke("generate", "--method", "cutpaste", "--category", "all", "--count", "2")
    invoke("sweep", "--models", "lfd", "--seeds", "0,1", "--set", "train.epochs=2", "--dry-run")
    invoke("models", "--names-only")
    assert [name for name, _ in calls] == ["run_synth", "run_prepare", "run_init", "run_train", "run_eval",
                                           "run_report", "run_bench", "run_generate", "run_sweep", "run_models"]
    job = dict(calls)
    assert job["run_synth"] == jobs.SynthJob(out=tmp_path / "demo", seed=3)

    prepare = job["run_prepare"]
    assert isinstance(prepare, jobs.PrepareJob) and prepare.recipe.generator == "seas"
    assert (prepare.categories, prepare.strict, prepare.mask_threshold, prepare.dry_run) == (("disk", "pill"), False,
                                                                                             127, True)
    init = job["run_init"]
    assert isinstance(init, jobs.InitJob) and (init.recipe.layout, init.recipe.data_root) == ("folder", tmp_path)

    train = job["run_train"]
    assert isinstance(train, jobs.TrainRunsJob) and (train.model, train.categories, train.epochs) == ("lfd",
                                                                                                     ("disk",), 3)
    assert (train.recipe.train.epochs, train.recipe.train.lr, train.seed) == (3, 0.02, 7)
    assert train.resume and train.download_weights and not train.fresh

    evaluate = job["run_eval"]
    assert isinstance(evaluate, jobs.EvalRunsJob) and evaluate.categories is None  # the recipe's mode, decided later
    assert (evaluate.model, evaluate.protocol, evaluate.resolution, evaluate.aupro) == ("sanet_s", "lfd-compat",
                                                                                       "native", True)
    assert job["run_report"] == jobs.ReportJob(dataset="demo", fmt="csv", figures=False,
                                               extra_metrics=("pixel_aupro",))
    assert job["run_bench"] == jobs.BenchJob(models=("lfd", "lednet"), size=(64, 96), runs=2)

    generate = job["run_generate"]
    assert (generate.method, generate.categories, generate.count) == ("cutpaste", (ALL_CATEGORIES,), 2)
    sweep = job["run_sweep"]
    assert (sweep.models, sweep.seeds, sweep.assignments, sweep.dry_run) == (("lfd",), ("0", "1"),
                                                                            ("train.epochs=2",), True)
    assert job["run_models"] == jobs.ModelsJob(names_only=True)


def test_training_runs_follow_the_recipe_mode_unless_named() -> None:
    recipe = load_recipe("demo")
    assert recipe.train.unified
    assert stages.training_runs(recipe, None) == [ALL_CATEGORIES]
    assert stages.training_runs(recipe, ("disk", "pill")) == ["disk", "pill"]
    per_category = recipe.override(train__unified=False)
    assert stages.training_runs(per_category, None) == list(recipe.categories)


def test_stage_rules_apply_to_jobs_from_any_caller(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ANOSEG_DOWNLOAD_WEIGHTS", raising=False)
    recipe = load_recipe("demo")
    with pytest.raises(AnosegError, match="--resume and --fresh contradict"):
        stages.run_train(jobs.TrainRunsJob(recipe, "lfd", output=tmp_path, resume=True, fresh=True,
                                           download_weights=True))
    assert "ANOSEG_DOWNLOAD_WEIGHTS" not in os.environ  # refused before anything is changed
    with pytest.raises(AnosegError, match="seeds must be whole numbers"):
        stages.run_sweep(jobs.SweepJob(models=("lfd",), seeds=("0", "x"), output=tmp_path, dry_run=True))
    assert not any(tmp_path.iterdir())
