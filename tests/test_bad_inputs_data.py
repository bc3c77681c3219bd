"""Bad inputs on the data and model side (issue 23, kinds 5, 6, 9 input side, 10, 11), through the CLI.

Two tables. ``REFUSALS``: each case must end in exit 2 with one line naming the problem, and leave every file of the
data and outputs byte-identical. ``WORKS``: inputs that look odd but are valid; each must give the right result,
checked against an oracle written here (numpy/PIL arithmetic, a second tree holding the same data in a plain form,
or a second run with a plain setting), never against anoseg's own output alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from data.conftest import make_mvtec, write_image, write_mask
from data.public_trees import bmad, bmad_readme
from fixtures import sandbox, snapshot
from PIL import Image

from anoseg.cli import main
from anoseg.constants import EXPORT_SCHEMA
from anoseg.data.manifest import read_manifest
from anoseg.engine.checkpoint import load_checkpoint

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
RUN = "{out}/demo/seas/lfd/disk"  # the session pipeline's run (tests/conftest.py): lfd on disk, seed 42, evaluated
TINY_RECIPE = """\
name: tiny
layout: {layout}
data_root: {data}
generator: none
categories: []
image_size: [32, 32]
train:
  epochs: 1
  eval_epoch: null
  checkpoint_every: 1
  batch_size: {batch}
  lr: 0.01
  ohem_min_kept: 100
  workers: 0
"""


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def tiny_recipe(path: Path, data: Path, layout: str = "mvtec_ad", batch: int = 4) -> Path:
    path.write_text(TINY_RECIPE.format(layout=layout, data=data, batch=batch))
    return path


def one_line_error(result, fragment: str) -> str:
    """The CLI's answer to a user mistake: exit 2, one red line on stderr holding ``fragment``, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


# ---- handmade ONNX models: a 1×1 convolution, so the right answer is a few lines of numpy -------------------------

