"""Faults judged against an uninterrupted run (issue 23, item 9): a command SIGKILLed at a fixed point and run
again, two processes on one run, a full disk. Each case compares the output files with those of an uninterrupted
run of the same command (``reference``), byte for byte except the ``created`` time stamps of JSON files.

The CLI runs in subprocesses (``tests/fault_child.py`` hooks one function to kill or pause at its N-th call, so the
fault point is deterministic), with relative paths from one working folder so that paths written into files agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("fault_child.py")
RUN = Path("out/demo/seas/lfd/disk")
LAST = str(RUN / "last.pt")
BUSY = "is being written by another anoseg process"


def cli(cwd: Path, *args: str, fault: str | None = None, fsize: int | None = None, wait: bool = True,
        env: dict[str, str] | None = None):
    """``anoseg ARGS`` in ``cwd`` (a subprocess): with ``fault`` through fault_child.py, with ``fsize`` under that
    file size limit (``ulimit -f``). ``wait=False`` returns the ``Popen``."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    argv = [sys.executable, *([str(CHILD)] if fault else ["-m", "anoseg"]), *args]
    if fault:
        environ["ANOSEG_TEST_FAULT"] = fault

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

    process = subprocess.Popen(argv, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=limit if fsize else None)
    if not wait:
        return process
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def one_error_line(result, code: int = 2) -> str:
    """The one ``error:`` line a refused command printed (last on stderr, no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.stderr
    return lines[-1]


def _normalised(path: Path, volatile: frozenset[str]) -> str:
    data = path.read_bytes()
    if path.suffix == ".json":
        def drop(obj):
            if isinstance(obj, dict):
                return {k: drop(v) for k, v in obj.items() if k not in volatile}
            return [drop(v) for v in obj] if isinstance(obj, list) else obj
        data = json.dumps(drop(json.loads(data)), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def tree(root: Path, skip: tuple[str, ...] = ("logs",), volatile: frozenset[str] = frozenset({"created"}),
         suffixes: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too; none in a folder of ``skip``, none ending in ``suffixes``) →
    digest of its content (JSON without the keys ``volatile``: time stamps)."""
    return {str(p.relative_to(root)): _normalised(p, volatile) for p in sorted(root.rglob("*"))
            if p.is_file() and not set(p.relative_to(root).parts) & set(skip) and not p.name.endswith(suffixes)}


#: What two trainings of the same run differ by: their speed (train_history.json, and so the checkpoint files' bytes
#: and the ``checkpoint_sha256`` eval records). Their weights (``weights_sha256``) are the same.
TRAINING_TIMES = frozenset({"created", "images_per_s", "checkpoint_sha256"})


def hidden(root: Path) -> list[str]:
    """What a killed writer could leave under ``root``: hidden staging folders, temporary files, lock files."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def commands(recipe: Path, data: Path) -> dict[str, list[str]]:
    return {
        "prepare": ["prepare", "--recipe", str(recipe), "--output", "out"],
        "train": ["train", "--recipe", str(recipe), "--model", "lfd", "--category", "disk", "--output", "out",
                  "--backbone-weights", "none", "--device", "cpu", "--fresh"],
        "eval": ["eval", "--recipe", str(recipe), "--model", "lfd", "--category", "disk", "--output", "out",
                 "--device", "cpu", "--overlays", "1"],
        "export": ["export", "--checkpoint", LAST],
        "predict": ["predict", "--checkpoint", LAST, str(data / "mvtec" / "disk" / "test"), "--out", "pred"],
        "report": ["report", "--output", "out"],
    }


@pytest.fixture(scope="module")
def reference(pipeline, tmp_path_factory) -> Path:
    """A working folder holding the pipeline's outputs plus an uninterrupted eval, export, predict and report."""
    root = tmp_path_factory.mktemp("reference")
    shutil.copytree(pipeline.out, root / "out")
    cmds = commands(pipeline.recipe, pipeline.data)
    for name in ("eval", "export", "predict", "report"):
        result = cli(root, *cmds[name])
        assert result.returncode == 0, result.stderr
    assert not hidden(root / "out") and not hidden(root / "pred")
    return root


@pytest.fixture
def work(reference, pipeline, tmp_path):
    """A copy of the reference folder and the commands, run from it."""
    shutil.copytree(reference, tmp_path / "w")
    return tmp_path / "w", commands(pipeline.recipe, pipeline.data)


# ---- SIGKILL, then the same command again --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill:anoseg.engine.results:publish:1",  # everything staged, not yet published
                                   "kill:pathlib:Path.rename:2"],  # the old result moved aside, the new not yet in
                         ids=["before-publish", "between-renames"])
