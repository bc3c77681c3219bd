"""anoseg sweep: grid expansion, dry-run, seed folders, skip-on-resume, resuming a stopped run, failure records."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from anoseg.cli import main
from anoseg.errors import AnosegError
from anoseg.paths import DEFAULT_SEED, eval_dir, run_dir
from anoseg.sweep import EngineOptions, SweepSpec, expand, parse_assignments, run_sweep

RECIPE = """\
name: tiny
task: anomaly
layout: mvtec_ad
data_root: {data_root}
generated_root: {generated_root}
generator: seas
categories: [weave, disk, mesh]
image_size: [32, 32]
train:
  epochs: 1
  eval_epoch: null
  checkpoint_every: 1
  batch_size: 4
  ohem_min_kept: 200
  workers: 0
"""


@pytest.fixture(scope="module")
def tiny_data(tiny) -> Path:
    """The tiny recipe with its data written (the demo data: three categories of 160² images)."""
    from anoseg.data.synth import make_demo_data

    make_demo_data(tiny.parent / "data", seed=0)
    return tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A recipe file over the demo data at 32×32, one epoch (the data is only written by the tests that train)."""
    root = tmp_path_factory.mktemp("sweep")
    recipe = root / "tiny.yaml"
    recipe.write_text(RECIPE.format(data_root=root / "data" / "mvtec", generated_root=root / "data" / "generated"))
    return recipe


def spec(recipe: Path, **changes) -> SweepSpec:
    values = {"name": "t", "recipe": str(recipe), "models": ("lfd", "lednet"), "generators": ("seas", "perlin"),
              "seeds": (0, 1), "device": "cpu", "backbone_weights": "none"}
    return SweepSpec(**{**values, **changes})


def test_expansion_is_the_full_grid_with_one_folder_per_seed(tiny, tmp_path):
    plan = expand(spec(tiny, seeds=(0, DEFAULT_SEED), grid={"train.lr": (0.01, 0.03)},
                       settings={"train.epochs": 2}), tmp_path / "out")
    assert len(plan.cells) == 2 * 2 * 2 * 2
    assert plan.cells[0].variant.tag == "train.lr=0.01" and plan.cells[-1].variant.tag == "train.lr=0.03"
    # order inside a variant: seed, then generator, then model
    assert [(c.seed, c.generator, c.model) for c in plan.cells[:4]] == [
        (0, "seas", "lfd"), (0, "seas", "lednet"), (0, "perlin", "lfd"), (0, "perlin", "lednet")]
    runs = {c.run for c in plan.cells}
    assert len(runs) == len(plan.cells)  # no two cells share a run folder
    first = plan.cells[0]
    out = tmp_path / "out" / "train.lr=0.01"
    assert first.run == out / "tiny" / "seas" / "lfd" / "seed_0" / "all"
    default = next(c for c in plan.cells if c.seed == DEFAULT_SEED)
    assert default.run == out / "tiny" / "seas" / "lfd" / "all"  # the default seed keeps today's folder
    assert all(c.variant.epochs == 2 and c.result_epoch == 2 for c in plan.cells)
    assert not (tmp_path / "out").exists()  # expanding writes nothing


def test_run_dir_seed_level_only_for_other_seeds():
    assert run_dir("o", "d", "g", "m", "all") == Path("o/d/g/m/all")
    assert run_dir("o", "d", "g", "m", "bottle", seed=3) == Path("o/d/g/m/seed_3/bottle")


def test_per_category_recipes_give_one_cell_per_category(tiny, tmp_path):
    plan = expand(spec(tiny, models=("lfd",), generators=("seas",), seeds=(0,), settings={"train.unified": False}),
                  tmp_path)
    assert [c.category for c in plan.cells] == ["weave", "disk", "mesh"]


def test_bad_sweeps_fail_before_any_work(tiny, tmp_path):
    with pytest.raises(AnosegError, match="unknown setting"):
        expand(spec(tiny, settings={"train.epoch": 2}), tmp_path)
    with pytest.raises(AnosegError, match="nosuchnet"):
        expand(spec(tiny, models=("lfd", "nosuchnet")), tmp_path)
    with pytest.raises(AnosegError, match="same cell twice"):
        expand(spec(tiny, seeds=(0, 0)), tmp_path)
    with pytest.raises(AnosegError, match="KEY=VALUE"):
        parse_assignments(["train.epochs"])


def test_set_once_is_a_setting_twice_is_an_axis():
    settings, grid = parse_assignments(["train.epochs=3", "train.lr=0.01", "train.lr=0.03", "train.augment=[hflip]"])
    assert settings == {"train.epochs": 3, "train.augment": ["hflip"]}
    assert grid == {"train.lr": (0.01, 0.03)}