def conv_onnx(path: Path, shape: list, image_size: list[int] | None, out_channels: int = 2, seed: int = 0,
              stride: int = 1) -> np.ndarray:
    """An ONNX model ``logits = W · x`` per pixel (of every ``stride``-th pixel) with input ``shape`` (ints fixed,
    strings dynamic) and a sidecar saying ``image_size``; returns W (out_channels, in_channels)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    channels = shape[1] if isinstance(shape[1], int) else 3
    kernel = (out_channels, channels, *[1] * (len(shape) - 2))
    weights = np.random.default_rng(seed).normal(size=kernel).astype(np.float32)
    inputs = helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)
    output_shape = [shape[0], out_channels, *(shape[2:] if stride == 1 else ["oh", "ow"])] if len(shape) == 4 \
        else [shape[0], out_channels]
    outputs = helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape)
    conv = helper.make_node("Conv", ["image", "w"], ["logits"], strides=[stride] * (len(shape) - 2))
    graph = helper.make_graph([conv], "conv", [inputs], [outputs],
                              [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps({"schema": EXPORT_SCHEMA, "task": "anomaly",
                                                     "image_size": image_size or [], "mean": MEAN, "std": STD}))
    return weights.reshape(out_channels, channels)


def oracle_mask(image: np.ndarray, weights: np.ndarray, size: tuple[int, int] | None, threshold: float
                ) -> tuple[np.ndarray, float]:
    """What predict must write for ``conv_onnx``'s model: (mask at the image's size, score)."""
    height, width = image.shape[:2]
    model_input = image if size is None else np.asarray(
        Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    x = (model_input.astype(np.float32) / 255 - np.float32(0.5)) / np.float32(0.25)
    logits = np.einsum("hwc,kc->khw", x, weights)
    defect = 1 / (1 + np.exp(logits[0] - logits[1]))  # softmax over two classes, class 1
    full = defect if size is None else np.asarray(
        Image.fromarray(defect.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))
    return full >= threshold, float(defect.max())


def images_folder(root: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for name, (height, width) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / name)
    return root


# ---- setups of the refusal table: each gets the scratch folder and the pipeline's paths --------------------------

def onnx_case(shape: list, image_size: list[int] | None, out_channels: int = 2) -> Callable[[dict], None]:
    def setup(env: dict[str, str]) -> None:
        images_folder(Path(env["tmp"], "images"), {"a.png": (40, 50)})
        conv_onnx(Path(env["tmp"], "model.onnx"), shape, image_size, out_channels)
    return setup


def bmad_unknown_variant(env: dict[str, str]) -> None:
    """BMAD with the training images one level too deep under a name the layout does not know."""
    root = bmad(Path(env["tmp"], "bmad"))
    for base in root.iterdir():
        good = base / "train" / "good"
        (good / "images").mkdir()
        for image in sorted(good.glob("*.png")):
            image.rename(good / "images" / image.name)
    tiny_recipe(Path(env["tmp"], "r.yaml"), root, "bmad")


def tree(categories: dict) -> Callable[[dict], None]:
    def setup(env: dict[str, str]) -> None:
        tiny_recipe(Path(env["tmp"], "r.yaml"), make_mvtec(Path(env["tmp"], "data"), categories))
    return setup


def mask_of_other_aspect(env: dict[str, str]) -> None:
    root = make_mvtec(Path(env["tmp"], "data"), {"disk": {"train_good": 4, "defects": {"crack": 3}}})
    write_mask(root / "disk/ground_truth/crack/001_mask.png", (16, 32))  # the image is 16×16
    tiny_recipe(Path(env["tmp"], "r.yaml"), root)


def empty_category(env: dict[str, str]) -> None:
    root = make_mvtec(Path(env["tmp"], "data"), {"disk": {"train_good": 4, "defects": {"crack": 3}}})
    (root / "void/train/good").mkdir(parents=True)
    (root / "void/test").mkdir()
    recipe = tiny_recipe(Path(env["tmp"], "r.yaml"), root)
    assert invoke("prepare", "--recipe", str(recipe), "--output", str(Path(env["tmp"], "out"))).exit_code == 0


def only_empty_categories(env: dict[str, str]) -> None:
    root = Path(env["tmp"], "data")
    for category in ("void", "hollow"):
        (root / category / "train/good").mkdir(parents=True)
        (root / category / "test/good").mkdir(parents=True)
    tiny_recipe(Path(env["tmp"], "r.yaml"), root)


PREDICT_ONNX = ["predict", "--model-file", "{tmp}/model.onnx", "--threshold", "0.5", "--out", "{tmp}/pred",
                "{tmp}/images"]
EVAL = ["eval", "--recipe", "{recipe}", "--model", "lfd", "--category", "disk", "--output", "{out}", "--device", "cpu"]
PREPARE_TINY = ["prepare", "--recipe", "{tmp}/r.yaml", "--output", "{tmp}/out"]
TRAIN_TINY = ["train", "--recipe", "{tmp}/r.yaml", "--model", "lfd", "--output", "{tmp}/out", "--backbone-weights",
              "none", "--device", "cpu"]

# (name, arguments, setup, environment, fragment of the one line)
REFUSALS = [
    # kind 5: an ONNX model that does not take what predict feeds
    ("onnx-one-channel", PREDICT_ONNX, onnx_case([1, 1, 64, 64], [64, 64]), None,
     "wants 1-channel input of shape [1, 1, 64, 64]"),
    ("onnx-four-channels-dynamic", PREDICT_ONNX, onnx_case(["n", 4, "h", "w"], [64, 64]), None,
     "wants 4-channel input of shape [n, 4, h, w]"),
    ("onnx-not-4d", PREDICT_ONNX, onnx_case([1, 3, 64], [64, 64]), None, "takes input of shape [1, 3, 64]"),
    ("onnx-one-class", PREDICT_ONNX, onnx_case([1, 3, 32, 32], [32, 32], out_channels=1), None,
     "outputs 1 channel(s)"),
    ("onnx-dynamic-side-not-multiple", PREDICT_ONNX, onnx_case(["n", 3, "h", "w"], [60, 64]), None,
     "must be a positive multiple of 32"),
    ("onnx-fixed-and-dynamic-side-no-size", PREDICT_ONNX, onnx_case([1, 3, 32, "w"], None), None,
     "a fixed and a dynamic side"),
    # kind 10: a run of another identity than the one asked for names what exists
    ("eval-other-seed", [*EVAL, "--seed", "0"], None, None,
     "no run for seed 0 in {out}/demo/seas/lfd/seed_0/disk; runs exist for seeds 42 — pass --seed 42"),
    ("eval-other-category", [*EVAL[:6], "mesh", *EVAL[7:]], None, None,
     "no run for category mesh in {out}/demo/seas/lfd/mesh; runs exist for categories disk — pass --category disk"),
    ("eval-unified-not-trained", [*EVAL[:6], "all", *EVAL[7:]], None, None, "pass --category disk"),
    ("eval-other-model", [*EVAL[:4], "sanet_s", *EVAL[5:]], None, None,
     "no run for model sanet_s in {out}/demo/seas/sanet_s/disk; runs exist for models lfd — pass --model lfd"),
    ("eval-other-generator", [*EVAL, "--generator", "none"], None, None,
     "no run for generator none in {out}/demo/none/lfd/disk; runs exist for generators seas — pass --generator seas"),
    ("train-other-generator", ["train", "--recipe", "{recipe}", "--model", "lfd", "--category", "disk", "--output",
                               "{out}", "--device", "cpu", "--generator", "none"], None, None,
     "manifest not found: {out}/demo/none/manifest.csv (run `anoseg prepare` first; prepared for generators seas — "
     "pass --generator seas)"),
    ("predict-checkpoint-of-other-seed", ["predict", "--checkpoint", "{out}/demo/seas/lfd/seed_7/disk/last.pt",
                                          "--out", "{tmp}/pred", "{data}/mvtec/disk/test"], None, None,
     "runs exist for seeds 42: {out}/demo/seas/lfd/disk/last.pt"),
    ("export-checkpoint-of-other-category", ["export", "--checkpoint",
                                             "{out}/demo/seas/lfd/mesh/checkpoints/epoch_001.pt"], None, None,
     "runs exist for categories disk: {out}/demo/seas/lfd/disk/checkpoints/epoch_001.pt"),
    ("report-other-dataset", ["report", "--output", "{out}", "--dataset", "mvtec", "--no-figures"], None, None,
     "datasets with results: demo — pass --dataset demo"),
    # kind 9: names that cannot be a run folder, in the data and on the command line
    ("eval-category-dotdot", [*EVAL[:6], "..", *EVAL[7:]], None, None, "--category '..' cannot name a folder"),
    ("eval-category-climbing", [*EVAL[:6], "../lfd/disk", *EVAL[7:]], None, None,
     "--category '../lfd/disk' cannot name a folder"),
    ("eval-category-newline", [*EVAL[:6], "di\nsk", *EVAL[7:]], None, None, "--category 'di\\nsk' cannot name"),
    ("prepare-category-newline", PREPARE_TINY, tree({"new\nline": {"train_good": 4, "defects": {"crack": 3}}}),
     None, "category folder name 'new\\nline' holds a control character"),
    ("prepare-defect-tab", PREPARE_TINY, tree({"disk": {"train_good": 4, "defects": {"cr\tack": 3}}}), None,
     "defect type folder name 'cr\\tack' holds a control character"),
    ("prepare-mask-of-other-aspect", PREPARE_TINY, mask_of_other_aspect, None, "does not fit"),
    ("train-empty-category", [*TRAIN_TINY, "--category", "void"], empty_category, None,
     "category 'void' is not in the manifest"),
    ("prepare-every-category-empty", PREPARE_TINY, only_empty_categories, None,
     "no usable image under {tmp}/data (4 × train/good or test/good folder(s) without images"),
    # kind 9: thread counts OpenMP cannot use
    ("omp-threads-0", ["models", "--names-only"], None, {"OMP_NUM_THREADS": "0"}, "OMP_NUM_THREADS=0 is not a thread"),
    ("omp-threads-negative", [*EVAL], None, {"OMP_NUM_THREADS": "-2"}, "OMP_NUM_THREADS=-2 is not a thread"),
    ("mkl-threads-word", [*EVAL], None, {"MKL_NUM_THREADS": "four"}, "MKL_NUM_THREADS=four is not a thread"),
    # kind 11: a BMAD tree in neither of BMAD's variants
    ("bmad-unknown-variant", PREPARE_TINY, bmad_unknown_variant, None,
     "the bmad layout reads train/good/*.png or train/good/img/*.png"),
]


def test_refusal_names_are_unique():
    assert len({case[0] for case in REFUSALS}) == len(REFUSALS) >= 20


@pytest.mark.parametrize(("args", "setup", "environment", "fragment"), [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_refused_in_one_line_and_nothing_changes(pipeline, tmp_path, args, setup, environment, fragment):
    env = sandbox(pipeline, tmp_path)
    if setup is not None:
        setup(env)
    before = snapshot(tmp_path, pipeline.data)

    result = invoke(*[arg.format(**env) for arg in args], env=environment)

    one_line_error(result, fragment.format(**env))
    assert snapshot(tmp_path, pipeline.data) == before


# ---- kind 5: models of another input size are fed that size ---------------------------------------------------------

@pytest.mark.parametrize(("shape", "sidecar", "size"), [
    ([1, 3, 32, 32], [64, 64], (32, 32)),  # fixed sides: the model's, whatever the sidecar says
    ([2, 3, 32, 96], [64, 64], (32, 96)),  # and a fixed batch of 2, fed three images
    (["n", 3, 32, "w"], [64, 96], (32, 96)),  # a fixed height and a dynamic width: the sidecar's width
    (["n", 3, "h", "w"], [64, 96], (64, 96)),  # dynamic sides: the sidecar's size
    (["n", 3, "h", "w"], None, None),  # dynamic sides, no size: each image at its own size (padded to 32)
], ids=["fixed-32", "fixed-batch-2", "fixed-height", "dynamic", "dynamic-native"])
def test_predict_feeds_an_onnx_model_its_own_input_size(tmp_path, shape, sidecar, size):
    images = images_folder(tmp_path / "images", {"a.png": (40, 50), "b.png": (64, 64), "c.png": (33, 70)})
    weights = conv_onnx(tmp_path / "model.onnx", shape, sidecar)
    result = invoke("predict", "--model-file", str(tmp_path / "model.onnx"), "--threshold", "0.5", "--out",
                    str(tmp_path / "pred"), "--no-overlays", str(images))
    assert result.exit_code == 0, result.output
    if size is not None and list(size) != sidecar:
        assert f"takes {size[0]}×{size[1]} images" in result.stderr  # said, not silent
    rows = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert len(rows) == 3
    for row in rows.itertuples():
        image = np.asarray(Image.open(row.image).convert("RGB"))
        expected, score = oracle_mask(image, weights, size, 0.5)
        written = np.asarray(Image.open(row.mask)) > 0
        assert written.shape == image.shape[:2]
        assert (written != expected).mean() < 1e-3  # float rounding at the threshold may flip a pixel
        assert 0 < expected.mean() < 1 and row.score == pytest.approx(score, abs=1e-5)


def test_predict_brings_coarse_logits_of_a_native_resolution_model_back_to_the_image(tmp_path):
    """A dynamic model whose logits are at half its input's resolution: the map must cover the whole image."""
    images = images_folder(tmp_path / "images", {"a.png": (40, 50)})
    weights = conv_onnx(tmp_path / "model.onnx", ["n", 3, "h", "w"], None, stride=2)
    result = invoke("predict", "--model-file", str(tmp_path / "model.onnx"), "--threshold", "0.5", "--out",
                    str(tmp_path / "pred"), "--no-overlays", str(images))
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(images / "a.png"))
    padded = np.zeros((64, 64, 3), np.uint8)  # padded to a multiple of 32 with black, as documented
    padded[:40, :50] = image
    x = (padded[::2, ::2].astype(np.float32) / 255 - np.float32(0.5)) / np.float32(0.25)
    coarse = np.einsum("hwc,kc->khw", x, weights)
    logits = np.stack([np.asarray(Image.fromarray(c.astype(np.float32)).resize((64, 64), Image.Resampling.BILINEAR))
                       for c in coarse])[:, :40, :50]
    expected = 1 / (1 + np.exp(logits[0] - logits[1])) >= 0.5
    written = np.asarray(Image.open(pd.read_csv(tmp_path / "pred/predictions.csv")["mask"].iloc[0])) > 0
    assert written.shape == (40, 50) and 0.05 < expected.mean() < 0.95
    assert (written != expected).mean() < 0.02  # PIL's and torch's bilinear differ at the borders only