def test_a_killed_eval_run_again_matches_an_uninterrupted_one(work, reference, fault):
    root, cmds = work
    killed = cli(root, *cmds["eval"], fault=fault)
    assert killed.returncode == -9, killed.stderr
    assert hidden(root / RUN / "eval")  # the kill point was reached: something was left half-done
    again = cli(root, *cmds["eval"])
    assert again.returncode == 0, again.stderr
    assert tree(root / RUN / "eval") == tree(reference / RUN / "eval")
    assert hidden(root / RUN / "eval") == []
    assert not (root / RUN.parent / ".disk.lock").exists()


@pytest.mark.slow
def test_a_killed_predict_run_again_matches_an_uninterrupted_one(work, reference):
    root, cmds = work
    shutil.rmtree(root / "pred")
    killed = cli(root, *cmds["predict"], fault="kill:anoseg.engine.results:publish:1")
    assert killed.returncode == -9, killed.stderr
    assert hidden(root) and not (root / "pred").exists()
    again = cli(root, *cmds["predict"])
    assert again.returncode == 0, again.stderr
    assert tree(root / "pred") == tree(reference / "pred")
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_an_export_killed_between_its_two_files_is_refused_by_predict_then_redone(work, reference):
    """The pair must never mix: a model from one export with the sidecar (threshold) of another."""
    root, cmds = work
    other = cli(root, *cmds["export"], "--dynamic", "--threshold", "0.3")  # a different model and threshold
    assert other.returncode == 0, other.stderr
    killed = cli(root, *cmds["export"], fault="kill:anoseg.io:atomic_path:2")  # after the first of the two files
    assert killed.returncode == -9, killed.stderr
    model = str(RUN / "export" / "model.onnx")
    predict = ["predict", "--model-file", model, *cmds["predict"][3:-1], "pred2"]
    mixed = cli(root, *predict)
    assert "not from the same `anoseg export`" in one_error_line(mixed)
    assert not (root / "pred2").exists()
    again = cli(root, *cmds["export"])
    assert again.returncode == 0, again.stderr
    assert tree(root / RUN / "export") == tree(reference / RUN / "export")
    assert cli(root, *predict).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("name, nth", [("prepare", 2), ("prepare", 3), ("report", 2)])
def test_a_killed_prepare_or_report_run_again_matches_an_uninterrupted_one(work, reference, name, nth):
    root, cmds = work
    killed = cli(root, *cmds[name], fault=f"kill:anoseg.io:atomic_path:{nth}")
    assert killed.returncode == -9, killed.stderr
    again = cli(root, *cmds[name])
    assert again.returncode == 0, again.stderr
    visible = [p for p in tree(root / "out") if not any(part.startswith(".") for part in Path(p).parts)]
    assert {p: tree(root / "out")[p] for p in visible} == tree(reference / "out")
    if name == "prepare":  # its folder's lock lets it clear the temporary files the killed one left
        assert hidden(root / "out") == []


# ---- two processes on one run ------------------------------------------------------------------------------------

def _paused(root: Path, args: list[str], fault: str):
    """Start ``args`` paused at ``fault``; return the process and the file that lets it go on."""
    ready, go = root / "ready", root / "go"
    process = cli(root, *args, fault=fault, wait=False, env={"FAULT_READY": str(ready), "FAULT_GO": str(go)})
    deadline = time.monotonic() + 240
    while not ready.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the first process never reached its pause point"
        time.sleep(0.1)
    return process, go


@pytest.mark.slow
@pytest.mark.parametrize("second", ["eval", "train"])
def test_a_second_process_on_a_run_being_evaluated_is_refused(work, reference, second):
    """eval+eval and eval+train --fresh: the second is refused (exit 2, one line) and the first's result is the
    uninterrupted one; the run's checkpoints are untouched."""
    root, cmds = work
    checkpoints = tree(root / RUN / "checkpoints")
    log = root / RUN / "logs" / "eval" / "metrics.csv"
    rows = len(log.read_text().splitlines())
    first, go = _paused(root, cmds["eval"], "pause:anoseg.engine.results:publish:1")
    try:
        refused = cli(root, *cmds[second])
        assert BUSY in one_error_line(refused)
    finally:
        go.touch()
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert tree(root / RUN / "eval") == tree(reference / RUN / "eval")
    assert tree(root / RUN / "checkpoints") == checkpoints
    assert len(log.read_text().splitlines()) == rows + 1  # one eval logged its row, once
    assert hidden(root / RUN) == []


@pytest.mark.slow
def test_an_eval_of_a_run_being_trained_is_refused(work):
    root, cmds = work
    first, go = _paused(root, cmds["train"], "pause:anoseg.engine.train:save_epoch:1")
    try:
        refused = cli(root, *cmds["eval"])
        assert BUSY in one_error_line(refused)
    finally:
        go.touch()
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert not (root / RUN / "eval").exists()  # --fresh replaced the run; no eval of the old weights slipped in
    assert hidden(root / RUN.parent) == []


