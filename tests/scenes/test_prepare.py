"""Layout readers, split and fold assignment, and the data report of the road/scene recipes on tiny trees."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anoseg.data.scenes import build_scene_manifest, kitti_folds, read_layout, row_label_formats
from anoseg.errors import AnosegError
from anoseg.recipes import load_recipe

from .synthetic import make_camvid_colour, make_camvid_segnet, make_cityscapes, make_kitti


def recipe(name, root, **options):
    base = load_recipe(name)
    return base.override(data_root=root, options={**base.options, **options})


def test_kitti_reader_uses_the_exact_road_pattern(tmp_path):
    root = make_kitti(tmp_path / "kitti", {"um": 3, "umm": 4, "uu": 2})
    scan = read_layout("kitti_road", root, ())
    by_category = {c: sum(p.category == c for p in scan.pairs) for c in ("um", "umm", "uu")}
    assert by_category == {"um": 3, "umm": 4, "uu": 2}  # a `um*` glob would count umm (and um_lane) as um
    assert all(p.label.name == p.image.name.replace("_", "_road_", 1) for p in scan.pairs)
    kinds = sorted(i.kind for i in scan.issues)
    assert kinds == ["ignored_file", "lane_ground_truth"]


def test_kitti_folds_are_round_robin_per_category_and_order_free():
    names = [(c, f"{c}_{i:06d}.png") for c in ("um", "umm", "uu") for i in range(12)]
    folds = kitti_folds(names, 5)
    shuffled = names[:]
    random.Random(3).shuffle(shuffled)
    assert kitti_folds(shuffled, 5) == folds
    assert [folds[("umm", f"umm_{i:06d}.png")] for i in range(12)] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    sizes = np.bincount(list(folds.values()))
    assert sizes.tolist() == [9, 9, 6, 6, 6]


def test_kitti_manifest_records_folds_and_holds_out_val_fold(tmp_path):
    root = make_kitti(tmp_path / "kitti", {"um": 6, "umm": 5, "uu": 5})
    frame, report = build_scene_manifest(recipe("kitti_road", root))
    again, _ = build_scene_manifest(recipe("kitti_road", root))
    assert frame.equals(again)
    assert set(frame["fold"]) == {"0", "1", "2", "3", "4"}
    assert (frame["split"] == np.where(frame["fold"] == "0", "test", "train")).all()
    um = frame[frame["category"] == "um"].sort_values("image")
    assert um["fold"].tolist() == ["0", "1", "2", "3", "4", "0"]
    assert (frame["label_format"] == "kitti_rgb").all() and (frame["defect"] == "training").all()
    assert report["folds"]["val_fold"] == 0 and report["folds"]["counts"]["0"] == {"um": 2, "umm": 1, "uu": 1}
    assert report["counts"]["um"] == {"test": 2, "train": 4}
    held_out, _ = build_scene_manifest(recipe("kitti_road", root, val_fold=3))
    assert set(held_out[held_out["split"] == "test"]["fold"]) == {"3"}
    # the folds never move, only which one is held out
    assert dict(zip(held_out["image"], held_out["fold"], strict=True)) == dict(zip(frame["image"], frame["fold"],
                                                                                    strict=True))
    only_uu, _ = build_scene_manifest(recipe("kitti_road", root), categories=["uu"])
    assert set(only_uu["category"]) == {"uu"}
    with pytest.raises(AnosegError, match="um, umm, uu"):
        build_scene_manifest(recipe("kitti_road", root), categories=["xx"])
    with pytest.raises(AnosegError, match="val_fold"):
        build_scene_manifest(recipe("kitti_road", root, val_fold=5))


def test_kitti_image_without_ground_truth_strict_and_lenient(tmp_path):
    root = make_kitti(tmp_path / "kitti", {"um": 3, "umm": 2, "uu": 2})
    (root / "training" / "gt_image_2" / "um_road_000001.png").unlink()
    with pytest.raises(AnosegError, match=r"um_000001\.png"):
        build_scene_manifest(recipe("kitti_road", root))
    frame, report = build_scene_manifest(recipe("kitti_road", root), strict=False)
    assert len(frame) == 6 and not frame["image"].str.endswith("um_000001.png").any()
    assert report["issues"]["image_without_label"]["count"] == 1 and report["warnings"]


def corrupt_pixels_keep_crcs(path: Path) -> None:
    """Replace a PNG's pixel data by bytes that do not inflate, with valid chunk CRCs: a header/CRC check passes, only
    a full decode fails."""
    data = path.read_bytes()
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start:start + 4])[0]
    body = b"\x78\x9c" + b"\xff" * (length - 2)
    chunk = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    path.write_bytes(data[:start] + chunk + data[start + 12 + length:])


def test_scene_files_are_fully_decoded_as_anomaly_files(tmp_path):
    root = make_kitti(tmp_path / "kitti", {"um": 3, "umm": 2, "uu": 2})
    label = root / "training" / "gt_image_2" / "um_road_000001.png"
    corrupt_pixels_keep_crcs(label)
    Image.open(label).verify()  # the header/CRC check alone finds nothing wrong
    with pytest.raises(AnosegError, match=r"um_road_000001\.png.*--lenient"):
        build_scene_manifest(recipe("kitti_road", root))
    frame, report = build_scene_manifest(recipe("kitti_road", root), strict=False)
    assert len(frame) == 6 and not frame["image"].str.endswith("um_000001.png").any()
    unreadable = report["issues"]["unreadable_label"]
    assert unreadable["count"] == 1 and unreadable["severity"] == "error" and unreadable["case"] is None
    assert unreadable["examples"][0]["path"] == str(label)
    assert report["warnings"] == [f"1 × unreadable or truncated label file(s), image dropped (e.g. {label})"]


def test_cityscapes_pairs_by_prefix_and_maps_subsets(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    frame, report = build_scene_manifest(recipe("cityscapes", root))
    assert report["label_format"] == "cityscapes_labelids" and report["variant"] == "official"
    assert frame.groupby(["split", "category"]).size().to_dict() == {("test", "lindau"): 2, ("train", "aachen"): 3,
                                                                      ("train", "bochum"): 2}
    assert (frame["defect"] == np.where(frame["split"] == "train", "train", "val")).all()
    for image, label in zip(frame["image"], frame["mask"], strict=True):
        assert label.endswith("_gtFine_labelIds.png")
        assert image.rsplit("/", 1)[1].removesuffix("_leftImg8bit.png") == \
            label.rsplit("/", 1)[1].removesuffix("_gtFine_labelIds.png")
    assert frame["fold"].eq("").all() and frame["orig_mode"].eq("RGB").all()
    assert sorted(frame[frame["category"] == "aachen"]["index_in_defect"]) == [0, 1, 2]


def test_cityscapes_missing_label_and_wrong_class_count(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    next((root / "gtFine" / "val" / "lindau").glob("*_labelIds.png")).unlink()
    with pytest.raises(AnosegError, match=r"lindau_000000_000019_gtFine_labelIds\.png"):
        build_scene_manifest(recipe("cityscapes", root))
    with pytest.raises(AnosegError, match="19 classes"):
        eleven = recipe("cityscapes", root)
        build_scene_manifest(eleven.override(num_classes=11, class_names=eleven.class_names[:11]), strict=False)


def test_camvid_segnet_convention_is_detected(tmp_path):
    root = make_camvid_segnet(tmp_path / "camvid")
    frame, report = build_scene_manifest(recipe("camvid", root))
    assert report["variant"] == "segnet_folders" and report["label_format"] == "camvid_index"
    assert (frame["label_format"] == "camvid_index").all()
    assert frame.groupby("split").size().to_dict() == {"test": 2, "train": 5}  # train = train + val
    assert set(frame[frame["split"] == "train"]["defect"]) == {"train", "val"}
    assert {"0001TP", "0016E5", "Seq05VD"} <= set(frame["category"])


@pytest.mark.parametrize("lists", [True, False])
def test_camvid_colour_convention_with_lists_or_folders(tmp_path, lists):
    root = make_camvid_colour(tmp_path / "camvid", lists=lists)
    frame, report = build_scene_manifest(recipe("camvid", root))
    assert report["label_format"] == "camvid_colour"
    assert report["variant"] == ("images_labels_lists" if lists else "images_labels_folders")
    assert frame.groupby("split").size().to_dict() == {"test": 2, "train": 5}
    assert frame["mask"].str.endswith("_L.png").all()


def test_camvid_mixed_conventions_are_refused(tmp_path):
    root = make_camvid_segnet(tmp_path / "camvid")
    label = next((root / "testannot").glob("*.png"))
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(label)
    with pytest.raises(AnosegError, match="mixed label conventions"):
        build_scene_manifest(recipe("camvid", root))


def test_missing_trees_name_the_expected_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnosegError, match="image_2"):
        build_scene_manifest(recipe("kitti_road", tmp_path / "empty"))
    with pytest.raises(AnosegError, match="leftImg8bit"):
        build_scene_manifest(recipe("cityscapes", tmp_path / "empty"))
    with pytest.raises(AnosegError, match="trainannot"):
        build_scene_manifest(recipe("camvid", tmp_path / "empty"))
    with pytest.raises(AnosegError, match="unknown option"):
        build_scene_manifest(recipe("camvid", tmp_path / "empty", val_fold=1))


@pytest.mark.parametrize(("name", "build"), [("kitti_road", make_kitti), ("cityscapes", make_cityscapes),
                                             ("camvid", make_camvid_segnet), ("camvid", make_camvid_colour)])
def test_label_format_column_and_its_fallback_agree(tmp_path, name, build):
    frame, _ = build_scene_manifest(recipe(name, build(tmp_path / "data")))
    assert row_label_formats(frame, name) == frame["label_format"].tolist()
    # a manifest written without the optional column decodes the same way
    assert row_label_formats(frame.drop(columns="label_format"), name) == frame["label_format"].tolist()