# ---- kind 6: file names that are not valid UTF-8 -----------------------------------------------------------------

def test_names_that_are_not_utf8_go_through_prepare_train_eval_predict_report(tmp_path):
    category = os.fsdecode(b"caf\xe9")  # a Latin-1 category folder name
    root = make_mvtec(tmp_path / "data", {"cafe": {"train_good": 4, "test_good": 2, "defects": {"crack": 6}}})
    os.rename(root / "cafe", root / category)
    base = root / category
    odd_image, odd_mask = os.fsdecode(b"bad\xff.png"), os.fsdecode(b"bad\xff_mask.png")
    os.rename(base / "test/crack/004.png", base / "test/crack" / odd_image)
    os.rename(base / "ground_truth/crack/004_mask.png", base / "ground_truth/crack" / odd_mask)
    os.rename(base / "train/good/000.png", base / "train/good" / os.fsdecode(b"g\xe9.png"))
    recipe, out = tiny_recipe(tmp_path / "r.yaml", root), tmp_path / "out"

    result = invoke("prepare", "--recipe", str(recipe), "--output", str(out))
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out / "tiny/none/manifest.csv")  # every listed file exists, read back by its name
    assert str(base / "test/crack" / odd_image) in set(manifest["image"])
    assert str(base / "ground_truth/crack" / odd_mask) in set(manifest["mask"])
    assert str(base / "train/good" / os.fsdecode(b"g\xe9.png")) in set(manifest["image"])
    assert set(manifest["category"]) == {category} and len(manifest) == 4 + 2 + 6
    assert b"bad\xff.png" in (out / "tiny/none/manifest.csv").read_bytes()  # the name's own bytes
    report = json.loads((out / "tiny/none/data_report.json").read_text())
    assert report["categories"] == [category]

    for args in (["train", "--recipe", str(recipe), "--model", "lfd", "--category", category, "--output", str(out),
                  "--backbone-weights", "none", "--device", "cpu"],
                 ["eval", "--recipe", str(recipe), "--model", "lfd", "--category", category, "--output", str(out),
                  "--device", "cpu", "--overlays", "1", "--save-scores"],
                 ["report", "--output", str(out), "--format", "csv"]):  # with figures: their titles name it
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    metrics = json.loads((out / "tiny/none/lfd" / category / "eval/epoch_001/metrics.json").read_text())
    assert list(metrics["categories"]) == [category]
    assert b"caf\xe9" in (out / "report.md").read_bytes()
    assert b"caf\xe9" in (out / "report_image_auroc.csv").read_bytes()  # the per-category table
    assert len(list((out / "report_figures").glob("*_pr.png"))) == 1

    result = invoke("predict", "--checkpoint", str(out / "tiny/none/lfd" / category / "last.pt"), "--out",
                    str(tmp_path / "pred"), str(base / "test/crack"))
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "pred/predictions.csv", encoding="utf-8", encoding_errors="surrogateescape")
    odd = rows[rows["image"] == str(base / "test/crack" / odd_image)]
    assert len(odd) == 1 and Path(odd["mask"].iloc[0]).is_file()
    assert Path(odd["mask"].iloc[0]).name == os.fsdecode(b"bad\xff_mask.png")


