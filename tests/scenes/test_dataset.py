"""The road/scene training dataset (fixed-size crops, ignore handling, augmentation) and native-size inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anoseg.data.scenes import build_scene_manifest, fit_to_size, scene_train_dataset
from anoseg.data.scenes.labels import cityscapes_train_ids
from anoseg.engine.inference import dense_logits
from anoseg.errors import AnosegError
from anoseg.recipes import load_recipe

from .synthetic import KITTI_SIZE, SCENE_SIZE, make_cityscapes, make_kitti


def test_fit_to_size_pads_with_ignore_and_crops():
    image = torch.full((3, 10, 40), 7, dtype=torch.uint8)
    label = torch.ones(10, 40, dtype=torch.uint8)
    out_image, out_label = fit_to_size(image, label, (16, 32), "center")
    assert out_image.shape == (3, 16, 32) and out_label.shape == (16, 32)
    assert (out_label[:3] == 255).all() and (out_label[3:13] == 1).all() and (out_label[13:] == 255).all()
    assert (out_image[:, :3] == 0).all() and (out_image[:, 3:13] == 7).all()
    torch.manual_seed(0)
    out_image, out_label = fit_to_size(image, label, (16, 32), "random")
    assert (out_label[:10] == 1).all() and (out_label[10:] == 255).all()  # random: padding at the bottom only


def kitti_rows(tmp_path, **options):
    root = make_kitti(tmp_path / "kitti", {"um": 3, "umm": 2, "uu": 2})
    base = load_recipe("kitti_road")
    recipe = base.override(data_root=root, options={**base.options, **options})
    frame, _ = build_scene_manifest(recipe)
    return frame[frame["split"] == "train"].reset_index(drop=True), recipe


@pytest.mark.parametrize("ignore_invalid", [True, False])
def test_kitti_outside_the_evaluation_area_is_ignored_in_training(tmp_path, ignore_invalid):
    rows, recipe = kitti_rows(tmp_path, ignore_invalid=ignore_invalid)
    recipe = recipe.override(train__augment=(), train__crop_size=KITTI_SIZE)
    dataset = scene_train_dataset(rows, recipe)
    image, target = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, *KITTI_SIZE)
    assert target.dtype == torch.int64 and target.shape == KITTI_SIZE
    from PIL import Image

    gt = np.asarray(Image.open(rows.loc[0, "mask"]))
    invalid = torch.from_numpy(gt[..., 0] == 0)
    road = torch.from_numpy(gt[..., 2] > 0)
    assert invalid.any() and road.any()
    assert (target[invalid] == (255 if ignore_invalid else 0)).all()
    assert (target[road] == 1).all() and (target[~road & ~invalid] == 0).all()


def test_augmented_samples_have_the_crop_size_and_only_known_labels(tmp_path):
    rows, recipe = kitti_rows(tmp_path)
    recipe = recipe.override(train__crop_size=(48, 96))
    dataset = scene_train_dataset(rows, recipe)
    assert "scale" in recipe.train.augment and "brightness" in recipe.train.augment
    torch.manual_seed(1)
    first = [dataset[i] for i in range(len(dataset))]
    for image, target in first:
        assert image.shape == (3, 48, 96) and target.shape == (48, 96)
        assert set(target.unique().tolist()) <= {0, 1, 255}  # nearest resizing never invents labels
    torch.manual_seed(1)
    again = [dataset[i] for i in range(len(dataset))]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    batch = torch.utils.data.default_collate(first[:2])
    assert batch[0].shape == (2, 3, 48, 96)


def test_cityscapes_targets_are_train_ids_and_custom_ignore_index(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    recipe = load_recipe("cityscapes").override(data_root=root, ignore_index=254, train__augment=(),
                                                train__crop_size=SCENE_SIZE)
    frame, _ = build_scene_manifest(recipe)
    rows = frame[frame["split"] == "train"].reset_index(drop=True)
    _, target = scene_train_dataset(rows, recipe)[0]
    from PIL import Image

    expected = cityscapes_train_ids(np.asarray(Image.open(rows.loc[0, "mask"]))).astype(np.int64)
    expected[expected == 255] = 254
    assert torch.equal(target, torch.from_numpy(expected))
    with pytest.raises(AnosegError, match="vflip"):
        scene_train_dataset(rows, recipe.override(train__augment=("vflip",)))
    with pytest.raises(AnosegError, match="crop_size"):
        scene_train_dataset(rows, recipe.override({"train.crop_size": None}))


def test_dense_logits_pads_to_a_multiple_of_32_and_crops_back():
    seen = []

    def run(batch):  # logits = the input's red channel, so the crop position is visible
        seen.append(batch.shape)
        return np.concatenate([batch[:, :1], -batch[:, :1]], axis=1)

    image = np.zeros((37, 70, 3), np.uint8)
    image[..., 0] = np.arange(70, dtype=np.uint8)[None]
    logits = dense_logits(run, image, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert seen[-1] == (1, 3, 64, 96) and logits.shape == (2, 37, 70)
    assert np.allclose(logits[0], image[..., 0] / 255.0)
    logits = dense_logits(run, image, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), size=(32, 64))
    assert seen[-1] == (1, 3, 32, 64) and logits.shape == (2, 37, 70)
