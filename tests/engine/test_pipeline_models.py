"""Every segmenter family through train + eval on the built-in data, and the Perlin-generator path end to end."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from anoseg.cli import main
from anoseg.data.dataset import build_augmentation

FAMILIES = ["lfd", "sanet_s", "liteseg_mobilenetv2", "lednet", "sfnet_lite_r18"]


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow  # five trainings
@pytest.mark.parametrize("model", FAMILIES)
def test_every_family_trains_and_evaluates_on_one_category(demo_env, model):
    common = ["--recipe", str(demo_env.recipe_file), "--output", str(demo_env.output), "--model", model,
              "--category", "mesh", "--device", "cpu"]
    cli("train", *common, "--epochs", "1", "--image-size", "64", "64", "--backbone-weights", "none")
    cli("eval", *common, "--overlays", "0")
    metrics = json.loads((demo_env.output / "demo" / "seas" / model / "mesh" / "eval" / "epoch_001" / "metrics.json")
                         .read_text())
    assert metrics["model"] == model and metrics["trained_on"] == "mesh" and metrics["image_size"] == [64, 64]
    assert set(metrics["categories"]) == {"mesh"} and metrics["mean"]["pixel_auroc"] is not None


@pytest.mark.slow  # generate → prepare → train → eval → report
def test_perlin_pairs_go_through_prepare_train_eval_and_report(demo_env, tmp_path):
    recipe = ["--recipe", str(demo_env.recipe_file)]
    output = ["--output", str(tmp_path / "outputs")]
    generated = tmp_path / "perlin"
    cli("generate", "--method", "perlin", *recipe, "--category", "mesh", "--count", "6", "--out", str(generated))
    cli("prepare", *recipe, "--generated", str(generated), "--generator", "perlin", "--categories", "mesh", *output)
    manifest = (tmp_path / "outputs" / "demo" / "perlin" / "manifest.csv").read_text()
    assert manifest.count(",perlin,mesh,train,generated,") == 6
    run = [*recipe, *output, "--generator", "perlin", "--model", "lfd", "--category", "mesh", "--device", "cpu"]
    cli("train", *run, "--epochs", "1", "--image-size", "64", "64", "--backbone-weights", "none")
    cli("eval", *run, "--save-scores")
    cli("report", *output, "--dataset", "demo", "--no-figures")
    metrics = json.loads((tmp_path / "outputs" / "demo" / "perlin" / "lfd" / "mesh" / "eval" / "epoch_001"
                          / "metrics.json").read_text())
    summary = summary_rows((tmp_path / "outputs" / "report.md").read_text())
    row = summary[("LFD (per-category)", "perlin")]  # the generator's own row, not any mention of its name
    header = summary[("Segmenter", "Generator")]
    for column, metric in (("Image AUROC", "image_auroc"), ("Pixel AP", "pixel_ap"), ("Pixel IoU", "iou")):
        assert float(row[header.index(column)].strip("*")) == round(100 * metrics["mean"][metric], 2)


def summary_rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    """The report's summary table: (segmenter, generator) → the row's cells (a blank segmenter repeats the last)."""
    lines = markdown[markdown.index("## Summary"):].splitlines()
    rows, segmenter = {}, ""
    for line in lines[next(i for i, line in enumerate(lines) if line.startswith("| ")):]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if set(cells[0]) <= set(":- ") and cells[0]:
            continue  # the separator row
        segmenter = cells[0] or segmenter
        rows[(segmenter, cells[1])] = cells
    return rows


def test_joint_augmentation_moves_image_and_mask_together():
    torch.manual_seed(0)
    transform = build_augmentation(("hflip", "affine"))
    from torchvision import tv_tensors

    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[:, 4:10, 2:8] = 255
    mask = (image[0] > 0).to(torch.uint8)
    for _ in range(5):
        out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert torch.equal(out_image[0] > 127, out_mask.bool())


@pytest.mark.slow  # two DDP processes
def test_ddp_on_two_cpu_processes_trains_and_saves_once(demo_env, tmp_path):
    """`--devices 2` runs Lightning Fabric's DDP (gloo on CPU); only rank 0 writes and speaks."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    output = tmp_path / "outputs"
    (output / "demo" / "seas").mkdir(parents=True)
    for name in ("manifest.csv", "data_report.json"):  # the prepared data only, none of the other tests' runs
        shutil.copy(demo_env.output / "demo" / "seas" / name, output / "demo" / "seas" / name)
    anoseg = Path(sys.executable).with_name("anoseg")
    result = subprocess.run(
        [str(anoseg), "train", "--recipe", str(demo_env.recipe_file), "--output", str(output), "--model", "lfd",
         "--category", "mesh", "--epochs", "1", "--image-size", "64", "64", "--backbone-weights", "none",
         "--device", "cpu", "--devices", "2"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Starting with 2 processes" in result.stdout + result.stderr
    assert result.stdout.count("checkpoints:") == 1
    run = output / "demo" / "seas" / "lfd" / "mesh"
    assert (run / "last.pt").is_file() and (run / "checkpoints" / "epoch_001.pt").is_file()
