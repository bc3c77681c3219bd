"""Outputs the user cannot write, output paths that are something else, damaged files of anoseg's own and checkpoints
that are not what they claim: each is one line on stderr, exit 2, no traceback, and nothing changed.

Each case runs against a copy of the tiny pipeline's outputs (tests/conftest.py, plus one export) and compares every
file's md5 and every folder's name (data and outputs) before and after: a refused command leaves no partial staging
folder, no temporary file and no half-replaced pair behind. Read-only places are made with ``chattr +i`` (root ignores
permission bits); the cases that need it are skipped where the file system keeps no such flag.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fixtures import sandbox, snapshot

from anoseg.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


RUN = "{out}/demo/seas/lfd/disk"
LAST = RUN + "/last.pt"
TRAIN = ["train", "--recipe", "{recipe}", "--model", "lfd", "--category", "disk", "--output", "{out}",
         "--backbone-weights", "none", "--device", "cpu"]
RESUME = [*TRAIN, "--resume", "--epochs", "2"]
EVAL = ["eval", "--recipe", "{recipe}", "--model", "lfd", "--category", "disk", "--output", "{out}",
        "--device", "cpu", "--overlays", "1"]
PREPARE = ["prepare", "--recipe", "{recipe}", "--output", "{out}"]
IMAGES = "{data}/mvtec/disk/test/crack"
PREDICT = ["predict", "--checkpoint", LAST, IMAGES]
PREDICT_ONNX = ["predict", "--model-file", RUN + "/export/model.onnx", IMAGES, "--out", "{tmp}/pred"]
EXPORT = ["export", "--checkpoint", LAST]
REPORT = ["report", "--output", "{out}", "--no-figures"]
GENERATE = ["generate", "--method", "perlin", "--recipe", "{recipe}", "--count", "1", "--category", "disk"]
BENCH = ["bench", "--model", "lfd", "--runs", "1", "--warmup", "0", "--size", "64", "64", "--device", "cpu",
         "--output", "{out}"]
SWEEP = ["sweep", "--recipe", "{recipe}", "--model", "lfd", "--generator", "seas", "--category", "disk",
         "--output", "{out}", "--executor", "debug", "--set", "train.epochs=1", "--device", "cpu", "--no-report"]


# ---- what each case changes before it runs (part of the "before" tree) ---------------------------------------------

def immutable(*paths: str):
    """``chattr +i`` on each path (a folder is created when absent): not even root may change it."""
    def setup(env: dict, frozen: list[Path]) -> None:
        for text in paths:
            path = Path(text.format(**env))
            if not path.exists():
                path.mkdir(parents=True)
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                pytest.skip("chattr +i is not available here (not root, or a file system without inode flags)")
            frozen.append(path)
    return setup


def removed(text: str):
    def setup(env: dict, frozen: list[Path]) -> None:
        path = Path(text.format(**env))
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return setup


def a_file(text: str):
    """A plain file at ``text`` (replacing a folder there)."""
    def setup(env: dict, frozen: list[Path]) -> None:
        path = Path(text.format(**env))
        if path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a file\n")
    return setup


def a_folder(text: str):
    """An empty folder at ``text`` (replacing a file there)."""
    def setup(env: dict, frozen: list[Path]) -> None:
        path = Path(text.format(**env))
        path.unlink(missing_ok=True)
        path.mkdir(parents=True)
    return setup


def truncated(text: str):
    def setup(env: dict, frozen: list[Path]) -> None:
        path = Path(text.format(**env))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return setup


def written(text: str, content: bytes):
    def setup(env: dict, frozen: list[Path]) -> None:
        path = Path(text.format(**env))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return setup


def edited_json(text: str, change):
    """Load the JSON file, let ``change(document)`` edit it in place (as a user with an editor would), write it."""
    def setup(env: dict, frozen: list[Path]) -> None:
        path = Path(text.format(**env))
        document = json.loads(path.read_text())
        change(document)
        path.write_text(json.dumps(document))
    return setup


def edited_checkpoint(change):
    """``last.pt`` rewritten as ``change(checkpoint)`` returns it."""
    def setup(env: dict, frozen: list[Path]) -> None:
        path = Path(LAST.format(**env))
        torch.save(change(torch.load(path, weights_only=True)), path)
    return setup


def both(*setups):
    def setup(env: dict, frozen: list[Path]) -> None:
        for step in setups:
            step(env, frozen)
    return setup


def without(key: str):
    return lambda c: {k: v for k, v in c.items() if k != key}


def with_meta(**values):
    return lambda c: {**c, "meta": {**c["meta"], **values}}


def meta_without(key: str):
    return lambda c: {**c, "meta": {k: v for k, v in c["meta"].items() if k != key}}


PICKLED = with_meta(note=argparse.Namespace(a=1))  # an arbitrary object: torch.load(weights_only=True) refuses it
UNWRITABLE, FILE_IN_THE_WAY, FOLDER_IN_THE_WAY = "cannot write", "is a file, not a folder", "is a folder, not a file"
DAMAGED, INCOMPLETE, FOREIGN = "is damaged", "not a complete anoseg checkpoint", "cannot read checkpoint"

CASES = [
    # 1. places the user cannot write (immutable folder or file among the outputs)
    ("eval-eval-folder-immutable", EVAL, immutable(RUN + "/eval"), UNWRITABLE),
    ("eval-result-immutable", EVAL, immutable(RUN + "/eval/epoch_001"), UNWRITABLE),
    ("eval-save-scores-result-immutable", [*EVAL, "--save-scores"], immutable(RUN + "/eval/epoch_001"), UNWRITABLE),
    ("eval-run-immutable-no-eval-yet", EVAL, both(removed(RUN + "/eval"), immutable(RUN)), UNWRITABLE),
    ("eval-curve-log-immutable", EVAL, immutable(RUN + "/logs/eval/metrics.csv"), UNWRITABLE),
    ("prepare-dataset-folder-immutable", PREPARE, immutable("{out}/demo/seas"), UNWRITABLE),
    ("prepare-manifest-immutable", PREPARE, immutable("{out}/demo/seas/manifest.csv"), UNWRITABLE),
    ("prepare-data-report-immutable", PREPARE, immutable("{out}/demo/seas/data_report.json"), UNWRITABLE),
    ("prepare-output-immutable", PREPARE, both(removed("{out}/demo"), immutable("{out}")), UNWRITABLE),
    ("report-output-immutable", REPORT, immutable("{out}"), UNWRITABLE),
    ("report-markdown-immutable", REPORT, both(written("{out}/report.md", b"old\n"), immutable("{out}/report.md")),
     UNWRITABLE),
    ("report-figures-immutable", REPORT[:-1], immutable("{out}/report_figures"), UNWRITABLE),
    ("report-csv-immutable", [*REPORT, "--format", "csv"],
     both(written("{out}/report.csv", b"old\n"), immutable("{out}/report.csv")), UNWRITABLE),
    ("report-out-folder-immutable", [*REPORT, "--out", "{tmp}/ro/r.md"], immutable("{tmp}/ro"), UNWRITABLE),
    ("export-folder-immutable", EXPORT, immutable(RUN + "/export"), UNWRITABLE),
    ("export-model-immutable", EXPORT, immutable(RUN + "/export/model.onnx"), UNWRITABLE),
    ("export-sidecar-immutable", EXPORT, immutable(RUN + "/export/model.json"), UNWRITABLE),
    ("export-out-folder-immutable", [*EXPORT, "--out", "{tmp}/ro/m.onnx"], immutable("{tmp}/ro"), UNWRITABLE),
    ("predict-out-parent-immutable", [*PREDICT, "--out", "{tmp}/ro/pred"], immutable("{tmp}/ro"), UNWRITABLE),
    ("predict-overwrite-immutable", [*PREDICT, "--out", "{tmp}/ro", "--overwrite"], immutable("{tmp}/ro"),
     UNWRITABLE),
    ("eval-old-result-file-immutable", EVAL, immutable(RUN + "/eval/epoch_001/metrics.csv"), "cannot replace"),
    ("predict-overwrite-file-immutable", [*PREDICT, "--out", "{tmp}/p", "--overwrite"],
     both(written("{tmp}/p/predictions.csv", b"image\n"), immutable("{tmp}/p/predictions.csv")), "cannot replace"),
    ("train-fresh-file-immutable", [*TRAIN, "--fresh"], immutable(RUN + "/train_history.json"), "cannot replace"),
    ("generate-overwrite-file-immutable", [*GENERATE, "--out", "{tmp}/gen", "--overwrite"],
     both(written("{tmp}/gen/disk/perlin/image/0.png", b"x"), immutable("{tmp}/gen/disk/perlin/image/0.png")),
     "cannot replace"),
    ("train-resume-history-immutable", RESUME, immutable(RUN + "/train_history.json"), UNWRITABLE),
    ("train-resume-last-immutable", RESUME, immutable(LAST), UNWRITABLE),
    ("train-resume-log-folder-immutable", RESUME, immutable(RUN + "/logs/csv"), UNWRITABLE),
    ("train-cache-parent-immutable", [*TRAIN, "--fresh"], both(removed("{out}/demo/seas/cache"),
                                                               immutable("{out}/demo/seas")), UNWRITABLE),
    ("synth-parent-immutable", ["synth", "--out", "{tmp}/ro/demo"], immutable("{tmp}/ro"), UNWRITABLE),
    ("synth-out-immutable", ["synth", "--out", "{tmp}/ro"], immutable("{tmp}/ro"), UNWRITABLE),
    ("generate-parent-immutable", [*GENERATE, "--out", "{tmp}/ro/gen"], immutable("{tmp}/ro"), UNWRITABLE),
    ("sweep-output-immutable", SWEEP, immutable("{out}"), UNWRITABLE),
    ("bench-output-immutable", BENCH, immutable("{out}"), UNWRITABLE),
    # 2. an output path that already is something else
    ("prepare-output-below-a-file", [*PREPARE[:-1], "{tmp}/f/out"], a_file("{tmp}/f"), FILE_IN_THE_WAY),
    ("prepare-dataset-folder-is-a-file", PREPARE, both(removed("{out}/demo"), a_file("{out}/demo")),
     FILE_IN_THE_WAY),
    ("prepare-manifest-is-a-folder", PREPARE, a_folder("{out}/demo/seas/manifest.csv"), FOLDER_IN_THE_WAY),
    ("prepare-data-report-is-a-folder", PREPARE, a_folder("{out}/demo/seas/data_report.json"), FOLDER_IN_THE_WAY),
    ("eval-eval-folder-is-a-file", EVAL, a_file(RUN + "/eval"), FILE_IN_THE_WAY),
    ("eval-result-is-a-file", EVAL, a_file(RUN + "/eval/epoch_001"), FILE_IN_THE_WAY),
    ("eval-logs-is-a-file", EVAL, a_file(RUN + "/logs"), FILE_IN_THE_WAY),
    ("report-out-below-a-file", [*REPORT, "--out", "{tmp}/f/r.md"], a_file("{tmp}/f"), FILE_IN_THE_WAY),
    ("report-markdown-is-a-folder", REPORT, a_folder("{out}/report.md"), FOLDER_IN_THE_WAY),
    ("report-figures-is-a-file", REPORT[:-1], a_file("{out}/report_figures"), FILE_IN_THE_WAY),
    ("export-out-below-a-file", [*EXPORT, "--out", "{tmp}/f/m.onnx"], a_file("{tmp}/f"), FILE_IN_THE_WAY),
    ("export-folder-is-a-file", EXPORT, a_file(RUN + "/export"), FILE_IN_THE_WAY),
    ("export-sidecar-is-a-folder", EXPORT, a_folder(RUN + "/export/model.json"), FOLDER_IN_THE_WAY),
    ("predict-out-below-a-file", [*PREDICT, "--out", "{tmp}/f/p"], a_file("{tmp}/f"), FILE_IN_THE_WAY),
    ("synth-out-below-a-file", ["synth", "--out", "{tmp}/f/demo"], a_file("{tmp}/f"), FILE_IN_THE_WAY),
    ("generate-out-below-a-file", [*GENERATE, "--out", "{tmp}/f/g"], a_file("{tmp}/f"), FILE_IN_THE_WAY),
    ("train-model-folder-is-a-file", TRAIN, both(removed("{out}/demo/seas/lfd"), a_file("{out}/demo/seas/lfd")),
     FILE_IN_THE_WAY),
    ("train-resume-history-is-a-folder", RESUME, a_folder(RUN + "/train_history.json"), FOLDER_IN_THE_WAY),
    ("train-cache-is-a-file", [*TRAIN, "--fresh"], a_file("{out}/demo/seas/cache"), FILE_IN_THE_WAY),
    ("sweep-sweeps-is-a-file", SWEEP, a_file("{out}/sweeps"), FILE_IN_THE_WAY),
    ("bench-folder-is-a-file", BENCH, a_file("{out}/bench"), FILE_IN_THE_WAY),
    # 3. damaged files of anoseg's own
    ("eval-data-report-mask-threshold-edited", EVAL,
     edited_json("{out}/demo/seas/data_report.json", lambda d: d.update(mask_threshold="x")), DAMAGED),
    ("train-data-report-truncated", [*TRAIN, "--fresh"], truncated("{out}/demo/seas/data_report.json"), DAMAGED),
    ("predict-thresholds-truncated", [*PREDICT, "--out", "{tmp}/p"], truncated(RUN + "/eval/epoch_001/thresholds.json"),
     DAMAGED),
    ("predict-thresholds-word", [*PREDICT, "--out", "{tmp}/p"],
     edited_json(RUN + "/eval/epoch_001/thresholds.json", lambda d: d.update(categories={"disk": "high"})), DAMAGED),
    ("predict-thresholds-list", [*PREDICT, "--out", "{tmp}/p"],
     edited_json(RUN + "/eval/epoch_001/thresholds.json", lambda d: d.update(categories=[0.5])), DAMAGED),
    ("predict-thresholds-above-1", [*PREDICT, "--out", "{tmp}/p"],
     edited_json(RUN + "/eval/epoch_001/thresholds.json", lambda d: d.update(categories={"disk": 7})), DAMAGED),
    ("export-thresholds-word", EXPORT,
     edited_json(RUN + "/eval/epoch_001/thresholds.json", lambda d: d.update(categories={"disk": "high"})), DAMAGED),
    ("predict-sidecar-truncated", PREDICT_ONNX, truncated(RUN + "/export/model.json"), DAMAGED),
    ("predict-sidecar-without-mean", PREDICT_ONNX, edited_json(RUN + "/export/model.json", lambda d: d.pop("mean")),
     DAMAGED),
    ("predict-sidecar-a-list", PREDICT_ONNX, written(RUN + "/export/model.json", b"[]"), DAMAGED),
    ("predict-sidecar-threshold-word", PREDICT_ONNX,
     edited_json(RUN + "/export/model.json", lambda d: d.update(thresholds={"disk": "x"})), DAMAGED),
    ("train-manifest-truncated", [*TRAIN, "--fresh"], truncated("{out}/demo/seas/manifest.csv"), "prepare again"),
    ("eval-manifest-truncated-no-report", EVAL,
     both(truncated("{out}/demo/seas/manifest.csv"), removed("{out}/demo/seas/data_report.json")), "manifest"),
    ("eval-manifest-other-columns-no-report", EVAL,
     both(written("{out}/demo/seas/manifest.csv", b"a,b\n1,2\n"), removed("{out}/demo/seas/data_report.json")),
     "not an anoseg manifest"),
    ("eval-curve-log-garbage", EVAL, written(RUN + "/logs/eval/metrics.csv", b"a\n\x00\x01,2,3\n"), DAMAGED),
    ("train-resume-log-garbage", RESUME, written(RUN + "/logs/csv/metrics.csv", b"a\n1,2,3\n"), DAMAGED),
    # 4. checkpoints that are not what they claim
    ("eval-checkpoint-without-meta", EVAL, edited_checkpoint(without("meta")), INCOMPLETE),
    ("eval-checkpoint-without-image-size", EVAL, edited_checkpoint(meta_without("image_size")), INCOMPLETE),
    ("eval-checkpoint-without-state-dict", EVAL, edited_checkpoint(without("state_dict")), INCOMPLETE),
    ("eval-checkpoint-without-epoch", EVAL, edited_checkpoint(without("epoch")), INCOMPLETE),
    ("eval-checkpoint-of-another-category", EVAL, edited_checkpoint(with_meta(trained_on="weave")), "'weave'"),
    ("eval-checkpoint-of-another-dataset", EVAL, edited_checkpoint(with_meta(dataset="mvtec_ad")), "'mvtec_ad'"),
    ("eval-checkpoint-of-another-generator", EVAL, edited_checkpoint(with_meta(generator="cutpaste")), "'cutpaste'"),
    ("eval-checkpoint-truncated", EVAL, truncated(LAST), FOREIGN),
    ("eval-checkpoint-pickled-object", EVAL, edited_checkpoint(PICKLED), FOREIGN),
    ("predict-checkpoint-without-meta", [*PREDICT, "--out", "{tmp}/p"], edited_checkpoint(without("meta")),
     INCOMPLETE),
    ("predict-checkpoint-without-mean", [*PREDICT, "--out", "{tmp}/p"], edited_checkpoint(meta_without("mean")),
     INCOMPLETE),
    ("predict-checkpoint-truncated", [*PREDICT, "--out", "{tmp}/p"], truncated(LAST), FOREIGN),
    ("predict-checkpoint-pickled-object", [*PREDICT, "--out", "{tmp}/p"], edited_checkpoint(PICKLED), FOREIGN),
    ("export-checkpoint-without-meta", EXPORT, edited_checkpoint(without("meta")), INCOMPLETE),
    ("export-checkpoint-without-model", EXPORT, edited_checkpoint(without("model")), INCOMPLETE),
    ("export-checkpoint-classes-word", EXPORT, edited_checkpoint(lambda c: {**c, "num_classes": "2"}), INCOMPLETE),
    ("export-checkpoint-truncated", EXPORT, truncated(LAST), FOREIGN),
    ("export-checkpoint-pickled-object", EXPORT, edited_checkpoint(PICKLED), FOREIGN),
    ("train-resume-checkpoint-without-meta", RESUME, edited_checkpoint(without("meta")), INCOMPLETE),
    ("train-resume-checkpoint-without-optimizer", RESUME, edited_checkpoint(without("optimizer")), "--resume"),
    ("train-resume-checkpoint-without-history", RESUME, edited_checkpoint(without("history")), "--resume"),
    ("train-resume-checkpoint-of-another-dataset", RESUME, edited_checkpoint(with_meta(dataset="mvtec_ad")),
     "dataset mvtec_ad"),
    ("train-resume-checkpoint-truncated", RESUME, truncated(LAST), FOREIGN),
    ("train-resume-checkpoint-pickled-object", RESUME, edited_checkpoint(PICKLED), FOREIGN),
]


@pytest.fixture(scope="module")
def exported(pipeline, tmp_path_factory):
    """The pipeline's outputs plus ``anoseg export`` of its run (the ONNX file and its sidecar)."""
    out = tmp_path_factory.mktemp("exported") / "out"
    shutil.copytree(pipeline.out, out)
    result = invoke("export", "--checkpoint", LAST.format(out=out))
    assert result.exit_code == 0, result.output
    return type(pipeline)(pipeline.data, out, pipeline.recipe)


