"""Training that goes wrong keeps what it had: --fresh swap, the run lock, resume rules, a diverging loss, Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import anoseg.engine.train as train_module
from anoseg.cli import main
from anoseg.engine.checkpoint import load_checkpoint


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def md5_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def work(pipeline, tmp_path):
    """A private copy of the pipeline's outputs and the CLI arguments of its training run."""
    out = tmp_path / "out"
    shutil.copytree(pipeline.out, out)
    args = ["train", "--recipe", str(pipeline.recipe), "--model", "lfd", "--category", "disk", "--output", str(out),
            "--backbone-weights", "none", "--device", "cpu"]
    return out, out / "demo" / "seas" / "lfd" / "disk", args


def one_error_line(result, code: int) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return " ".join(lines[0].split())


def test_ctrl_c_during_fresh_before_the_first_save_keeps_the_old_run_and_exits_130(work, monkeypatch):
    out, run, args = work
    before = md5_tree(out)

    def interrupted_save(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save", interrupted_save)
    line = one_error_line(invoke(*args, "--fresh"), 130)
    assert "previous run" in line and str(run) in line
    assert md5_tree(out) == before  # checkpoints, metrics, overlays: all still there, byte for byte


def test_fresh_replaces_the_run_once_the_new_one_has_saved(work):
    _out, run, args = work
    assert (run / "eval").is_dir()
    result = invoke(*args, "--fresh", "--lr", "0.02")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "last.pt")["meta"]["train"]["lr"] == 0.02
    assert not (run / "eval").exists()  # the old run's results went with it
    assert sorted(p.name for p in run.parent.iterdir()) == ["disk"]  # no lock file, no old run left aside


def test_a_crashed_fresh_is_repaired_on_the_next_start(work):
    _out, run, args = work
    before = md5_tree(run)
    run.rename(run.parent / ".disk.old")  # the state a kill during --fresh leaves: old run aside, new one empty
    (run / "checkpoints").mkdir(parents=True)
    line = one_error_line(invoke(*args), 2)
    assert "already holds a trained model" in line
    assert md5_tree(run) == before and not (run.parent / ".disk.old").exists()


def test_a_second_writer_is_refused_with_the_holders_pid(work):
    out, run, args = work
    before = md5_tree(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from anoseg.engine.rundir import run_lock\n"
         "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True); sys.stdin.read()", str(run)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_error_line(invoke(*args, "--fresh"), 2)
        assert f"pid {holder.pid}" in line and str(run) in line
        assert md5_tree(out) == {**before, "demo/seas/lfd/.disk.lock": md5_tree(out)["demo/seas/lfd/.disk.lock"]}
    finally:
        holder.communicate("", timeout=60)
    assert md5_tree(out) == before  # the holder removed its lock file


def test_resume_keeps_the_runs_epoch_count_and_epochs_extends_it(work, monkeypatch):
    _out, run, args = work
    original = train_module.cosine_lr

    def ctrl_c_in_epoch_two(iteration, total, base, low):  # total = 2 epochs of batches
        if iteration == total // 2 + 1:
            raise KeyboardInterrupt
        return original(iteration, total, base, low)

    monkeypatch.setattr(train_module, "cosine_lr", ctrl_c_in_epoch_two)
    line = one_error_line(invoke(*args, "--fresh", "--epochs", "2"), 130)
    assert "epoch 1 is saved" in line and "--resume" in line
    monkeypatch.setattr(train_module, "cosine_lr", original)

    result = invoke(*args, "--resume")  # the recipe says 1 epoch; the run was started for 2
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["meta"]["train"]["epochs"] == 2
    assert "epochs_extended" not in checkpoint["meta"]

    result = invoke(*args, "--resume", "--epochs", "3")
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["epoch"] == 3 and checkpoint["meta"]["epochs_extended"] == [{"at_epoch": 2, "from": 2, "to": 3}]
    history = json.loads((run / "train_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[1]["epochs_extended_to"] == 3


def test_a_diverging_loss_stops_and_keeps_the_last_finite_checkpoint(work, monkeypatch):
    _out, run, args = work
    original = train_module.cosine_lr

    def explode_in_epoch_two(iteration, total, base, low):  # total = 2 epochs of batches
        return 1e7 if iteration >= total // 2 else original(iteration, total, base, low)

    monkeypatch.setattr(train_module, "cosine_lr", explode_in_epoch_two)
    line = one_error_line(invoke(*args, "--fresh", "--epochs", "2"), 2)
    assert "the loss is nan" in line or "the loss is inf" in line
    assert "epoch 2" in line and "epoch 1 is saved" in line and "lower --lr" in line
    assert load_checkpoint(run / "last.pt")["epoch"] == 1  # finite, and eval/predict can use it
    assert len(json.loads((run / "train_history.json").read_text())) == 1


def test_stale_temp_files_of_a_run_are_removed_on_the_next_start(work):
    _out, run, args = work
    stale = run / "checkpoints" / ".epoch_002.k3j4h5.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    result = invoke(*args, "--resume", "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and (run / "checkpoints" / "epoch_002.pt").is_file()


def test_ctrl_c_in_another_command_exits_130(pipeline, monkeypatch):
    import anoseg.engine.predict as predict_module

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "write_predictions", interrupted)
    run = pipeline.out / "demo" / "seas" / "lfd" / "disk"
    one_error_line(invoke("predict", "--checkpoint", str(run / "last.pt"), str(pipeline.data)), 130)


def test_prepare_binds_the_report_to_its_manifest(pipeline):
    folder = pipeline.out / "demo" / "seas"
    report = json.loads((folder / "data_report.json").read_text())
    assert report["manifest_sha256"] == hashlib.sha256((folder / "manifest.csv").read_bytes()).hexdigest()


def test_resume_refuses_train_data_changed_since_the_run_started(work):
    """`prepare` re-run on a changed dataset: --resume would train on other images (and another LR schedule)."""
    import pandas as pd

    out, run, args = work
    manifest = out / "demo" / "seas" / "manifest.csv"
    rows = pd.read_csv(manifest, keep_default_na=False, dtype=str)
    first = rows.index[(rows["split"] == "train") & (rows["category"] == "disk")][0]
    rows.drop(index=first).to_csv(manifest, index=False)  # one train image fewer, as after a re-prepare
    report = out / "demo" / "seas" / "data_report.json"
    doc = json.loads(report.read_text())
    doc["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    report.write_text(json.dumps(doc))
    before = md5_tree(run)
    line = one_error_line(invoke(*args, "--resume", "--epochs", "3"), 2)
    assert "n_train_images" in line and "train_data_sha256" in line and "--fresh" in line
    assert md5_tree(run) == before
