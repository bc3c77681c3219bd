"""Every public layout and the folder layout: prepare → train (1 epoch) → eval → report on a tiny copy of its tree."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from anoseg.cli import main

from .conftest import make_mvtec
from .public_trees import TREES, folder_single
from .test_layouts import _mvtec3d_original, _visa_original


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _mvtec_ad(root):
    return make_mvtec(root, {"bottle": {"defects": {"crack": 4, "hole": 3}}, "cable": {"defects": {"bent": 3}}})


TREES_AND_LAYOUTS = {"mvtec_ad": (_mvtec_ad, "mvtec_ad"), "visa": (_visa_original, "visa"),
                     "mvtec_3d_ad": (_mvtec3d_original, "mvtec_3d_ad"),
                     **{name: (build, name) for name, build in TREES.items()},
                     "folder_single": (folder_single, "folder")}


@pytest.mark.slow  # prepare → train → eval → report for each layout
@pytest.mark.parametrize("name", list(TREES_AND_LAYOUTS))
def test_layout_prepare_train_eval_report(tmp_path, name):
    build, layout = TREES_AND_LAYOUTS[name]
    root = build(tmp_path / "data")
    output = ["--output", str(tmp_path / "outputs")]
    cli("prepare", "--layout", layout, "--data-root", str(root), *output)
    report = json.loads((tmp_path / "outputs" / layout / "none" / "data_report.json").read_text())
    assert report["layout"] == layout and report["n_rows"] > 0
    run = ["--recipe", layout, *output, "--model", "lfd", "--category", "all", "--device", "cpu"]
    cli("train", *run, "--epochs", "1", "--batch-size", "2", "--workers", "0", "--image-size", "32", "32",
        "--backbone-weights", "none")
    cli("eval", *run, "--overlays", "0")
    result = tmp_path / "outputs" / layout / "none" / "lfd" / "all" / "eval" / "epoch_001"  # the only checkpoint
    metrics = json.loads((result / "metrics.json").read_text())
    assert set(metrics["categories"]) == set(report["categories"])
    for values in metrics["categories"].values():
        assert values["image_auroc"] is not None and values["pixel_auroc"] is not None
    if name == "folder":  # pcb/stain has no masks: 2 image-level-only anomalies, left out of the pixel metrics
        pcb = metrics["categories"]["pcb"]
        assert pcb["n_anomalous_images"] == 3 + 2 + 2 and pcb["n_pixels"] == (9 - 2) * 32 * 32
    text = cli("report", *output, "--dataset", layout, "--no-figures")
    assert "LFD" in text and all(category in text for category in report["categories"])
