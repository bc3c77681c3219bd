"""Through the CLI on a tiny project: the checkpoint and export sidecar say which backbone weights were really loaded,
outputs get the user's umask, and the manifest travels with a copied project."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from anoseg.cli import main
from anoseg.engine.checkpoint import load_checkpoint

RECIPE = """\
name: tiny
task: anomaly
layout: mvtec_ad
data_root: data/tiny
generator: none
categories: [plate]
image_size: [64, 64]
train:
  epochs: 1
  eval_epoch: null
  checkpoint_every: 1
  batch_size: 2
  ohem_min_kept: 500
  workers: 0
"""


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_project(root: Path) -> Path:
    """``root/{recipes/tiny.yaml, data/tiny/plate/...}``: 64² images, 3 train/good, 2 test/good, 3 scratches."""
    rng = np.random.default_rng(0)
    base = root / "data" / "tiny" / "plate"
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            _write(base / split / "good" / f"{i:03d}.png", rng.integers(0, 120, (64, 64, 3), dtype=np.uint8))
    for i in range(3):
        image = rng.integers(0, 120, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[20 + 4 * i:24 + 4 * i, 8:56] = 255
        image[mask > 0] = 250
        _write(base / "test" / "scratch" / f"{i:03d}.png", image)
        _write(base / "ground_truth" / "scratch" / f"{i:03d}_mask.png", mask)
    (root / "recipes").mkdir(parents=True)
    (root / "recipes" / "tiny.yaml").write_text(RECIPE)
    return root


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def project(tmp_path, monkeypatch, offline):
    """A fresh project as the working directory, an empty torch hub cache and a network that records attempts."""
    root = make_project(tmp_path / "proj")
    monkeypatch.chdir(root)
    saved = os.umask(0o022)
    yield root, offline
    os.umask(saved)


def test_offline_imagenet_is_recorded_as_random_in_checkpoint_and_sidecar(project, capfd):
    root, attempts = project
    cli("prepare", "--recipe", "recipes/tiny.yaml")
    cli("train", "--recipe", "recipes/tiny.yaml", "--model", "lfd", "--device", "cpu")  # default: imagenet
    run = root / "outputs" / "tiny" / "none" / "lfd" / "all"
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["meta"]["backbone_weights"] == "random (imagenet unavailable)"
    assert attempts == [] and "Downloading" not in capfd.readouterr().err
    cli("eval", "--recipe", "recipes/tiny.yaml", "--model", "lfd", "--device", "cpu", "--overlays", "0")
    cli("export", "--checkpoint", str(run / "last.pt"), "--format", "torchscript")
    sidecar = json.loads(next((run / "export").glob("*.json")).read_text())
    assert sidecar["training"]["backbone_weights"] == "random (imagenet unavailable)"
    # every file the stages wrote has the umask's permissions (0o644), not the temporary file's 0o600
    modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in (root / "outputs").rglob("*") if p.is_file()}
    assert modes and {m for m in modes.values()} == {0o644}, modes

    # a copy of the project (data + outputs) reads its own data, wherever it is run from
    copy = root.parent / "copy"
    shutil.copytree(root, copy)
    shutil.rmtree(root)
    os.chdir(copy)
    cli("eval", "--recipe", "recipes/tiny.yaml", "--model", "lfd", "--device", "cpu", "--overlays", "0")
    from anoseg.data.manifest import read_manifest

    manifest = read_manifest(copy / "outputs" / "tiny" / "none" / "manifest.csv")
    assert all(path.startswith(str(copy / "data" / "tiny") + os.sep) for path in manifest["image"])


def test_moved_dataset_is_one_line_telling_to_rerun_prepare(project):
    root, _ = project
    cli("prepare", "--recipe", "recipes/tiny.yaml")
    (root / "data" / "tiny").rename(root / "data" / "moved")
    result = CliRunner().invoke(main, ["train", "--recipe", "recipes/tiny.yaml", "--model", "lfd", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    text = " ".join(result.output.split())
    assert "data root" in text and "run `anoseg prepare` again" in text, result.output