@pytest.fixture
def frozen(tmp_path):
    """The paths a case made immutable; made mutable again afterwards (wherever a command moved them) so that the
    folders can be deleted."""
    paths: list[Path] = []
    yield paths
    if paths:
        subprocess.run(["chattr", "-R", "-f", "-i", str(tmp_path)], check=False)


def test_the_table_is_large_and_names_are_unique():
    assert len(CASES) >= 80 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("args", "setup", "fragment"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_output_is_one_line_and_changes_nothing(exported, tmp_path, frozen, args, setup, fragment):
    env = sandbox(exported, tmp_path)
    setup(env, frozen)
    before = snapshot(tmp_path, exported.data)

    result = invoke(*[arg.format(**env) for arg in args])

    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert len(lines[0]) < 500, lines[0]  # a sentence, not a dump
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    assert fragment in " ".join(lines[0].split()), lines[0]
    assert snapshot(tmp_path, exported.data) == before


def test_report_skips_and_lists_a_damaged_result(exported, tmp_path):
    """Two runs (seeds 42 and 7), one of whose metrics.json is truncated: the report is built from the other and
    names the damaged file in a warning (console and the report's Warnings section)."""
    out = tmp_path / "out"
    shutil.copytree(exported.out, out)
    run = Path(RUN.format(out=out))
    shutil.copytree(run, run.parent / "seed_7" / "disk")
    damaged = run.parent / "seed_7" / "disk" / "eval" / "epoch_001" / "metrics.json"
    damaged.write_bytes(damaged.read_bytes()[:40])

    result = invoke("report", "--output", str(out), "--no-figures")

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("seed_7" in " ".join(line.split()) for line in warnings), result.stderr
    markdown = (out / "report.md").read_text()
    assert "## Warnings" in markdown
    assert "seed_7" in markdown.split("## Warnings")[1].replace("\\_", "_")  # markdown escapes the underscore


# ---- the two mechanisms, directly -----------------------------------------------------------------------------------

def test_check_output_creates_nothing_and_names_what_is_in_the_way(tmp_path):
    from anoseg.errors import AnosegError
    from anoseg.io import check_output

    check_output(tmp_path / "a" / "b" / "file.json")
    check_output(tmp_path / "new", folder=True)
    assert list(tmp_path.iterdir()) == []  # the probe file is gone, no folder was made
    (tmp_path / "f").write_text("x")
    with pytest.raises(AnosegError, match=rf"{tmp_path / 'f'} is a file, not a folder"):
        check_output(tmp_path / "f" / "sub" / "report.md")
    with pytest.raises(AnosegError, match="is a file, not a folder"):
        check_output(tmp_path / "f", folder=True)
    (tmp_path / "d").mkdir()
    with pytest.raises(AnosegError, match="is a folder, not a file"):
        check_output(tmp_path / "d")


def test_read_json_names_the_file_and_the_command(tmp_path):
    from anoseg.errors import AnosegError
    from anoseg.io import expect, read_json

    path = tmp_path / "x.json"
    path.write_text('{"a": 1')
    with pytest.raises(AnosegError, match=r"x\.json is damaged \(not readable JSON: .*\); run `anoseg eval` again"):
        read_json(path, "run `anoseg eval` again")
    path.write_text('{"a": "one"}')
    with pytest.raises(AnosegError, match=r"is damaged \('a' is not a number\)"):
        read_json(path, "rerun", lambda d: expect(isinstance(d["a"], int), "'a' is not a number"))
    with pytest.raises(AnosegError, match=r"is damaged \(no 'b'\)"):
        read_json(path, "rerun", lambda d: d["b"])
    assert read_json(path, "rerun") == {"a": "one"}
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "absent.json", "rerun")


def test_sweep_reads_a_damaged_history_from_the_checkpoint(exported, tmp_path):
    """A finished run whose train_history.json is truncated or edited is still finished for the sweep (the checkpoint
    says how many epochs it holds), not a stopped run to resume; with last.pt damaged too, the cell's one line says
    so."""
    from anoseg.errors import AnosegError
    from anoseg.sweep import SweepSpec, expand, train_state

    out = tmp_path / "out"
    shutil.copytree(exported.out, out)
    plan = expand(SweepSpec(name="t", recipe=str(exported.recipe), models=("lfd",), generators=("seas",),
                            categories=("disk",), seeds=(42,), device="cpu", backbone_weights="none"), out)
    (cell,) = plan.cells
    history = cell.run / "train_history.json"
    assert train_state(cell) == "finished"
    for damage in (history.read_bytes()[:5], b'{"epoch": 1}'):
        history.write_bytes(damage)
        assert train_state(cell) == "finished"
    (cell.run / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(AnosegError, match="cannot read checkpoint"):
        train_state(cell)
