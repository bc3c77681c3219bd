"""prepare → train → eval → report → predict through the CLI for each road/scene recipe, on tiny trees.

Eval runs twice: with the trained model (the file follows docs/schemas.md) and with an oracle model that reads the label
back from the image, which must score perfectly — only if eval decodes the right labels, keeps the right pixels and
excludes the ignored ones (whose image encodes a wrong class).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from anoseg.cli import main
from anoseg.data.manifest import read_manifest
from anoseg.data.scenes import read_label, row_label_formats
from anoseg.engine import checkpoint as checkpoint_module
from anoseg.engine import evaluate_scene
from anoseg.recipes import load_recipe

from .synthetic import (
    OracleModel,
    make_camvid_colour,
    make_camvid_segnet,
    make_cityscapes,
    make_kitti,
    write_test_recipe,
)

CASES = {"kitti_road": ("kitti_road", make_kitti), "cityscapes": ("cityscapes", make_cityscapes),
         "camvid_colour": ("camvid", make_camvid_colour), "camvid_segnet": ("camvid", make_camvid_segnet)}
ROAD_KEYS = {"maxf", "ap", "pre", "rec", "fpr", "fnr", "threshold", "n_images"}


def cli(*args) -> str:
    result = CliRunner().invoke(main, ["--debug", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def oracle(monkeypatch) -> None:
    build = lambda checkpoint: OracleModel(checkpoint["num_classes"])  # noqa: E731
    monkeypatch.setattr(evaluate_scene, "build_model", build)
    monkeypatch.setattr(checkpoint_module, "build_model", build)


@pytest.mark.slow  # prepare → train → eval → report per recipe
@pytest.mark.parametrize("case", list(CASES))
def test_recipe_end_to_end(tmp_path, monkeypatch, case):
    name, build = CASES[case]
    root = build(tmp_path / "data")
    recipe = write_test_recipe(tmp_path, name, root)
    out = tmp_path / "outputs"
    common = ("--recipe", recipe, "--output", out)

    cli("prepare", *common)
    manifest = read_manifest(out / name / "none" / "manifest.csv")
    report = json.loads((out / name / "none" / "data_report.json").read_text())
    assert report["layout"] == name and report["n_rows"] == len(manifest)
    cli("train", *common, "--model", "sanet_s", "--epochs", "1", "--backbone-weights", "none", "--device", "cpu")
    run = out / name / "none" / "sanet_s" / "all"
    assert (run / "last.pt").is_file()

    cli("eval", *common, "--model", "sanet_s", "--device", "cpu", "--overlays", "1")
    result = run / "eval" / "epoch_001"
    metrics = json.loads((result / "metrics.json").read_text())
    assert metrics["schema"] == "anoseg.metrics/1" and metrics["task"] == ("road" if name == "kitti_road" else "scene")
    assert (metrics["dataset"], metrics["generator"], metrics["model"], metrics["trained_on"], metrics["epoch"]) == \
        (name, "none", "sanet_s", "all", 1)
    test = manifest[manifest["split"] == "test"]
    if name == "kitti_road":
        assert list(metrics["categories"]) == ["um", "umm", "uu", "URBAN"]
        assert all(set(v) == ROAD_KEYS for v in metrics["categories"].values())
        assert metrics["mean"] == metrics["categories"]["URBAN"]
        assert metrics["categories"]["URBAN"]["n_images"] == len(test)
        assert 0.0 <= metrics["mean"]["maxf"] <= 1.0
    else:
        assert list(metrics["categories"]) == ["all"] and metrics["mean"] == metrics["categories"]["all"]
        names = [f"iou/{c}" for c in load_recipe(name).class_names]
        assert {"miou", "pixel_acc", "mean_class_acc", "n_images", *names} <= set(metrics["mean"])
        assert metrics["mean"]["n_images"] == len(test)
    assert (result / "metrics.csv").is_file() and any((result / "overlays").rglob("*.png"))

    oracle(monkeypatch)
    cli("eval", *common, "--model", "sanet_s", "--device", "cpu", "--overlays", "0")
    perfect = json.loads((result / "metrics.json").read_text())["mean"]
    if name == "kitti_road":
        assert perfect["maxf"] == pytest.approx(1.0) and perfect["ap"] == pytest.approx(1.0)
        assert perfect["fpr"] == 0.0 and perfect["fnr"] == 0.0
    else:
        assert perfect["miou"] == pytest.approx(1.0) and perfect["pixel_acc"] == pytest.approx(1.0)
        assert perfect["mean_class_acc"] == pytest.approx(1.0)
        present = [k for k, v in perfect.items() if k.startswith("iou/") and v is not None]
        assert present and all(perfect[k] == pytest.approx(1.0) for k in present)

    output = cli("report", "--dataset", name, "--output", out, "--no-figures")
    assert (out / "report.md").is_file(), output

    image = test["image"].iloc[0]
    cli("predict", image, "--checkpoint", run / "last.pt", "--out", tmp_path / "predicted", "--device", "cpu")
    stem = image.rsplit("/", 1)[1].rsplit(".", 1)[0]
    label = read_label(test["mask"].iloc[0], row_label_formats(test, name)[0])
    defined = label != 255
    if name == "kitti_road":
        road = np.asarray(Image.open(tmp_path / "predicted" / f"{stem}_road.png"))
        assert road.shape == label.shape and road.dtype == np.uint8
        assert ((road >= 128) == (label == 1))[defined].all()
    else:
        classes = Image.open(tmp_path / "predicted" / f"{stem}_classes.png")
        assert classes.mode == "P"
        assert (np.asarray(classes) == label)[defined].all()
