"""A run and its eval results have one owner, ``anoseg.runid`` (issue 22 §3): ``RunId`` ↔ folder both ways, and the
``EvalRecord`` of a ``metrics.json`` (written by evaluators, read by sweep, report and predict's thresholds).

The eval tests score an untrained LFD saved in ``anoseg train``'s checkpoint format on a tiny generated MVTec-layout
category (bookkeeping, not learning).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from anoseg.cli import main
from anoseg.constants import CHECKPOINT_FORMAT
from anoseg.engine.checkpoint import save_checkpoint
from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.paths import DEFAULT_SEED, eval_dir, run_dir
from anoseg.report.runs import find_metrics, tidy
from anoseg.runid import EvalRecord, RecordError, RunId, file_sha256
from anoseg.sweep import SweepSpec, expand, result_exists

# ---- RunId ↔ folder ------------------------------------------------------------------------------------------------

IDENTITIES = [RunId("mvtec_ad", "seas", "lfd", "all"),  # unified, default seed: the seed-free folder
              RunId("mvtec_ad", "seas", "lfd", "bottle", seed=0),  # per-category, another seed
              RunId("visa", "none", "segformer", "pcb1.v2", seed=7),  # a dot in a name is not a file suffix
              RunId("demo", "dfmgan", "lfd", "all", seed=DEFAULT_SEED + 1)]


@pytest.mark.parametrize("identity", IDENTITIES, ids=lambda r: f"{r.category}-{r.seed}")
def test_run_id_and_folder_round_trip(tmp_path, identity):
    folder = identity.folder(tmp_path)
    assert folder == run_dir(tmp_path, identity.dataset, identity.generator, identity.model, identity.category,
                             identity.seed)
    assert ("seed_" in str(folder.relative_to(tmp_path))) == (identity.seed != DEFAULT_SEED)
    assert RunId.from_folder(folder, tmp_path) == identity
    assert RunId.locate(folder) == (identity, tmp_path, folder)
    # an eval folder and a file in it give the same run, with the eval settings' variant
    for variant in ("", "native", "lfd-compat-native"):
        evaluated = replace(identity, variant=variant)
        result = evaluated.eval_folder(tmp_path, 12)
        assert result == eval_dir(folder, 12, variant)
        assert RunId.from_folder(result, tmp_path) == evaluated
        assert RunId.from_folder(result / "metrics.json", tmp_path) == evaluated


def test_a_path_that_is_no_run_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        RunId.from_folder(Path("lfd/all"))
    with pytest.raises(ValueError, match="not a run folder under"):
        RunId.from_folder(IDENTITIES[0].folder(tmp_path), tmp_path / "elsewhere")
    with pytest.raises(AnosegError, match="--category"):
        RunId("d", "none", "lfd", "../up").folder(tmp_path)


# ---- EvalRecord: write, read, latest, is_current --------------------------------------------------------------------

def _record(**changes) -> EvalRecord:
    values = dict(task="anomaly", dataset="tiny", generator="none", model="lfd", trained_on="all", protocol="clean",
                  epoch=2, categories={"mesh": {"image_auroc": 0.75, "pixel_ap": None, "n_images": 6}},
                  mean={"image_auroc": 0.75}, seed=7, variant="", precision="32-true", checkpoint="last.pt",
                  checkpoint_sha256="0" * 64, weights_sha256="1" * 64, by_defect={}, split=None,
                  operating_points=[], deployed_point=None)
    return EvalRecord(**{**values, **changes})


def test_a_record_written_reads_back_equal_with_every_field(tmp_path):
    record = _record(extra={"future_key": [1, 2]}, validation={"images": 0, "categories": []},
                     checkpoint_selection={"metric": "val:pixel_ap", "epoch": 2})
    folder = record.run_id.eval_folder(tmp_path, 2)
    path = record.write(folder)
    assert path == folder / "metrics.json"
    doc = json.loads(path.read_text())
    assert (doc["seed"], doc["variant"], doc["future_key"], doc["split"]) == (7, "", [1, 2], None)
    assert doc["categories"]["mesh"]["n_images"] == 6 and isinstance(doc["categories"]["mesh"]["n_images"], int)
    back = EvalRecord.read(path)
    assert back == record and back.path == path and back.run == record.run_id.folder(tmp_path)
    assert back.document() == doc


def test_latest_is_the_highest_epoch_of_an_unchanged_checkpoint(tmp_path):
    run = IDENTITIES[1].folder(tmp_path)
    (run / "checkpoints").mkdir(parents=True)
    for epoch, name in ((1, "checkpoints/epoch_001.pt"), (2, "last.pt")):
        (run / name).write_bytes(f"weights {epoch}".encode())
        _record(epoch=epoch, checkpoint=name, checkpoint_sha256=file_sha256(run / name)).write(eval_dir(run, epoch))
    _record(epoch=3, variant="native", checkpoint_sha256=file_sha256(run / "last.pt")).write(
        eval_dir(run, 3, "native"))  # other settings: never the default's latest
    assert EvalRecord.latest(run).epoch == 2 and EvalRecord.latest(run, "native").epoch == 3
    assert all(r.is_current() for r in EvalRecord.results(run, ""))
    assert [r.epoch for r in EvalRecord.results(run)] == [1, 2, 3]

    (run / "last.pt").write_bytes(b"retrained")  # train --fresh replaced the checkpoint epoch 2 scored
    stale = EvalRecord.at(run, 2)
    assert not stale.is_current() and stale.stale() == "last.pt has changed since this eval"
    assert EvalRecord.latest(run).epoch == 1
    (run / "checkpoints" / "epoch_001.pt").unlink()  # deleted to save space: not current, yet not stale
    assert not EvalRecord.at(run, 1).is_current() and EvalRecord.at(run, 1).stale() is None


@pytest.mark.parametrize(("text", "reason"), [
    ('{"schema": "anoseg.metrics/1", "task": "anomaly", "dataset": "tiny", "gen', "unreadable"),
    ("[1, 2]", "not an anoseg.metrics/1 file"),
    (json.dumps(_record().document() | {"seed": "seven"}), "'seed' is not an integer"),
    (json.dumps(_record().document() | {"categories": {"mesh": {"image_auroc": "high"}}}),
     "mesh.image_auroc is not a number"),
    (json.dumps(_record().document() | {"operating_points": [{"name": "x"}]}), "an operating point has no"),
])
def test_a_corrupt_file_gives_one_line_naming_it(tmp_path, text, reason):
    path = eval_dir(IDENTITIES[0].folder(tmp_path), 2) / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(RecordError) as caught:
        EvalRecord.read(path)
    message = str(caught.value)
    assert isinstance(caught.value, AnosegError) and isinstance(caught.value, ValueError)
    assert "\n" not in message and message.startswith(f"{path}: ") and reason in caught.value.reason
    assert EvalRecord.results(IDENTITIES[0].folder(tmp_path)) == []  # readers skip it
    assert EvalRecord.latest(IDENTITIES[0].folder(tmp_path)) is None


def test_sweep_skips_a_cell_only_while_its_result_scored_the_current_checkpoint(tmp_path):
    """``result_exists`` asks the record (checkpoint hash), not file times: a checkpoint replaced by bytes written
    before the result's own time (a copy, a restored backup) is not mistaken for the one scored."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.format(root=tmp_path / "data"))
    cell = expand(SweepSpec(name="t", recipe=str(recipe), models=("lfd",), generators=("none",), seeds=(7,),
                            device="cpu"), tmp_path / "out", cwd=tmp_path).cells[0]
    assert not result_exists(cell)
    cell.run.mkdir(parents=True)
    (cell.run / "last.pt").write_bytes(b"the weights scored")
    path = _record(epoch=cell.result_epoch, checkpoint_sha256=file_sha256(cell.run / "last.pt")).write(
        eval_dir(cell.run, cell.result_epoch))
    assert result_exists(cell)
    (cell.run / "last.pt").write_bytes(b"other weights")
    os.utime(cell.run / "last.pt", (0, 0))  # older than the result
    assert path.stat().st_mtime > (cell.run / "last.pt").stat().st_mtime
    assert not result_exists(cell)