# ---- kind 11: BMAD as its README draws it ------------------------------------------------------------------------

def relative_rows(manifest: pd.DataFrame, root: Path) -> list[tuple]:
    """The manifest's rows with paths relative to the data root, image and mask folders' own names left out (the
    two BMAD variants keep the same files in differently named folders)."""
    def plain(path: str) -> str:
        parts = Path(path).relative_to(root).parts if path else ()
        return "/".join(p for p in parts if p not in ("img", "label", "anomaly_mask"))
    return sorted((r.category, r.split, r.defect, r.label, plain(r.image), plain(r.mask))
                  for r in manifest.itertuples())


def test_bmad_readme_variant_reads_the_same_samples_as_anomalib_variant(tmp_path):
    manifests = {}
    for name, build in (("anomalib", bmad), ("readme", bmad_readme)):
        root = build(tmp_path / name / "data")
        recipe = tiny_recipe(tmp_path / name / "r.yaml", root, "bmad")
        result = invoke("prepare", "--recipe", str(recipe), "--output", str(tmp_path / name / "out"))
        assert result.exit_code == 0, result.output
        manifest = read_manifest(tmp_path / name / "out/tiny/none/manifest.csv")
        manifests[name] = relative_rows(manifest, root)
        report = json.loads((tmp_path / name / "out/tiny/none/data_report.json").read_text())
        assert set(report["variants"].values()) == {"bmad" if name == "anomalib" else "bmad_readme"}
    # the builder's numbers: 4 train/good, 2 test/good, 3 Ungood of which the first third trains, per category
    counts = pd.DataFrame(manifests["anomalib"], columns=["category", "split", "defect", "label", "image", "mask"])
    assert counts.groupby(["category", "split"]).size().to_dict() == {
        ("Brain", "test"): 4, ("Brain", "train"): 5, ("Liver", "test"): 4, ("Liver", "train"): 5}
    assert manifests["readme"] == manifests["anomalib"]


