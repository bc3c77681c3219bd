"""Every number and file eval/predict write belongs to the data and checkpoint it claims (issue 11, items 1–3, 5).

The data: MVTec-layout categories of 256² images whose defects are 1-px scratches and 2×2 dots, scored at 64² (the
×4 factor of MVTec's 1024 px → 256); the model: an untrained LFD saved in ``anoseg train``'s checkpoint format (the
tests check bookkeeping, not learning, so no training is needed).
"""

from __future__ import annotations

import json
import shutil
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
from anoseg.engine.predict import predict
from anoseg.engine.visual import outline
from anoseg.errors import AnosegError
from anoseg.models import create_model
from anoseg.paths import eval_dir

SIZE = 256
# (defect type, index) → (kind, offset): a vertical scratch at column `offset`, or a 2×2 dot at (offset, offset).
# Offsets ≡ 2 (mod 4) survive a nearest-neighbour ×4 downsampling, offsets ≡ 0 (mod 4) vanish: the test images
# (index ≥ 1: the first of each type goes to train) hold one surviving and one vanishing defect of each kind.
DEFECTS = {"scratch": [("scratch", 98), ("scratch", 66), ("scratch", 128)],
           "dot": [("dot", 98), ("dot", 66), ("dot", 128)]}
RECIPE = """\
name: thin
task: anomaly
layout: mvtec_ad
data_root: {root}
generated_root: {root}/generated
generator: none
categories: [{categories}]
image_size: [64, 64]
num_classes: 2
class_names: [good, defect]
train:
  eval_epoch: null
"""


def _write_category(root: Path, category: str, rng: np.random.Generator) -> None:
    def image() -> Image.Image:
        return Image.fromarray(rng.integers(80, 120, (SIZE, SIZE, 3), dtype=np.uint8))

    for split, n in (("train", 2), ("test", 4)):
        (root / category / split / "good").mkdir(parents=True)
        for i in range(n):
            image().save(root / category / split / "good" / f"{i:03d}.png")
    for defect, specs in DEFECTS.items():
        (root / category / "test" / defect).mkdir(parents=True)
        (root / category / "ground_truth" / defect).mkdir(parents=True)
        for i, (kind, offset) in enumerate(specs):
            mask = np.zeros((SIZE, SIZE), np.uint8)
            if kind == "scratch":
                mask[40:200, offset] = 255
            else:
                mask[offset:offset + 2, offset:offset + 2] = 255
            picture = np.asarray(image()).copy()
            picture[mask > 0] = 255
            Image.fromarray(picture).save(root / category / "test" / defect / f"{i:03d}.png")
            Image.fromarray(mask).save(root / category / "ground_truth" / defect / f"{i:03d}_mask.png")


def _checkpoint(path: Path, categories: list[str], epoch: int, seed: int) -> None:
    torch.manual_seed(seed)
    meta = {"dataset": "thin", "task": "anomaly", "generator": "none", "trained_on": "all", "categories": categories,
            "image_size": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "protocol": "clean", "seed": 42, "class_names": ["good", "defect"]}
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": "lfd", "num_classes": 2, "epoch": epoch,
                           "iteration": epoch, "state_dict": create_model("lfd").state_dict(), "optimizer": {},
                           "meta": meta, "history": []})


@pytest.fixture(scope="module")
def thin(tmp_path_factory):
    """A prepared dataset of three categories and a run with checkpoints of epochs 1, 2 and 3 (last.pt = 3)."""
    base = tmp_path_factory.mktemp("thin")
    categories = ["plate", "tile", "foil"]
    rng = np.random.default_rng(0)
    for category in categories:
        _write_category(base / "data", category, rng)
    recipe = base / "thin.yaml"
    recipe.write_text(RECIPE.format(root=base / "data", categories=", ".join(categories)))
    output = base / "outputs"
    cli("prepare", "--recipe", str(recipe), "--output", str(output))
    run = output / "thin" / "none" / "lfd" / "all"
    for epoch in (1, 2, 3):
        _checkpoint(run / "checkpoints" / f"epoch_{epoch:03d}.pt", categories, epoch, seed=epoch)
    _checkpoint(run / "last.pt", categories, 3, seed=3)
    return {"recipe": recipe, "output": output, "run": run, "data": base / "data"}


def cli(*args, code: int = 0) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


def eval_args(env, *extra) -> list:
    return ["eval", "--recipe", env["recipe"], "--output", env["output"], "--model", "lfd", "--device", "cpu",
            *extra]


# ---- item 1: image labels are folder labels ------------------------------------------------------------------------