def test_dry_run_prints_cells_and_commands_and_writes_nothing(tiny, tmp_path):
    sweep_file = tmp_path / "grid.yaml"
    sweep_file.write_text(f"recipe: {tiny}\nmodels: [lfd, lednet]\ngenerators: [seas]\nseeds: [0, 1]\n"
                          "device: cpu\nset: {train.epochs: 2}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["sweep", str(sweep_file), "--output", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("prepare seas: anoseg prepare --recipe ")
    cells = [line for line in lines if line.startswith("[")]
    assert [c.split(" → ")[0] for c in cells] == [
        "[1/4] lfd · seas · all · seed 0", "[2/4] lednet · seas · all · seed 0",
        "[3/4] lfd · seas · all · seed 1", "[4/4] lednet · seas · all · seed 1"]
    train = [line.strip() for line in lines if line.strip().startswith("anoseg train")]
    assert len(train) == 4 and "--model lednet" in train[3] and "--seed 1" in train[3]
    assert all("--recipe" in t and "grid/recipes/recipe.yaml" in t for t in train)  # the derived recipe
    assert sum(line.strip().startswith("anoseg eval") and "--epoch 2" in line for line in lines) == 4
    assert not out.exists()


def test_sweep_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [lfd]\ngenrators: [seas]\n")
    result = CliRunner().invoke(main, ["sweep", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "unknown key(s) genrators" in result.output


@pytest.mark.slow
def test_local_executor_runs_skips_resumes_and_records_failures(tiny_data, tmp_path, monkeypatch):
    """On submitit's LocalExecutor (worker processes), two at a time:

    - mesh trains and evaluates; a bogus category fails at train, a generator without pairs fails at prepare, with
      their one-line errors, and the other cells still run;
    - a second sweep skips the finished cell (its checkpoint is not rewritten);
    - a run stopped after 1 of 2 epochs is continued with --resume, not redone.
    """
    tiny = tiny_data
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out"
    options = EngineOptions(executor="local", jobs=2, timeout_min=30)
    first = expand(spec(tiny, models=("lfd",), generators=("seas", "nopairs"), seeds=(0,),
                        categories=("mesh", "bogus")), out)
    with pytest.raises(AnosegError, match="3 of 4 cell"):
        run_sweep(first, options, report=False)
    summary = json.loads((first.records / "summary.json").read_text())
    status = {(c["generator"], c["category"]): (c["status"], c["error"]) for c in summary["cells"]}
    assert status[("seas", "mesh")] == ("done", None)
    assert status[("seas", "bogus")][0] == "failed" and "category 'bogus' is not in the manifest" in status[
        ("seas", "bogus")][1]
    assert all(status[("nopairs", c)][0] == "failed" and status[("nopairs", c)][1].startswith("prepare failed")
               for c in ("mesh", "bogus"))
    assert summary["counts"] == {"done": 1, "skipped": 0, "failed": 3}
    done = next(c for c in first.cells if c.category == "mesh" and c.generator == "seas")
    metrics = json.loads((eval_dir(done.run, 1) / "metrics.json").read_text())
    assert metrics["epoch"] == 1 and list(metrics["categories"]) == ["mesh"]
    assert done.run == out / "tiny" / "seas" / "lfd" / "seed_0" / "mesh"
    stamp = (done.run / "last.pt").stat().st_mtime_ns

    # the same sweep again: the finished cell is skipped before submission and nothing of it is rewritten
    again = expand(spec(tiny, models=("lfd",), generators=("seas",), seeds=(0,), categories=("mesh",)), out)
    summary = run_sweep(again, options, report=False)
    assert summary["counts"] == {"done": 0, "skipped": 1, "failed": 0}
    assert (done.run / "last.pt").stat().st_mtime_ns == stamp

    # a stopped run: 1 of 2 epochs trained; the sweep resumes it (history keeps epoch 1) and evaluates epoch 2
    longer = expand(spec(tiny, models=("lfd",), generators=("seas",), seeds=(0,), categories=("mesh",),
                         settings={"train.epochs": 2}), out)
    cell = longer.cells[0]
    assert cell.run == done.run
    assert (eval_dir(done.run, 1) / "metrics.json").is_file()  # a result, but of another checkpoint
    epoch_one = json.loads((done.run / "train_history.json").read_text())
    summary = run_sweep(longer, options, report=False)
    assert summary["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    history = json.loads((done.run / "train_history.json").read_text())
    # epoch 1 is kept, not retrained (train marks where the run was extended to 2 epochs)
    assert len(history) == 2 and {k: history[0][k] for k in epoch_one[0]} == epoch_one[0]
    assert json.loads((eval_dir(done.run, 2) / "metrics.json").read_text())["epoch"] == 2
    log = Path(json.loads((longer.records / "cells" / f"{cell.key}.json").read_text())["log"]).read_text()
    trains = [line for line in log.splitlines() if line.startswith("$ ") and " train " in line]
    assert len(trains) == 2 and not trains[0].endswith("--resume") and trains[1].endswith("--resume")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
            if any(text in a for a in args) and "anoseg.cli" in args and "sweep" not in args:
                found.append(" ".join(args))
    return found


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_sweep_killed_mid_way_continues_without_redoing_finished_cells(tiny_data, tmp_path):
    """Two cells one after the other; SIGTERM while the second trains; the same command again finishes the sweep:
    the first cell is skipped (its checkpoint untouched), the second resumes its stopped run; nothing is left running
    after the kill."""
    sweep_file = tmp_path / "kill.yaml"
    sweep_file.write_text(f"recipe: {tiny_data}\nmodels: [lfd]\ngenerators: [seas]\ncategories: [mesh]\n"
                          "seeds: [0, 1]\ndevice: cpu\nbackbone_weights: none\nset: {train.epochs: 6}\n")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "anoseg.cli", "sweep", str(sweep_file), "--output", str(out), "--jobs", "1",
            "--no-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = out / "tiny" / "seas" / "lfd" / "seed_0" / "mesh"
    second = out / "tiny" / "seas" / "lfd" / "seed_1" / "mesh"
    sweep = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 900
    while not (0 < _epochs(second) < 6):
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be stopped"
        time.sleep(0.2)
    sweep.send_signal(signal.SIGTERM)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 2 and "interrupted" in stderr and "Traceback" not in stderr
    time.sleep(3)  # the workers die with their controller; give the kernel a moment
    assert _processes_mentioning(str(out)) == []
    assert (eval_dir(first, 6) / "metrics.json").is_file() and not eval_dir(second, 6).exists()
    stopped_at, history = _epochs(second), json.loads((second / "train_history.json").read_text())
    stamp = (first / "last.pt").stat().st_mtime_ns

    again = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    summary = json.loads((out / "sweeps" / "kill" / "summary.json").read_text())
    assert summary["counts"] == {"done": 1, "skipped": 1, "failed": 0}
    assert (first / "last.pt").stat().st_mtime_ns == stamp
    resumed = json.loads((second / "train_history.json").read_text())
    assert len(resumed) == 6 and resumed[:stopped_at] == history[:stopped_at]
    log = (out / "sweeps" / "kill" / "logs" / "lfd__seas__mesh__seed_1.log").read_text()
    assert [line.endswith("--resume") for line in log.splitlines() if line.startswith("$ ") and " train " in line] \
        == [False, True]


def _epochs(run: Path) -> int:
    try:
        return len(json.loads((run / "train_history.json").read_text()))
    except (OSError, ValueError):
        return 0


def test_debug_executor_records_a_failing_prepare_for_every_cell_it_feeds(tmp_path):
    """In-process (DebugExecutor): data that is not there fails prepare once per generator, in one line, and every
    cell of that generator is recorded as failed with it; the summary lists them."""
    recipe = tmp_path / "missing.yaml"
    recipe.write_text(RECIPE.format(data_root=tmp_path / "nowhere", generated_root=tmp_path / "nothing"))
    plan = expand(spec(recipe, models=("lfd",), generators=("seas",), seeds=(0, 1)), tmp_path / "out")
    with pytest.raises(AnosegError, match="2 of 2 cell"):
        run_sweep(plan, EngineOptions(executor="debug"), report=False)
    summary = json.loads((plan.records / "summary.json").read_text())
    assert summary["counts"] == {"done": 0, "skipped": 0, "failed": 2}
    errors = {c["error"] for c in summary["cells"]}
    assert len(errors) == 1 and errors.pop().startswith("prepare failed: ") and "\n" not in summary["cells"][0]["error"]
    assert (plan.records / "logs" / "prepare__seas.log").is_file()


def test_slurm_executor_gets_the_cluster_settings_and_a_clear_error_off_cluster(tmp_path, monkeypatch):
    from anoseg.sweep import make_executor

    options = EngineOptions(executor="slurm", jobs=3, timeout_min=90, slurm_partition="gpu", slurm_gpus_per_job=1,
                            slurm_cpus_per_job=8)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(AnosegError, match="SLURM login node"):
        make_executor(options, tmp_path / "jobs", None)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    executor = make_executor(options, tmp_path / "jobs", None)  # submitit takes srun on the PATH for a cluster
    settings = executor._executor.parameters
    assert executor.cluster == "slurm"
    assert (settings["partition"], settings["gpus_per_node"], settings["cpus_per_task"], settings["time"]) == (
        "gpu", 1, 8, 90)