# ---- kind 9: inputs that are odd but valid -----------------------------------------------------------------------

def cached_masks(out: Path, dataset: str = "tiny") -> dict[str, np.ndarray]:
    """The training/eval cache's mask of every defect image (what the loss and the metrics see), by image name."""
    from anoseg.data.dataset import load_cached
    from anoseg.data.manifest import prepared_mask_threshold

    manifest = read_manifest(out / dataset / "none/manifest.csv")
    rows = manifest[manifest["label"] == 1]
    threshold = prepared_mask_threshold(out / dataset / "none/data_report.json")
    cached = load_cached(rows, (32, 32), out / "cache", "clean", threshold)
    return {Path(p).name: np.asarray(m) for p, m in zip(cached.rows["image"], cached.masks, strict=True)}


def prepared(tmp_path: Path, name: str, build: Callable[[Path], Path], *options: str) -> Path:
    root = build(tmp_path / name / "data")
    recipe = tiny_recipe(tmp_path / name / "r.yaml", root)
    result = invoke("prepare", "--recipe", str(recipe), "--output", str(tmp_path / name / "out"), *options)
    assert result.exit_code == 0, result.output
    return tmp_path / name / "out"


def box_mask(scale: int = 1) -> np.ndarray:
    """A 16×16-based defect drawing (a box and a one-pixel line) at ``scale`` times its size, as a bool array."""
    mask = np.zeros((16, 16), bool)
    mask[4:10, 5:12] = True
    mask[13, :] = True
    return np.kron(mask, np.ones((scale, scale), bool)) if scale > 1 else mask