def test_image_labels_are_folder_labels_whatever_resizing_does_to_the_masks(thin):
    from sklearn.metrics import average_precision_score, roc_auc_score

    # 4 good + 4 defect test images; the nearest-neighbour mask resize of today's main loses 2 of the 4 defects at 64²
    for protocol in ("clean", "lfd-compat"):
        cli(*eval_args(thin, "--category", "all", "--save-scores", "--overlays", "0", "--protocol", protocol))
        result = eval_dir(thin["run"], 3, "" if protocol == "clean" else protocol)
        scores = np.load(result / "scores" / "plate.npz")
        folder = np.array([0 if n.startswith("good/") else 1 for n in scores["names"]], np.uint8)
        assert folder.sum() == 4 and len(folder) == 8
        np.testing.assert_array_equal(scores["image_labels"], folder)
        metrics = json.loads((result / "metrics.json").read_text())["categories"]["plate"]
        assert metrics["n_anomalous_images"] == 4
        assert metrics["image_auroc"] == pytest.approx(roc_auc_score(folder, scores["image_scores"]))
        assert metrics["image_ap"] == pytest.approx(average_precision_score(folder, scores["image_scores"]))


def test_native_resolution_scores_upsampled_maps_against_the_original_masks(thin):
    from sklearn.metrics import roc_auc_score

    cli(*eval_args(thin, "--save-scores", "--overlays", "0", "--resolution", "native"))
    result = eval_dir(thin["run"], 3, "native")
    metrics = json.loads((result / "metrics.json").read_text())
    assert metrics["resolution"] == "native"
    plate = metrics["categories"]["plate"]
    assert plate["n_pixels"] == 8 * SIZE * SIZE
    assert plate["n_anomalous_pixels"] == 2 * 160 + 2 * 4  # two scratches of 160 px, two 2×2 dots: every pixel
    scores = np.load(result / "scores" / "plate.npz")
    maps = torch.nn.functional.interpolate(torch.from_numpy(scores["pixel_scores"])[:, None], size=(SIZE, SIZE),
                                           mode="bilinear", align_corners=False)[:, 0].numpy()
    masks = np.zeros((8, SIZE, SIZE), bool)
    for i, name in enumerate(scores["names"]):
        defect, stem = str(name).split("/")
        if defect != "good":
            masks[i] = np.asarray(Image.open(thin["data"] / "plate" / "ground_truth" / defect / f"{stem}_mask.png")) > 0
    assert plate["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-6)
    cli(*eval_args(thin, "--resolution", "huge"), code=2)


def test_other_protocol_or_resolution_never_replaces_the_default_result(thin):
    """An eval of the same checkpoint with other settings goes beside the default result, never over it."""
    from anoseg.engine import results
    from anoseg.engine.checkpoint import load_checkpoint

    cli(*eval_args(thin, "--overlays", "0", "--epoch", "2"))
    default = eval_dir(thin["run"], 2)
    before = {name: (default / name).read_bytes() for name in ("metrics.json", "thresholds.json")}
    cli(*eval_args(thin, "--overlays", "0", "--epoch", "2", "--resolution", "native"))
    cli(*eval_args(thin, "--overlays", "0", "--epoch", "2", "--protocol", "lfd-compat"))
    for variant, protocol, resolution in (("native", "clean", "native"), ("lfd-compat", "lfd-compat", "model")):
        other = json.loads((eval_dir(thin["run"], 2, variant) / "metrics.json").read_text())
        assert (other["protocol"], other["resolution"]) == (protocol, resolution)
    assert {name: (default / name).read_bytes() for name in before} == before
    weights = results.weights_sha256(load_checkpoint(thin["run"] / "checkpoints" / "epoch_002.pt"))
    assert results.thresholds_for(thin["run"], weights).source == default  # predict/export: the default's threshold
    for folder in default.parent.glob("epoch_002*"):  # later tests start with epoch 2 not evaluated
        shutil.rmtree(folder)


# ---- item 2: results keyed by checkpoint ---------------------------------------------------------------------------

def _threshold_of(env, epoch: int, category: str | None = None) -> float:
    doc = json.loads((eval_dir(env["run"], epoch) / "thresholds.json").read_text())
    return doc["mean"] if category is None else doc["categories"][category]


def test_each_checkpoint_keeps_its_results_and_predict_uses_its_own_threshold(thin, tmp_path):
    cli(*eval_args(thin, "--overlays", "1"))  # the last checkpoint: epoch 3
    cli(*eval_args(thin, "--epoch", "1", "--overlays", "1"))
    third = json.loads((eval_dir(thin["run"], 3) / "metrics.json").read_text())
    first = json.loads((eval_dir(thin["run"], 1) / "metrics.json").read_text())
    assert (third["epoch"], first["epoch"]) == (3, 1)
    assert third["weights_sha256"] != first["weights_sha256"]
    assert third["checkpoint"] == "last.pt" and first["checkpoint"] == "checkpoints/epoch_001.pt"
    assert _threshold_of(thin, 3) != _threshold_of(thin, 1)
    assert not (thin["run"] / "metrics.json").exists()
    assert any((eval_dir(thin["run"], 3) / "overlays" / "plate").glob("*.png"))

    images = thin["data"] / "plate" / "test" / "scratch"
    out = cli("predict", "--checkpoint", thin["run"] / "last.pt", images, "--out", tmp_path / "a", "--device", "cpu")
    oracle = "(pixel F1-max on test (oracle))"  # no validation split: the threshold is labelled as tuned on test
    assert f"threshold {_threshold_of(thin, 3):.4f} {oracle}: the mean of the 3 per-category" in out
    out = cli("predict", "--checkpoint", thin["run"] / "checkpoints" / "epoch_003.pt", images, "--out",
              tmp_path / "b", "--device", "cpu", "--category", "tile")  # same weights as last.pt, another file
    assert f"threshold {_threshold_of(thin, 3, 'tile'):.4f} {oracle}: the pixel F1-max threshold of tile" in out
    table = pd.read_csv(tmp_path / "b" / "predictions.csv")
    assert np.allclose(table["threshold"], _threshold_of(thin, 3, "tile"))
    cli("predict", "--checkpoint", thin["run"] / "last.pt", images, "--out", tmp_path / "c", "--category", "wood",
        code=2)
    out = cli("predict", "--checkpoint", thin["run"] / "checkpoints" / "epoch_002.pt", images, "--out",
              tmp_path / "d", "--device", "cpu", code=2)
    assert "no decision threshold computed for" in out and f"--output {thin['output']} --epoch 2`" in out
    assert not (tmp_path / "d").exists()
    for bad in ("nan", "1.5", "-0.1", "inf"):  # refused by the CLI's option type or by predict itself
        assert "--threshold" in cli("predict", "--checkpoint", thin["run"] / "last.pt", images, "--threshold", bad,
                                    "--out", tmp_path / "e", code=2)
    with pytest.raises(AnosegError, match=r"--threshold must be a number in \[0, 1\]"):
        predict([images], checkpoint=thin["run"] / "last.pt", threshold=float("nan"), out=tmp_path / "f")
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()


def test_an_interrupted_eval_leaves_the_finished_result_and_nothing_else(thin, monkeypatch):
    import anoseg.engine.evaluate_anomaly as evaluate_module

    cli(*eval_args(thin, "--overlays", "0"))
    before = (eval_dir(thin["run"], 3) / "metrics.json").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "write_percent_csv", interrupted)  # after metrics.json is written
    cli(*eval_args(thin, "--overlays", "0", "--save-scores"), code=130)
    cli(*eval_args(thin, "--overlays", "0", "--epoch", "2"), code=130)
    assert (eval_dir(thin["run"], 3) / "metrics.json").read_text() == before
    assert not (eval_dir(thin["run"], 3) / "scores").exists()
    assert not eval_dir(thin["run"], 2).exists()
    assert [p.name for p in (thin["run"] / "eval").iterdir() if p.name.startswith(".")] == []


