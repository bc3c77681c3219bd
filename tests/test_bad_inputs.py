"""Bad invocations through the CLI: one line on stderr, the right exit code, no traceback, and nothing changed.

One tiny pipeline (64 px, one category, one epoch) is built once; each case runs against a copy of its outputs and
compares the md5 of every file (data and outputs) before and after.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fixtures import sandbox, snapshot

from anoseg.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))

RUN = "{out}/demo/seas/lfd/disk"
TRAIN = ["train", "--recipe", "{recipe}", "--model", "lfd", "--category", "disk", "--output", "{out}",
         "--backbone-weights", "none", "--device", "cpu"]
PREDICT = ["predict", "--out", "{tmp}/pred"]
EVAL = ["eval", "--recipe", "{recipe}", "--model", "lfd", "--category", "disk", "--output", "{out}"]


# ---- what some cases change before they run (part of the "before" tree) --------------------------------------------

def bad_recipe(line: str):
    """Replace one setting of the recipe (``"  epochs: ten"`` = a train setting, by its indentation)."""
    def setup(env: dict[str, str]) -> None:
        path = Path(env["recipe"])
        key = line.split(":")[0]
        text = re.sub(rf"^{re.escape(key)}:.*$", lambda _: line, path.read_text(), count=1, flags=re.M)
        assert text != path.read_text(), line
        path.write_text(text)
    return setup


def text_checkpoint(env: dict[str, str]) -> None:
    Path(env["tmp"], "notes.pt").write_text("hello, this is not a checkpoint\n")


def nan_checkpoint(env: dict[str, str]) -> None:
    path = Path(RUN.format(**env)) / "last.pt"
    checkpoint = torch.load(path, weights_only=True)
    next(iter(v for v in checkpoint["state_dict"].values() if v.is_floating_point())).fill_(float("nan"))
    torch.save(checkpoint, path)


def other_models_checkpoint(env: dict[str, str]) -> None:
    checkpoint = torch.load(Path(RUN.format(**env)) / "last.pt", weights_only=True)
    checkpoint["model"] = "lednet"
    torch.save(checkpoint, Path(env["tmp"], "other.pt"))


def checkpoints_is_a_file(env: dict[str, str]) -> None:
    folder = Path(RUN.format(**env)) / "checkpoints"
    shutil.rmtree(folder)
    folder.write_text("not a folder\n")


def stale_report(env: dict[str, str]) -> None:
    report = Path(env["out"], "demo", "seas", "data_report.json")
    values = json.loads(report.read_text())
    values["manifest_sha256"] = "0" * 64  # as if prepare had been killed between the report and the manifest
    report.write_text(json.dumps(values))


def a_file(name: str):
    def setup(env: dict[str, str]) -> None:
        Path(env["tmp"], name).write_text("a file\n")
    return setup


CASES = [
    # train: options checked at the door (--fresh must not have deleted anything when they fail)
    ("train-epochs-0", [*TRAIN, "--epochs", "0"], None, 2, "--epochs"),
    ("train-epochs-negative", [*TRAIN, "--epochs", "-3"], None, 2, "--epochs"),
    ("train-batch-0-fresh", [*TRAIN, "--batch-size", "0", "--fresh"], None, 2, "--batch-size"),
    ("train-workers-negative", [*TRAIN, "--workers", "-1"], None, 2, "--workers"),
    ("train-devices-0", [*TRAIN, "--devices", "0"], None, 2, "--devices"),
    ("train-precision", [*TRAIN, "--precision", "8", "--fresh"], None, 2, "--precision"),
    ("train-device-tpu-fresh", [*TRAIN, "--device", "tpu", "--fresh"], None, 2, "--device"),
    ("train-absent-gpu-fresh", [*TRAIN, "--device", "cuda:99", "--fresh"], None, 2, "cuda:99"),
    ("train-image-size-100", [*TRAIN, "--image-size", "100", "100", "--fresh"], None, 2, "multiples of 32"),
    ("train-image-size-0", [*TRAIN, "--image-size", "0", "64", "--fresh"], None, 2, "image_size"),
    ("train-lr-nan", [*TRAIN, "--lr", "nan", "--fresh"], None, 2, "--lr"),
    ("train-lr-negative", [*TRAIN, "--lr", "-1", "--fresh"], None, 2, "--lr"),
    ("train-seed-negative", [*TRAIN, "--seed", "-1", "--fresh"], None, 2, "--seed"),
    ("train-unknown-model-fresh", [*TRAIN[:4], "nonet", *TRAIN[5:], "--fresh"], None, 2, "nonet"),
    ("train-unknown-category-fresh", [*TRAIN[:6], "nope", *TRAIN[7:], "--fresh"], None, 2, "nope"),
    ("train-unknown-option", [*TRAIN, "--epoch", "3"], None, 2, "--epoch"),
    ("train-diverging-lr-fresh", [*TRAIN, "--lr", "1e6", "--fresh"], None, 2, "lower --lr"),
    ("train-category-empty-list-fresh", [*TRAIN[:6], ",", *TRAIN[7:], "--fresh"], None, 2, "--category: empty list"),
    ("train-text-backbone-weights-fresh", [*TRAIN[:-4], "--backbone-weights", "{tmp}/notes.txt", "--device", "cpu",
                                           "--fresh"], a_file("notes.txt"), 2, "not a PyTorch state-dict file"),
    ("train-resume-and-fresh", [*TRAIN, "--resume", "--fresh"], None, 2, "--fresh"),
    ("train-existing-run", TRAIN, None, 2, "--resume"),
    ("train-resume-finished", [*TRAIN, "--resume"], None, 2, "already finished"),
    ("train-resume-other-lr", [*TRAIN, "--resume", "--epochs", "2", "--lr", "0.5"], None, 2, "lr 0.01 → 0.5"),
    ("train-resume-other-size", [*TRAIN, "--resume", "--epochs", "2", "--image-size", "32", "32"], None, 2,
     "image_size"),
    ("train-resume-other-seed", [*TRAIN, "--resume", "--epochs", "2", "--seed", "3"], None, 2, "no interrupted run"),
    ("train-resume-other-batch", [*TRAIN, "--resume", "--epochs", "2", "--batch-size", "2"], None, 2,
     "batch_size 4 → 2"),
    ("train-unwritable-checkpoints-fresh", [*TRAIN, "--fresh"], checkpoints_is_a_file, 2, "checkpoints"),
    ("train-stale-data-report-fresh", [*TRAIN, "--fresh"], stale_report, 2, "prepare again"),
    # recipes: every value checked against its annotation
    ("recipe-epochs-word-fresh", [*TRAIN, "--fresh"], bad_recipe("  epochs: ten"), 2, "train.epochs"),
    ("recipe-epochs-string-fresh", [*TRAIN, "--fresh"], bad_recipe('  epochs: "12"'), 2, "train.epochs"),
    ("recipe-categories-int", [*TRAIN, "--fresh"], bad_recipe("categories: 5"), 2, "categories"),
    ("recipe-image-size-word", [*TRAIN, "--fresh"], bad_recipe("image_size: big"), 2, "image_size"),
    ("recipe-data-root-int", ["prepare", "--recipe", "{recipe}", "--output", "{out}"], bad_recipe("data_root: 3"), 2,
     "data_root"),
    ("recipe-batch-size-0", [*TRAIN, "--fresh"], bad_recipe("  batch_size: 0"), 2, "train.batch_size"),
    ("recipe-class-weights-0-fresh", [*TRAIN, "--fresh"], bad_recipe("  lr: 0.01\n  class_weights: [0.0, 0.0]"), 2,
     "train.class_weights"),
    ("recipe-min-lr-above-lr-fresh", [*TRAIN, "--fresh"], bad_recipe("  lr: 0.01\n  min_lr: 5.0"), 2, "train.min_lr"),
    ("recipe-std-0-fresh", [*TRAIN, "--fresh"],
     bad_recipe("image_size: [64, 64]\nnormalize: {mean: [0.5, 0.5, 0.5], std: [0, 0, 0]}"), 2, "std"),
    ("recipe-unknown", ["prepare", "--recipe", "nope", "--output", "{out}"], None, 2, "unknown recipe"),
    # prepare
    ("prepare-mask-threshold-negative", ["prepare", "--recipe", "{recipe}", "--output", "{out}", "--mask-threshold",
                                         "-5"], None, 2, "--mask-threshold"),
    ("prepare-mask-threshold-300", ["prepare", "--recipe", "{recipe}", "--output", "{out}", "--mask-threshold", "300"],
     None, 2, "--mask-threshold"),
    ("prepare-absent-data-root", ["prepare", "--recipe", "{recipe}", "--output", "{out}", "--data-root",
                                  "{tmp}/absent"], None, 2, "absent"),
    ("prepare-absent-generated", ["prepare", "--recipe", "{recipe}", "--output", "{out}", "--generated",
                                  "{tmp}/absent"], None, 2, "absent"),
    # eval
    ("eval-category-empty-list", [*EVAL[:6], ",", *EVAL[7:]], None, 2, "--category: empty list"),
    ("eval-overlays-negative", [*EVAL, "--overlays", "-1"], None, 2, "--overlays"),
    ("eval-epoch-0", [*EVAL, "--epoch", "0"], None, 2, "--epoch"),
    ("eval-device-tpu", [*EVAL, "--device", "tpu"], None, 2, "--device"),
    ("eval-absent-gpu", [*EVAL, "--device", "cuda:99"], None, 2, "cuda:99"),
    ("eval-nan-checkpoint", EVAL, nan_checkpoint, 2, "non-finite"),
    ("eval-stale-data-report", EVAL, stale_report, 2, "prepare again"),
    ("eval-untrained-model", [*EVAL[:4], "sanet_s", *EVAL[5:]], None, 2, "anoseg train"),
    # predict
    ("predict-text-checkpoint", [*PREDICT, "--checkpoint", "{tmp}/notes.pt", "{data}/mvtec/disk/test"],
     text_checkpoint, 2, "not a checkpoint file"),
    ("predict-nan-checkpoint", [*PREDICT, "--checkpoint", RUN + "/last.pt", "{data}/mvtec/disk/test"],
     nan_checkpoint, 2, "non-finite"),
    ("predict-other-models-weights", [*PREDICT, "--checkpoint", "{tmp}/other.pt", "{data}/mvtec/disk/test"],
     other_models_checkpoint, 2, "'lednet'"),
    ("predict-threshold-above-1", [*PREDICT, "--checkpoint", RUN + "/last.pt", "--threshold", "1.5",
                                   "{data}/mvtec/disk/test"], None, 2, "--threshold"),
    ("predict-threshold-nan", [*PREDICT, "--checkpoint", RUN + "/last.pt", "--threshold", "nan",
                               "{data}/mvtec/disk/test"], None, 2, "--threshold"),
    ("predict-absent-images", [*PREDICT, "--checkpoint", RUN + "/last.pt", "{tmp}/absent"], None, 2, "absent"),
    ("predict-device-tpu", [*PREDICT, "--checkpoint", RUN + "/last.pt", "--device", "tpu", "{data}/mvtec/disk/test"],
     None, 2, "--device"),
    # export
    ("export-text-checkpoint", ["export", "--checkpoint", "{tmp}/notes.pt"], text_checkpoint, 2,
     "not a checkpoint file"),
    ("export-nan-checkpoint", ["export", "--checkpoint", RUN + "/last.pt"], nan_checkpoint, 2, "non-finite"),
    ("export-image-size-100", ["export", "--checkpoint", RUN + "/last.pt", "--image-size", "100", "100"], None, 2,
     "--image-size"),
    ("export-checkpoint-folder", ["export", "--checkpoint", RUN], None, 2, "directory"),
    # bench, generate, synth, report, the group
    ("bench-runs-0", ["bench", "--model", "lfd", "--runs", "0", "--output", "{out}"], None, 2, "--runs"),
    ("bench-warmup-negative", ["bench", "--model", "lfd", "--warmup", "-1", "--output", "{out}"], None, 2,
     "--warmup"),
    ("bench-size-100", ["bench", "--model", "lfd", "--size", "100", "100", "--output", "{out}"], None, 2,
     "multiples of 32"),
    ("bench-device-tpu", ["bench", "--model", "lfd", "--device", "tpu", "--output", "{out}"], None, 2, "--device"),
    ("generate-count-0", ["generate", "--method", "perlin", "--recipe", "{recipe}", "--count", "0", "--out",
                          "{tmp}/gen"], None, 2, "--count"),
    ("generate-absent-textures", ["generate", "--method", "perlin", "--recipe", "{recipe}", "--textures",
                                  "{tmp}/absent", "--out", "{tmp}/gen"], None, 2, "absent"),
    ("synth-out-is-a-file", ["synth", "--out", "{tmp}/file"], a_file("file"), 2, "file"),
    ("report-format", ["report", "--output", "{out}", "--format", "xml"], None, 2, "--format"),
    ("unknown-command", ["nosuchcommand"], None, 2, "nosuchcommand"),
]


def test_the_table_is_large_and_names_are_unique():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("args", "setup", "code", "fragment"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_invocation_is_one_line_and_changes_nothing(pipeline, tmp_path, args, setup, code, fragment):
    env = sandbox(pipeline, tmp_path)
    if setup is not None:
        setup(env)
    before = snapshot(tmp_path, pipeline.data)

    result = invoke(*[arg.format(**env) for arg in args])

    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert len(lines[0]) < 400, lines[0]  # a sentence, not a dump
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    assert fragment in " ".join(lines[0].split()), lines[0]
    assert snapshot(tmp_path, pipeline.data) == before