def mask_tree(encode: Callable[[np.ndarray], np.ndarray], scale: int = 1):
    """A one-category tree whose three defect masks are ``box_mask`` (shifted per image), encoded by ``encode``."""
    def build(root: Path) -> Path:
        make_mvtec(root, {"disk": {"train_good": 4, "defects": {"crack": 3}}})
        for i in range(3):
            drawing = np.roll(box_mask(scale), 2 * i * scale, axis=1)
            Image.fromarray(encode(drawing)).save(root / "disk/ground_truth/crack" / f"{i:03d}_mask.png")
        return root
    return build


def plain_mask(drawing: np.ndarray) -> np.ndarray:
    return drawing.astype(np.uint8) * 255


def test_masks_of_another_size_16_bit_and_non_binary_train_what_a_plain_mask_trains(tmp_path):
    """The oracle: the same drawing stored as a plain 8-bit 0/255 mask at the image's size."""
    reference = cached_masks(prepared(tmp_path, "plain", mask_tree(plain_mask)))
    assert all(m.any() for m in reference.values())
    rng = np.random.default_rng(0)
    variants = {
        "twice-the-size": mask_tree(plain_mask, scale=2),  # 32×32 masks of 16×16 images
        "16-bit-0-65535": mask_tree(lambda d: d.astype(np.uint16) * 65535),  # uint16 arrays save as I;16 PNGs
        "16-bit-0-1": mask_tree(lambda d: d.astype(np.uint16)),
        "non-binary": mask_tree(lambda d: np.where(d, rng.integers(1, 256, d.shape), 0).astype(np.uint8)),
    }
    for name, build in variants.items():
        masks = cached_masks(prepared(tmp_path, name, build))
        assert masks.keys() == reference.keys(), name
        for image, mask in masks.items():
            np.testing.assert_array_equal(mask, reference[image], err_msg=f"{name}: {image}")


def test_mask_threshold_applies_to_16_bit_masks_on_the_8_bit_scale(tmp_path):
    """Soft 16-bit masks with --mask-threshold 127: a pixel is a defect iff its value > 127 × 257."""
    rng = np.random.default_rng(1)
    stored: dict[str, np.ndarray] = {}

    def soft(drawing: np.ndarray) -> np.ndarray:
        values = np.where(drawing, rng.integers(0, 65536, drawing.shape), rng.integers(0, 20000, drawing.shape))
        stored[f"{len(stored):03d}.png"] = values > 127 * 257
        return values.astype(np.uint16)

    masks = cached_masks(prepared(tmp_path, "soft", mask_tree(soft), "--mask-threshold", "127"))
    assert masks.keys() == stored.keys()
    for image, expected in stored.items():  # 16 → 32 px: each mask pixel becomes a 2×2 block
        np.testing.assert_array_equal(masks[image], np.kron(expected, np.ones((2, 2))).astype(np.uint8))


