"""Per-defect-type metrics of ``anoseg eval`` (metrics.json ``by_defect``) against scikit-learn, and the validation
split end to end: prepare holds it out, train never sees it, eval records the split, report says so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, roc_auc_score

from anoseg.cli import main
from anoseg.constants import DEFECT_METRICS
from anoseg.data.synth import make_demo_data
from anoseg.engine.evaluate_anomaly import defect_type_metrics
from anoseg.metrics.anomaly import anomaly_metrics


def brute_iou(scores: np.ndarray, mask: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        best = max(best, np.count_nonzero(pred & mask) / np.count_nonzero(pred | mask))
    return best


@pytest.fixture
def scored() -> tuple[np.ndarray, ...]:
    """12 maps of 6×5 with tied scores (5 levels): 4 good images, 5 of type "crack", 3 of type "hole"."""
    rng = np.random.default_rng(3)
    defects = np.array(["good"] * 4 + ["crack"] * 5 + ["hole"] * 3)
    labels = defects != "good"
    masks = np.zeros((12, 6, 5), bool)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(0, 4, 2)
        masks[i, y:y + 2, x:x + 2] = True
    maps = (rng.integers(0, 5, masks.shape) + 2 * masks * rng.integers(0, 2, masks.shape)).astype(np.float32) / 7
    return maps, masks, labels, defects


def test_each_type_against_the_good_images_equals_scikit_learn(scored):
    maps, masks, labels, defects = scored
    whole = anomaly_metrics(maps, masks, image_labels=labels)
    got = defect_type_metrics(maps, masks, masks, labels, np.ones(12, bool), defects, whole)
    assert list(got) == ["crack", "hole"]
    for defect, entry in got.items():
        chosen = (defects == "good") | (defects == defect)
        image_scores = maps[chosen].reshape(chosen.sum(), -1).max(axis=1)
        assert entry["image_auroc"] == pytest.approx(roc_auc_score(labels[chosen], image_scores), abs=1e-9)
        assert entry["image_ap"] == pytest.approx(average_precision_score(labels[chosen], image_scores), abs=1e-9)
        assert entry["pixel_ap"] == pytest.approx(
            average_precision_score(masks[chosen].ravel(), maps[chosen].ravel()), abs=1e-9)
        ious = [brute_iou(maps[i], masks[i]) for i in np.flatnonzero(chosen & labels)]
        assert entry["iou"] == pytest.approx(np.mean(ious), abs=1e-9)
        assert entry["n_images"] == int(chosen.sum()) and entry["n_anomalous_images"] == int((defects == defect).sum())
        assert set(entry) == {*DEFECT_METRICS, "n_images", "n_anomalous_images"}
    # the two types differ (else the test could not tell them apart)
    assert got["crack"]["pixel_ap"] != got["hole"]["pixel_ap"]


def test_one_defect_type_reuses_the_category_and_no_good_image_is_undefined(scored):
    maps, masks, labels, defects = scored
    one = np.where(labels, "crack", "good")
    whole = anomaly_metrics(maps, masks, image_labels=labels)
    got = defect_type_metrics(maps, masks, masks, labels, np.ones(12, bool), one, whole)
    assert {k: got["crack"][k] for k in DEFECT_METRICS} == {k: whole[k] for k in DEFECT_METRICS}
    only = labels.copy()  # no good test image: the image metrics are undefined, the pixel ones are not
    keep = np.flatnonzero(only)
    sub = defect_type_metrics(maps[keep], masks[keep], masks[keep], labels[keep], np.ones(keep.size, bool),
                              defects[keep], anomaly_metrics(maps[keep], masks[keep]))
    assert sub["hole"]["image_auroc"] is None and sub["hole"]["pixel_ap"] is not None
    assert defect_type_metrics(maps[:4], masks[:4], masks[:4], labels[:4], np.ones(4, bool), defects[:4], {}) == {}


RECIPE = """\
name: demo
layout: mvtec_ad
data_root: {data}/mvtec
generated_root: {data}/generated
generator: seas
categories: [weave, disk, mesh]
image_size: [64, 64]
split: {{val: 0.3}}
train:
  epochs: 1
  eval_epoch: null
  checkpoint_every: 1
  batch_size: 4
  ohem_min_kept: 1000
  workers: 0
"""


def invoke(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_val_split_pipeline_by_defect_report(tmp_path):
    import torch

    make_demo_data(tmp_path / "data", seed=0)
    recipe = tmp_path / "demo.yaml"
    recipe.write_text(RECIPE.format(data=tmp_path / "data"))
    out = tmp_path / "out"
    invoke("prepare", "--recipe", recipe, "--output", out)
    manifest = pd.read_csv(out / "demo" / "seas" / "manifest.csv", keep_default_na=False)
    report = json.loads((out / "demo" / "seas" / "data_report.json").read_text())
    disk = manifest[manifest["category"] == "disk"]
    assert (disk["split"] == "val").any() and report["split"]["val"] == 0.3 and not report["split"]["protocol"]
    common = ["--recipe", recipe, "--model", "lfd", "--category", "disk", "--output", out]
    invoke("train", *common, "--backbone-weights", "none", "--device", "cpu")
    checkpoint = torch.load(out / "demo" / "seas" / "lfd" / "disk" / "last.pt", weights_only=True)
    assert checkpoint["meta"]["n_train_images"] == int((disk["split"] == "train").sum())  # val rows never train
    invoke("eval", *common, "--device", "cpu", "--overlays", "0")
    metrics = json.loads(next((out / "demo").rglob("metrics.json")).read_text())
    assert metrics["split"] == {"val": 0.3, "real_fraction": pytest.approx(1 / 3), "protocol": False}
    test = disk[disk["split"] == "test"]
    types = sorted(set(test.loc[test["label"] == 1, "defect"]))
    assert list(metrics["by_defect"]["disk"]) == types and len(types) > 1
    for defect in types:
        entry = metrics["by_defect"]["disk"][defect]
        assert entry["n_anomalous_images"] == int((test["defect"] == defect).sum())
        assert entry["n_images"] == entry["n_anomalous_images"] + int((test["label"] == 0).sum())
    result = invoke("report", "--output", out, "--dataset", "demo", "--by", "defect", "--no-figures",
                    "--format", "csv", "--out", tmp_path / "r.md")
    assert "by defect type" in result.output and "disk / " + types[0] in result.output
    assert "Split: validation part split.val = 0.3" in result.output.replace("\n", " ")
    markdown = (tmp_path / "r.md").read_text()
    assert "## Per-defect-type results" in markdown and "Split: validation part split.val = 0.3" in markdown
    table = pd.read_csv(tmp_path / "r_by_defect_image_auroc.csv", index_col=0)
    assert table.loc[f"disk / {types[0]}"].iloc[0] == round(100 * metrics["by_defect"]["disk"][types[0]]
                                                             ["image_auroc"], 2)
    plain = invoke("report", "--output", out, "--dataset", "demo", "--no-figures", "--out", tmp_path / "p.md")
    assert "by defect type" not in plain.output and "Split:" in plain.output
    assert Path(tmp_path / "p.md").is_file()