# ---- a full disk mid-write -------------------------------------------------------------------------------------------

FULL = 4096  # bytes: below every output these commands write, above nothing they must write first


@pytest.mark.slow
@pytest.mark.parametrize("name", ["prepare", "train", "eval", "export", "predict", "report"])
def test_a_full_disk_is_one_line_exit_2_and_keeps_every_earlier_output(work, name):
    root, cmds = work
    if name == "predict":
        shutil.rmtree(root / "pred")
    before = tree(root, skip=())
    result = cli(root, *cmds[name], fsize=FULL)
    line = one_error_line(result)
    assert "file too large" in line and "writing " in line and ".tmp" not in line and ".partial-" not in line, line
    assert tree(root, skip=()) == before  # nothing replaced, nothing half-written left (hidden files included)


def test_a_write_truncated_at_the_size_limit_is_refused_not_kept(tmp_path):
    """PIL's JPEG encoder writes in one call and ignores a short count: past ``ulimit -f`` it used to leave a
    truncated file and report success."""
    script = ("import sys, numpy as np; from PIL import Image; from anoseg.errors import AnosegError; "
              "from anoseg.io import write_with\n"
              "picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))\n"
              "try:\n    write_with(sys.argv[1], lambda tmp: picture.save(tmp, format='JPEG', quality=95))\n"
              "except AnosegError as exc:\n    print(exc)\n")
    target = tmp_path / "overlay.jpg"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FULL, resource.RLIM_INFINITY))

    result = subprocess.run([sys.executable, "-c", script, str(target)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, preexec_fn=limit, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"file too large (past the file size limit, ulimit -f) writing {target}")
    assert list(tmp_path.iterdir()) == []


def test_what_a_killed_publish_left_is_cleared_and_a_result_moved_aside_is_put_back(tmp_path):
    from anoseg.engine import results

    target = tmp_path / "eval" / "epoch_001"
    aside = tmp_path / "eval" / ".epoch_001.old-abc"  # publish's first rename done, its second not
    aside.mkdir(parents=True)
    (aside / "metrics.json").write_text("{}")
    (tmp_path / "eval" / ".epoch_001.partial-xyz").mkdir()
    (tmp_path / "eval" / ".epoch_002.partial-xyz").mkdir()  # another result's: not ours to clear
    removed = results.remove_leftovers(target)
    assert [p.name for p in removed] == [".epoch_001.partial-xyz"]
    assert (target / "metrics.json").read_text() == "{}"
    assert sorted(p.name for p in target.parent.iterdir()) == [".epoch_002.partial-xyz", "epoch_001"]


@pytest.mark.slow
def test_a_killed_sweep_run_again_resumes_and_matches_an_uninterrupted_one(reference, pipeline, tmp_path):
    """Killed after its cell's training, before the eval: the rerun evaluates only, and the cell's run and result are
    those of a sweep that was never interrupted."""
    sweep = ["sweep", "--recipe", str(pipeline.recipe), "--model", "lfd", "--generator", "seas", "--category", "disk",
             "--seed", "7",
             "--output", "out", "--device", "cpu", "--executor", "debug", "--no-report", "--name", "faults"]
    results = {}
    for name, fault in (("uninterrupted", None), ("killed", "kill:anoseg.sweep:_run_logged:2")):
        root = tmp_path / name
        shutil.copytree(reference / "out", root / "out")
        first = cli(root, *sweep, fault=fault)
        if fault:
            assert first.returncode == -9, first.stderr
            trained = {p: p.stat().st_mtime_ns for p in (root / "out").rglob("*.pt")}
            first = cli(root, *sweep)
            assert {p: p.stat().st_mtime_ns for p in (root / "out").rglob("*.pt")} == trained  # not trained again
        assert first.returncode == 0, first.stderr
        summary = json.loads((root / "out" / "sweeps" / "faults" / "summary.json").read_text())
        runs = [p for p in (root / "out").rglob("last.pt") if "7" in str(p.relative_to(root))]
        assert len(runs) == 1, runs
        results[name] = (tree(runs[0].parent, volatile=TRAINING_TIMES, suffixes=(".pt",)), summary.get("counts"),
                         hidden(root / "out"))
    killed, uninterrupted = results["killed"][0], results["uninterrupted"][0]
    assert sorted(k for k in killed.keys() | uninterrupted.keys() if killed.get(k) != uninterrupted.get(k)) == []
    assert results["killed"][1:] == results["uninterrupted"][1:]