def test_result_folders_get_the_umask_permissions(tmp_path):
    import os
    import stat

    from anoseg.engine import results

    saved = os.umask(0o027)
    try:
        staging = results.staging_dir(tmp_path / "eval" / "epoch_001")
        results.publish(staging, tmp_path / "eval" / "epoch_001")
    finally:
        os.umask(saved)
    assert stat.S_IMODE((tmp_path / "eval" / "epoch_001").stat().st_mode) == 0o750  # not mkdtemp's 0o700


# ---- item 3: predict never overwrites its own outputs ------------------------------------------------------------

def test_predict_mirrors_input_paths_and_never_overwrites(thin, tmp_path, monkeypatch):
    data = thin["data"]
    folders = [data / c / "test" for c in ("plate", "tile", "foil")]  # every folder has good/000.png …
    corrupt = data / "tile" / "test" / "good" / "003.png"
    original = corrupt.read_bytes()
    corrupt.write_bytes(original[: len(original) // 3])  # a truncated file part-way through the folders
    monkeypatch.chdir(tmp_path)
    try:
        out = cli("predict", "--checkpoint", thin["run"] / "last.pt", *folders, "--device", "cpu")
    finally:
        corrupt.write_bytes(original)
    runs = list((tmp_path / "outputs" / "predict").iterdir())
    assert len(runs) == 1  # a fresh dated folder
    first = runs[0]
    table = pd.read_csv(first / "predictions.csv")
    n_inputs = 3 * 10  # test/good 4, test/scratch 3, test/dot 3
    assert len(table) == n_inputs - 1 and table["mask"].is_unique
    assert "skipped 1 unreadable image" in out
    skipped = pd.read_csv(first / "skipped.csv")
    assert list(skipped["image"]) == [str(corrupt)]
    for row in table.itertuples():
        relative = Path(row.image).relative_to(data)
        assert Path(row.mask).resolve() == first / relative.parent / f"{relative.stem}_mask.png"
        mask = np.asarray(Image.open(row.mask))
        assert mask.shape == (SIZE, SIZE) and row.defect_fraction == pytest.approx((mask > 0).mean())
    written = sorted(first.rglob("*_mask.png"))
    assert len(written) == n_inputs - 1 and set(written) == {Path(m).resolve() for m in table["mask"]}

    # a second run into the same --out: refused unless --overwrite, which replaces the folder as a whole
    target = tmp_path / "mine"
    cli("predict", "--checkpoint", thin["run"] / "last.pt", *folders, "--out", target, "--device", "cpu",
        "--threshold", "0.5")
    assert "is not empty" in cli("predict", "--checkpoint", thin["run"] / "last.pt", folders[0], "--out", target,
                                 "--threshold", "0.5", code=2)
    cli("predict", "--checkpoint", thin["run"] / "last.pt", folders[0], "--out", target, "--device", "cpu",
        "--threshold", "0.5", "--overwrite")
    table = pd.read_csv(target / "predictions.csv")
    assert len(table) == 10 and sorted(target.rglob("*_mask.png")) == sorted(map(Path, table["mask"]))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert "not an anoseg predict run" in cli("predict", "--checkpoint", thin["run"] / "last.pt", folders[0],
                                              "--out", tmp_path / "notes", "--overwrite", "--threshold", "0.5",
                                              code=2)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_predict_on_a_dataset_root_skips_mask_folders_and_outlines_the_mask(thin, tmp_path):
    cli("predict", "--checkpoint", thin["run"] / "last.pt", thin["data"] / "plate", "--out", tmp_path / "p",
        "--device", "cpu", "--threshold", "0.5")
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(table) == 2 + 4 + 6  # train/good, test/good, test/<defects>; none of ground_truth/
    assert not any("ground_truth" in image for image in table["image"])
    # one image again, at a threshold that marks part of it, to see the predicted mask's outline on its overlay
    row = table.iloc[-1]
    threshold = round(float(row["score"]) - 0.002, 4)
    cli("predict", "--checkpoint", thin["run"] / "last.pt", row["image"], "--out", tmp_path / "q", "--device", "cpu",
        "--threshold", threshold)
    mask = np.asarray(Image.open(tmp_path / "q" / f"{Path(row['image']).stem}_mask.png")) > 0
    overlay = Image.open(tmp_path / "q" / f"{Path(row['image']).stem}_overlay.jpg")
    assert overlay.format == "JPEG"
    heat = np.asarray(overlay)[:, SIZE + 10: 2 * SIZE + 10].astype(int)  # image | heatmap | colour bar
    white = (heat >= 215).all(axis=2)  # JPEG: near-white, not exactly 255
    assert 0 < mask.mean() < 1
    assert white[outline(mask)].mean() > 0.9 and not white[mask & ~outline(mask)].any()


def test_overlay_strip_outline_and_fixed_colour_bar():
    from anoseg.engine.visual import BAR_WIDTH, GAP, overlay_strip

    image = np.zeros((40, 50, 3), np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[10:20, 10:30] = True
    strip = overlay_strip(image, np.full((40, 50), 0.25, np.float32), outline_mask=mask)
    heat = strip[:, 50 + GAP: 100 + GAP]
    white = (heat == 255).all(axis=2)
    assert white[10, 10:30].all() and white[19, 10:30].all() and white[10:20, 10].all()
    assert not white[11:19, 11:29].any() and not white[~mask].any()
    bar = strip[:, 100 + 2 * GAP: 100 + 2 * GAP + BAR_WIDTH]
    assert bar[0, 0, 0] > 100 and bar[0, 0, 2] < 50  # red at 1 (top), whatever the scores were
    assert bar[-1, 0, 2] > 100 and bar[-1, 0, 0] < 50  # blue at 0 (bottom)