def test_one_pixel_images_prepare_and_predict(pipeline, tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        write_image(root / "disk/train/good" / f"{i:03d}.png", (1, 1))
    for i in range(3):
        write_image(root / "disk/test/crack" / f"{i:03d}.png", (1, 1))
        write_mask(root / "disk/ground_truth/crack" / f"{i:03d}_mask.png", (1, 1), (0, 0, 1, 1) if i else (0, 0, 0, 0))
    recipe = tiny_recipe(tmp_path / "r.yaml", root)
    result = invoke("prepare", "--recipe", str(recipe), "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "out/tiny/none/manifest.csv")
    assert len(manifest) == 7
    masks = cached_masks(tmp_path / "out")  # a 1×1 defect pixel covers the whole 32×32 input
    assert [int(m.sum()) for _, m in sorted(masks.items())] == [0, 32 * 32, 32 * 32]

    # predict: the oracle is the checkpoint's network run by hand on the upsampled pixel
    checkpoint = Path(RUN.format(out=pipeline.out)) / "last.pt"
    pixel = np.array([[[200, 30, 90]]], np.uint8)
    Image.fromarray(pixel).save(tmp_path / "one.png")
    result = invoke("predict", "--checkpoint", str(checkpoint), "--threshold", "0.3", "--out", str(tmp_path / "pred"),
                    "--device", "cpu", str(tmp_path / "one.png"))
    assert result.exit_code == 0, result.output
    from anoseg.engine.checkpoint import build_model

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["meta"]
    x = torch.from_numpy(np.broadcast_to(pixel, (64, 64, 3)).astype(np.float32) / 255).permute(2, 0, 1)[None]
    x = (x - torch.tensor(meta["mean"]).view(1, 3, 1, 1)) / torch.tensor(meta["std"]).view(1, 3, 1, 1)
    with torch.inference_mode():
        defect = torch.softmax(build_model(ckpt)(x), dim=1)[0, 1].numpy()
    row = pd.read_csv(tmp_path / "pred/predictions.csv").iloc[0]
    assert row["score"] == pytest.approx(float(defect.max()), abs=1e-4)
    mask = np.asarray(Image.open(row["mask"]))
    expected = np.asarray(Image.fromarray(defect).resize((1, 1), Image.Resampling.BILINEAR)) >= 0.3
    assert mask.shape == (1, 1) and bool(mask[0, 0]) == bool(expected[0, 0])


def test_symbolic_links_in_predict_inputs_are_followed_once_and_loops_end(pipeline, tmp_path):
    inputs, other = tmp_path / "line", tmp_path / "elsewhere"
    images_folder(inputs / "cam0", {"a.png": (40, 40)})
    images_folder(other, {"b.png": (40, 40)})
    os.symlink(other, inputs / "cam0" / "linked")  # a folder of images linked in: scored
    os.symlink("..", inputs / "cam0" / "loop")  # a link back up: would loop
    os.symlink(other / "b.png", inputs / "c.png")  # an image linked in
    result = invoke("predict", "--checkpoint", str(Path(RUN.format(out=pipeline.out)) / "last.pt"), "--threshold",
                    "0.5", "--out", str(tmp_path / "pred"), "--no-overlays", "--device", "cpu", str(inputs))
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "pred/predictions.csv")
    assert sorted(Path(p).relative_to(inputs).as_posix() for p in rows["image"]) == [
        "c.png", "cam0/a.png", "cam0/linked/b.png"]
    written = sorted(p.relative_to(tmp_path / "pred").as_posix() for p in (tmp_path / "pred").rglob("*_mask.png"))
    assert written == ["c_mask.png", "cam0/a_mask.png", "cam0/linked/b_mask.png"]


def test_a_symlink_loop_in_the_data_tree_is_reported_and_changes_no_sample(tmp_path):
    spec = {"disk": {"train_good": 4, "defects": {"crack": 3}}}
    plain = prepared(tmp_path, "plain", lambda root: make_mvtec(root, spec))

    def looped(root: Path) -> Path:
        make_mvtec(root, spec)
        os.symlink("..", root / "disk/test/loop")  # test/loop/ is the category folder again
        os.symlink("self", root / "disk/test/self")  # a link to itself
        os.symlink(".", root / "disk/train/good/again")
        return root

    looped_out = prepared(tmp_path, "looped", looped)
    rows = {name: relative_rows(read_manifest(out / "tiny/none/manifest.csv"), tmp_path / name / "data")
            for name, out in (("plain", plain), ("looped", looped_out))}
    assert rows["looped"] == rows["plain"]
    issues = json.loads((looped_out / "tiny/none/data_report.json").read_text())["issues"]
    assert [e["path"] for e in issues["empty_defect"]["examples"]] == [str(tmp_path / "looped/data/disk/test/loop")]


def test_empty_category_and_empty_good_folder_are_reported(tmp_path):
    def build(root: Path) -> Path:
        make_mvtec(root, {"disk": {"train_good": 4, "defects": {"crack": 3}}})
        (root / "void/train/good").mkdir(parents=True)
        (root / "void/test/good/sub").mkdir(parents=True)
        return root

    out = prepared(tmp_path, "empty", build)
    report = json.loads((out / "tiny/none/data_report.json").read_text())
    assert report["counts"]["void"] == dict.fromkeys(report["counts"]["void"], 0)
    empty = sorted(e["path"] for e in report["issues"]["empty_good"]["examples"])
    data = tmp_path / "empty/data"
    assert empty == [str(data / "void/test/good"), str(data / "void/train/good")]
    assert any("sub-folders are not read: sub" in e["message"] for e in report["issues"]["empty_good"]["examples"])
    assert report["issues"]["untested_category"]["count"] == 1


def test_names_with_dots_and_a_leading_dash_train_and_evaluate(tmp_path):
    root = make_mvtec(tmp_path / "data", {"-cat": {"train_good": 4, "defects": {"a..b": 6, "-dent": 3}}})
    recipe, out = tiny_recipe(tmp_path / "r.yaml", root), tmp_path / "out"
    for args in (["prepare", "--recipe", str(recipe), "--output", str(out)],
                 ["train", "--recipe", str(recipe), "--model", "lfd", "--category", "-cat", "--output", str(out),
                  "--backbone-weights", "none", "--device", "cpu"],
                 ["eval", "--recipe", str(recipe), "--model", "lfd", "--category", "-cat", "--output", str(out),
                  "--device", "cpu"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    manifest = read_manifest(out / "tiny/none/manifest.csv")
    assert sorted(set(manifest["defect"])) == ["-dent", "a..b", "good"]
    assert (manifest[manifest["split"] == "train"].groupby("defect").size().to_dict()
            == {"a..b": 2, "-dent": 1, "good": 4})  # the 1/3 rule, as for any name
    metrics = json.loads((out / "tiny/none/lfd/-cat/eval/epoch_001/metrics.json").read_text())
    scored = metrics["categories"]["-cat"]
    assert list(metrics["categories"]) == ["-cat"]
    assert (scored["n_images"], scored["n_anomalous_images"]) == (2 + 4 + 2, 4 + 2)  # test: 2 good, ⅔ of each type


def test_batch_size_above_the_training_set_trains_as_one_batch_of_the_whole_set(tmp_path):
    """The oracle: the same run with the batch size equal to the number of training images."""
    root = make_mvtec(tmp_path / "data", {"disk": {"train_good": 4, "defects": {"crack": 6}}})
    weights = {}
    for batch in (6, 1000):
        recipe, out = tiny_recipe(tmp_path / f"r{batch}.yaml", root, batch=batch), tmp_path / f"out{batch}"
        for args in (["prepare", "--recipe", str(recipe), "--output", str(out)],
                     ["train", "--recipe", str(recipe), "--model", "lfd", "--category", "disk", "--output", str(out),
                      "--backbone-weights", "none", "--device", "cpu", "--precision", "32-true"]):
            result = invoke(*args)
            assert result.exit_code == 0, result.output
        checkpoint = load_checkpoint(out / "tiny/none/lfd/disk/last.pt")
        assert checkpoint["meta"]["n_train_images"] == 6
        weights[batch] = checkpoint["state_dict"]
    assert weights[6].keys() == weights[1000].keys()
    for name, tensor in weights[6].items():
        torch.testing.assert_close(weights[1000][name], tensor, rtol=0, atol=0, msg=name)
