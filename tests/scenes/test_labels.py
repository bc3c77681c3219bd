"""Label decoding of KITTI Road, Cityscapes and CamVid (docs/protocol.md §5 tables written out by hand here)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from anoseg.data.scenes.labels import (
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    camvid_colour_classes,
    camvid_index_classes,
    cityscapes_train_ids,
    class_palette,
    colourize,
    kitti_target,
    read_kitti_gt,
    read_label,
)
from anoseg.errors import AnosegError

# docs/protocol.md §5.2, column by column
CITYSCAPES_TABLE = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# docs/protocol.md §5.3, the colour convention's own order (index, name, colour)
CAMVID_COLOUR_TABLE = [("bicyclist", (0, 128, 192)), ("building", (128, 0, 0)), ("car", (64, 0, 128)),
                       ("pole", (192, 192, 128)), ("fence", (64, 64, 128)), ("pedestrian", (64, 64, 0)),
                       ("road", (128, 64, 128)), ("sidewalk", (0, 0, 192)), ("sign_symbol", (192, 128, 128)),
                       ("sky", (128, 128, 128)), ("tree", (128, 128, 0))]


def test_cityscapes_label_ids_map_to_the_19_train_ids_and_everything_else_is_ignored():
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    train_ids = cityscapes_train_ids(ids).reshape(-1)
    for label_id in range(256):
        assert train_ids[label_id] == CITYSCAPES_TABLE.get(label_id, 255), label_id
    for ignored in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255):
        assert train_ids[ignored] == 255
    assert CITYSCAPES_CLASSES[CITYSCAPES_TABLE[26]] == "car" and CITYSCAPES_CLASSES[CITYSCAPES_TABLE[7]] == "road"


def test_camvid_colours_map_to_the_segnet_order():
    colours = np.array([[c for _, c in CAMVID_COLOUR_TABLE]], np.uint8)
    decoded = camvid_colour_classes(colours)[0]
    assert [CAMVID_CLASSES[i] for i in decoded] == [name for name, _ in CAMVID_COLOUR_TABLE]
    # another CamVid palette colour (Animal), black (Void) and a near miss are all ignored
    assert camvid_colour_classes(np.array([[[64, 128, 64], [0, 0, 0], [128, 64, 129]]], np.uint8)).tolist() == \
        [[255, 255, 255]]


def test_camvid_segnet_indices_keep_0_to_10_and_void_is_ignored():
    decoded = camvid_index_classes(np.arange(16, dtype=np.uint8)[None])[0]
    assert decoded[:11].tolist() == list(range(11))
    assert set(decoded[11:].tolist()) == {255}
    assert CAMVID_CLASSES[:4] == ("sky", "building", "pole", "road")


def test_kitti_road_from_blue_and_invalid_from_red():
    gt = np.array([[[255, 0, 255], [255, 0, 0], [0, 0, 0], [0, 0, 255]]], np.uint8)
    assert kitti_target(gt).tolist() == [[1, 0, 255, 255]]
    # LFD_RoadSeg trains the area outside the evaluation as non-road: road is still the blue plane
    assert kitti_target(gt, ignore_invalid=False).tolist() == [[1, 0, 0, 1]]


def test_read_label_decodes_files_and_names_a_wrong_file(tmp_path):
    ids = np.array([[7, 26, 0], [33, 4, 24]], np.uint8)
    Image.fromarray(ids).save(tmp_path / "x_gtFine_labelIds.png")
    assert read_label(tmp_path / "x_gtFine_labelIds.png", "cityscapes_labelids").tolist() == [[0, 13, 255],
                                                                                               [18, 255, 11]]
    Image.fromarray(np.dstack([ids] * 3)).save(tmp_path / "x_gtFine_color.png")
    with pytest.raises(AnosegError, match=r"x_gtFine_color\.png"):
        read_label(tmp_path / "x_gtFine_color.png", "cityscapes_labelids")
    gt = np.zeros((2, 3, 3), np.uint8)
    gt[1] = (255, 0, 255)
    Image.fromarray(gt).save(tmp_path / "um_road_000000.png")
    road, valid = read_kitti_gt(tmp_path / "um_road_000000.png")
    assert road.sum() == 3 and valid.sum() == 3
    assert read_label(tmp_path / "um_road_000000.png", "kitti_rgb").tolist() == [[255] * 3, [1] * 3]
    with pytest.raises(AnosegError, match=r"missing\.png"):
        read_label(tmp_path / "missing.png", "camvid_index")
    with pytest.raises(AnosegError, match="unknown label format"):
        read_label(tmp_path / "um_road_000000.png", "pascal")


def test_palettes_are_the_datasets_own_or_distinct():
    assert class_palette(CITYSCAPES_CLASSES)[0].tolist() == [128, 64, 128]
    assert class_palette(CAMVID_CLASSES)[CAMVID_CLASSES.index("car")].tolist() == [64, 0, 128]
    generic = class_palette([f"c{i}" for i in range(30)])
    assert len({tuple(c) for c in generic.tolist()}) == 30
    picture = colourize(np.array([[0, 1, 255]], np.uint8), class_palette(CAMVID_CLASSES))
    assert picture.tolist() == [[[128, 128, 128], [128, 0, 0], [0, 0, 0]]]