# ---- a real eval: the record it writes, and a 0.2 file -------------------------------------------------------------

TINY_RECIPE = """\
name: tiny
task: anomaly
layout: mvtec_ad
data_root: {root}
generated_root: {root}/generated
generator: none
categories: [mesh]
image_size: [64, 64]
num_classes: 2
class_names: [good, defect]
train:
  epochs: 1
  eval_epoch: null
"""


def cli(*args, code: int = 0) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A prepared one-category dataset, a seed-7 run with an untrained LFD, evaluated at model and native
    resolution."""
    base = tmp_path_factory.mktemp("runid")
    rng = np.random.default_rng(0)
    for split, defect, n in (("train", "good", 2), ("test", "good", 3), ("test", "crack", 3)):
        folder = base / "data" / "mesh" / split / defect
        folder.mkdir(parents=True)
        for i in range(n):
            picture = rng.integers(80, 120, (64, 64, 3), dtype=np.uint8)
            if defect != "good":
                mask = np.zeros((64, 64), np.uint8)
                mask[10 + 5 * i:20 + 5 * i, 20:30] = 255
                picture[mask > 0] = 255
                (base / "data" / "mesh" / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(base / "data" / "mesh" / "ground_truth" / defect / f"{i:03d}_mask.png")
            Image.fromarray(picture).save(folder / f"{i:03d}.png")
    recipe = base / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.format(root=base / "data"))
    output = base / "outputs"
    cli("prepare", "--recipe", recipe, "--output", output)
    run = RunId("tiny", "none", "lfd", "all", seed=7).folder(output)
    torch.manual_seed(0)
    meta = {"dataset": "tiny", "task": "anomaly", "generator": "none", "trained_on": "all", "categories": ["mesh"],
            "image_size": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "protocol": "clean", "seed": 7, "class_names": ["good", "defect"]}
    save_checkpoint(run / "last.pt", {"format": CHECKPOINT_FORMAT, "model": "lfd", "num_classes": 2, "epoch": 1,
                                      "iteration": 1, "state_dict": create_model("lfd").state_dict(),
                                      "optimizer": {}, "meta": meta, "history": []})
    common = ["eval", "--recipe", recipe, "--output", output, "--model", "lfd", "--device", "cpu", "--seed", "7",
              "--overlays", "0"]
    out = cli(*common)
    cli(*common, "--resolution", "native")
    return {"output": output, "run": run, "printed": out}


def test_an_eval_records_its_seed_and_variant(evaluated):
    run = evaluated["run"]
    for variant in ("", "native"):
        doc = json.loads((eval_dir(run, 1, variant) / "metrics.json").read_text())
        assert (doc["seed"], doc["variant"]) == (7, variant)
        record = EvalRecord.read(eval_dir(run, 1, variant) / "metrics.json")
        assert record.run_id == RunId("tiny", "none", "lfd", "all", seed=7, variant=variant)
        assert record.run_id.eval_folder(evaluated["output"], 1) == eval_dir(run, 1, variant)
        assert record.is_current(run)
    assert EvalRecord.latest(run).document() == json.loads((eval_dir(run, 1) / "metrics.json").read_text())
    assert f"results of epoch 1 (weights {EvalRecord.latest(run).weights_sha256[:12]}): {eval_dir(run, 1)}" \
        in evaluated["printed"]


def test_a_metrics_file_of_version_0_2_reports_identically(evaluated, tmp_path):
    """A 0.2 metrics.json (no ``seed``, no ``variant``) is read with both from its folders; the report's table of
    it is the same as of the current file."""
    old = tmp_path / "outputs"
    shutil.copytree(evaluated["output"], old)
    for path in old.rglob("metrics.json"):
        doc = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in doc.items() if k not in ("seed", "variant")}))
        record = EvalRecord.read(path)
        assert (record.seed, record.variant) == (7, path.parent.name.removeprefix("epoch_001").lstrip("-"))
    tables = []
    for root in (evaluated["output"], old):
        files, warnings, _ = find_metrics(root, "tiny")
        frame, _warnings = tidy(files, root)
        assert len(files) == 1 and warnings == []
        tables.append(frame.drop(columns="run_dir"))
    assert set(tables[0]["seed"]) == {7}
    pd.testing.assert_frame_equal(tables[0], tables[1])
