"""Tiny KITTI Road / Cityscapes / CamVid trees with known labels, and an oracle model that reads the label back.

Every image encodes its pixels' class in the red channel (``encode``), so ``OracleModel`` predicts the ground truth
exactly wherever a class is defined; ignored pixels encode a *wrong* class on purpose, so any evaluation that counts
them scores below 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from anoseg.data.scenes.labels import CAMVID_COLOURS, CITYSCAPES_LABEL_IDS
from anoseg.recipes import IMAGENET_MEAN, IMAGENET_STD, load_recipe

KITTI_SIZE = (64, 192)
SCENE_SIZE = (64, 128)
WRONG_CLASS = 5  # what ignored pixels "look like" in the images


def encode(classes: np.ndarray, seed: int = 0) -> np.ndarray:
    """An RGB image whose red channel is ``10 + 12 * class`` (class 255 → ``WRONG_CLASS``); noise elsewhere."""
    rng = np.random.default_rng(seed)
    classes = np.where(classes == 255, WRONG_CLASS, classes).astype(np.int64)
    image = rng.integers(0, 256, (*classes.shape, 3), dtype=np.uint8)
    image[..., 0] = np.clip(10 + 12 * classes, 0, 255).astype(np.uint8)
    return image


class OracleModel(torch.nn.Module):
    """Decodes ``encode``: one-hot logits of the class written in the (normalised) red channel."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255.0
        classes = ((red - 10.0) / 12.0).round().clamp(0, self.num_classes - 1).long()
        return torch.nn.functional.one_hot(classes, self.num_classes).permute(0, 3, 1, 2).float() * 20.0


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def kitti_gt(height: int, width: int, seed: int) -> np.ndarray:
    """A KITTI-style gt image: black (outside the evaluation area) at the top, red non-road, magenta road below."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((height, width, 3), np.uint8)
    horizon = height // 4 + int(rng.integers(0, 4))
    gt[horizon:] = (255, 0, 0)
    left, right = width // 4 + int(rng.integers(0, 8)), 3 * width // 4 - int(rng.integers(0, 8))
    gt[height // 2:, left:right] = (255, 0, 255)
    return gt


def make_kitti(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = KITTI_SIZE) -> Path:
    """``training/image_2`` + ``training/gt_image_2`` plus an ego-lane file and stray files that must be ignored."""
    counts = counts or {"um": 5, "umm": 5, "uu": 5}
    for category, n in counts.items():
        for index in range(n):
            seed = 100 * sorted(counts).index(category) + index
            gt = kitti_gt(*size, seed)
            road = gt[..., 2] > 0
            invalid = gt[..., 0] == 0
            # outside the evaluation area the image "looks like" road: counted pixels would be false positives
            _save(root / "training" / "image_2" / f"{category}_{index:06d}.png", encode(np.where(road | invalid, 1, 0),
                                                                                       seed))
            _save(root / "training" / "gt_image_2" / f"{category}_road_{index:06d}.png", gt)
    _save(root / "training" / "gt_image_2" / "um_lane_000000.png", kitti_gt(*size, 1))
    (root / "training" / "image_2" / "notes.txt").write_text("not an image")
    (root / "testing" / "image_2").mkdir(parents=True)
    return root


def cityscapes_ids(height: int, width: int, seed: int) -> np.ndarray:
    """labelIds: road (7) at the bottom, sky (23) at the top, a car (26), unlabeled (0) and static (4) patches."""
    rng = np.random.default_rng(seed)
    ids = np.full((height, width), 21, np.uint8)  # vegetation
    ids[: height // 4] = 23
    ids[height // 2:] = 7
    x = int(rng.integers(0, width - 24))
    ids[height // 2 - 8: height // 2 + 8, x: x + 24] = 26
    ids[-4:, :10] = 0
    ids[:4, -6:] = 4
    return ids


def make_cityscapes(root: Path, cities: dict[str, dict[str, int]] | None = None,
                    size: tuple[int, int] = SCENE_SIZE) -> Path:
    """``leftImg8bit/<subset>/<city>`` + ``gtFine/<subset>/<city>`` (labelIds plus the colour/instance files)."""
    cities = cities or {"train": {"aachen": 3, "bochum": 2}, "val": {"lindau": 2}}
    table = {label_id: train_id for train_id, label_id in enumerate(CITYSCAPES_LABEL_IDS)}
    for subset, per_city in cities.items():
        for city, n in per_city.items():
            for frame in range(n):
                stem = f"{city}_{frame:06d}_000019"
                ids = cityscapes_ids(*size, seed=frame + 7 * len(city))
                train_ids = np.vectorize(lambda v: table.get(int(v), 255))(ids).astype(np.uint8)
                _save(root / "leftImg8bit" / subset / city / f"{stem}_leftImg8bit.png", encode(train_ids, frame))
                _save(root / "gtFine" / subset / city / f"{stem}_gtFine_labelIds.png", ids)
                _save(root / "gtFine" / subset / city / f"{stem}_gtFine_color.png", np.dstack([ids] * 3))
                _save(root / "gtFine" / subset / city / f"{stem}_gtFine_instanceIds.png", ids)
    (root / "leftImg8bit" / "train" / "aachen" / ".DS_Store").write_text("")
    return root


CAMVID_NAMES = {"train": ["0001TP_006690", "0001TP_006720", "0006R0_f01800"], "val": ["0016E5_07959", "0016E5_07961"],
                "test": ["Seq05VD_f00000", "0001TP_008550"]}


def camvid_classes(height: int, width: int, seed: int) -> np.ndarray:
    """Canonical class ids 0–10 in horizontal bands, with a void (255) patch."""
    rng = np.random.default_rng(seed)
    classes = np.zeros((height, width), np.uint8)
    bands = np.linspace(0, height, 12).astype(int)
    for class_id in range(11):
        classes[bands[class_id]: bands[class_id + 1]] = (class_id + seed) % 11
    y, x = int(rng.integers(0, height - 6)), int(rng.integers(0, width - 6))
    classes[y: y + 6, x: x + 6] = 255
    return classes


def make_camvid_segnet(root: Path, size: tuple[int, int] = SCENE_SIZE) -> Path:
    """SegNet tutorial: ``<subset>/`` + ``<subset>annot/``, index labels, void = 11."""
    for subset, names in CAMVID_NAMES.items():
        for i, name in enumerate(names):
            classes = camvid_classes(*size, seed=i + len(subset))
            _save(root / subset / f"{name}.png", encode(classes, i))
            _save(root / f"{subset}annot" / f"{name}.png", np.where(classes == 255, 11, classes).astype(np.uint8))
    return root


def make_camvid_colour(root: Path, size: tuple[int, int] = SCENE_SIZE, lists: bool = True) -> Path:
    """Full-resolution convention: ``images/<name>.png`` + ``labels/<name>_L.png`` colour labels; the void patch is
    a colour outside the 11 classes. Split lists (mixed line styles) or ``images/<subset>/`` folders."""
    palette = np.array((*CAMVID_COLOURS, (64, 128, 64)), np.uint8)  # index 11: "Animal", not one of the 11
    for subset, names in CAMVID_NAMES.items():
        lines = []
        for i, name in enumerate(names):
            classes = camvid_classes(*size, seed=i + len(subset))
            folder = "" if lists else f"{subset}/"
            _save(root / "images" / f"{folder}{name}.png", encode(classes, i))
            _save(root / "labels" / f"{folder}{name}_L.png", palette[np.where(classes == 255, 11, classes)])
            lines.append(f"images/{name}.png labels/{name}_L.png" if i % 2 == 0 else name)
        if lists:
            (root / f"{subset}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_test_recipe(tmp_path: Path, name: str, data_root: Path, **train) -> Path:
    """The shipped recipe with a tiny crop, batch 2, one epoch and no workers, written to ``tmp_path``."""
    source = load_recipe(name).source
    raw = yaml.safe_load(source.read_text())
    raw["data_root"] = str(data_root)
    size = KITTI_SIZE if name == "kitti_road" else SCENE_SIZE
    raw["train"].update({"crop_size": list(size), "batch_size": 2, "epochs": 1, "workers": 0, "ohem_min_kept": 500,
                         "checkpoint_every": 1, **train})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
