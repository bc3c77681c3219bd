"""The training-side split settings (recipe ``split``): a validation part held out by file name, and the fraction of
real defects that train, with the protocol's test part unchanged for every value."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from anoseg.constants import PROTOCOL_REAL_FRACTION, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL
from anoseg.data.build import build_manifest
from anoseg.data.manifest import count_table, read_manifest, write_manifest
from anoseg.data.split import hash_fraction, n_real_train, n_train
from anoseg.errors import AnosegError
from anoseg.recipes import SplitSettings, load_recipe

from .conftest import write_image, write_mask

TREE = {"bottle": {"train_good": 40, "test_good": 6, "defects": {"crack": 12, "hole": 9, "scratch": 2}},
        "cable": {"train_good": 30, "test_good": 5, "defects": {"bent": 10}}}
PAIRS = {"bottle": {"crack": 20, "hole": 15}, "cable": {"bent": 25}}


def build(root: Path, generated_root: Path | None = None, split: SplitSettings | None = None):
    return build_manifest(dataset="t", layout="mvtec_ad", data_root=root, categories=None,
                          generated_root=generated_root, generator="seas" if generated_root else "none",
                          verbose=False, split=split)


def file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def tree(mvtec, generated) -> tuple[Path, Path]:
    return mvtec(TREE), generated(PAIRS)


def test_default_split_is_the_protocol_exactly(tree):
    root, gen = tree
    plain, report = build(root, gen)
    explicit, _ = build(root, gen, SplitSettings(val=0.0, real_fraction=PROTOCOL_REAL_FRACTION))
    pd.testing.assert_frame_equal(plain, explicit)
    assert set(plain["split"]) == {SPLIT_TRAIN, SPLIT_TEST}
    assert report["split"]["protocol"] is True and report["split"]["val_rows"] == dict.fromkeys(
        ("good", "real_defect", "generated"), 0)
    assert report["defects"]["bottle"]["crack"] == {"n": 12, "n_train": 4, "train": 4, "test": 8, "dropped": 0}
    assert "val/real" not in report["counts"]["bottle"] and "val/real" not in count_table(plain).columns


def test_n_real_train_at_a_third_is_the_protocol_for_every_n():
    assert [n_real_train(n) for n in range(3000)] == [n_train(n) for n in range(3000)]
    assert [n_real_train(n, 0.0) for n in range(20)] == [0] * 20
    assert [n_real_train(n, 1.0) for n in range(20)] == [n_train(n) for n in range(20)]  # capped: test stays
    assert [n_real_train(n, 0.2) for n in (4, 5, 10, 12)] == [0, 1, 2, 2]


def test_val_holds_out_training_side_only_and_never_touches_test(tree):
    root, gen = tree
    plain, _ = build(root, gen)
    held, report = build(root, gen, SplitSettings(val=0.3))
    # the test rows are byte-identical, and no val file is a test file (by content hash)
    pd.testing.assert_frame_equal(plain[plain["split"] == SPLIT_TEST].reset_index(drop=True),
                                  held[held["split"] == SPLIT_TEST].reset_index(drop=True))
    val = held[held["split"] == SPLIT_VAL]
    test_hashes = {file_hash(p) for p in held.loc[held["split"] == SPLIT_TEST, "image"]}
    assert not {file_hash(p) for p in val["image"]} & test_hashes
    # train ∪ val = the protocol's train, each image once
    train_side = held[held["split"].isin([SPLIT_TRAIN, SPLIT_VAL])]
    assert sorted(train_side["image"]) == sorted(plain.loc[plain["split"] == SPLIT_TRAIN, "image"])
    # every part of the training side lends some images (with these counts a 0.3 hash cut cannot miss one)
    parts = {"good": (val["source"] == "real") & (val["label"] == 0),
             "real_defect": (val["source"] == "real") & (val["label"] == 1),
             "generated": val["source"] == "generated"}
    assert all(mask.any() for mask in parts.values())
    assert report["split"]["val_rows"] == {k: int(m.sum()) for k, m in parts.items()}
    assert report["split"]["train"]["good"] + report["split"]["val_rows"]["good"] == 70
    assert 0.15 < len(val) / len(train_side) < 0.45
    # rows keep their source, defect and label; the held-out ones are exactly those whose path hashes below 0.3
    for row in train_side.to_dict("records"):
        key = Path(row["image"]).relative_to(row["root"]).as_posix()
        assert (row["split"] == SPLIT_VAL) == (hash_fraction(key) < 0.3), key
    counts = report["counts"]["bottle"]
    bottle = held[held["category"] == "bottle"]
    assert counts["val/real"] == int(((bottle["split"] == SPLIT_VAL) & (bottle["source"] == "real")).sum())
    assert counts["val/generated"] == int(((bottle["split"] == SPLIT_VAL) & (bottle["source"] == "generated")).sum())
    assert counts["val/good"] + counts["val/defect"] == counts["val/real"]
    crack = report["defects"]["bottle"]["crack"]
    assert crack["train"] + crack["val"] == 4 and crack["test"] == 8 and crack["dropped"] == 0
    assert report["generated"]["bottle"]["crack"]["pairs"] + report["generated"]["bottle"]["crack"]["val"] == 20
    table = count_table(held)
    assert table.loc["total", "val/real"] + table.loc["total", "val/generated"] == len(val)


def test_val_split_is_deterministic_and_stable_when_files_are_added(tree, tmp_path):
    root, gen = tree
    first, _ = build(root, gen, SplitSettings(val=0.25))
    again, _ = build(root, gen, SplitSettings(val=0.25))
    pd.testing.assert_frame_equal(first, again)
    write_manifest(first, tmp_path / "a.csv")
    write_manifest(again, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    # a copy of the dataset elsewhere splits the same way (the hash is of the path relative to the root)
    moved = shutil.copytree(root, tmp_path / "elsewhere" / "mvtec")
    copy, _ = build(moved, gen, SplitSettings(val=0.25))
    assert first["split"].tolist() == copy["split"].tolist()
    # new train/good images and generated pairs leave every other file where it was
    for i in range(40, 60):
        write_image(root / "bottle" / "train" / "good" / f"{i:03d}.png")
    for i in range(20, 30):
        write_image(gen / "bottle" / "crack" / "image" / f"{i:03d}.png", (24, 24))
        write_mask(gen / "bottle" / "crack" / "mask" / f"{i:03d}.png", (24, 24))
    grown, _ = build(root, gen, SplitSettings(val=0.25))
    before = dict(zip(first["image"], first["split"], strict=True))
    after = dict(zip(grown["image"], grown["split"], strict=True))
    assert len(after) == len(before) + 30
    assert {image: after[image] for image in before} == before


def test_val_rows_are_read_back_and_never_trained_on(tree, tmp_path):
    from anoseg.data.manifest import select_rows

    root, gen = tree
    df, _ = build(root, gen, SplitSettings(val=0.3))
    write_manifest(df, tmp_path / "manifest.csv")
    back = read_manifest(tmp_path / "manifest.csv")
    assert (back["split"] == SPLIT_VAL).sum() == (df["split"] == SPLIT_VAL).sum() > 0
    train = select_rows(back, SPLIT_TRAIN, "all")
    assert set(train["split"]) == {SPLIT_TRAIN}
    assert not set(train["image"]) & set(back.loc[back["split"] == SPLIT_VAL, "image"])
    assert len(select_rows(back, SPLIT_VAL, "bottle")) == ((back["split"] == SPLIT_VAL)
                                                           & (back["category"] == "bottle")).sum()


@pytest.mark.parametrize("fraction", [0.0, 0.2, 1.0])
def test_real_fraction_keeps_the_test_set_identical(tree, fraction):
    root, gen = tree
    protocol, _ = build(root, gen)
    df, report = build(root, gen, SplitSettings(real_fraction=fraction))
    pd.testing.assert_frame_equal(protocol[protocol["split"] == SPLIT_TEST].reset_index(drop=True),
                                  df[df["split"] == SPLIT_TEST].reset_index(drop=True))
    real_train = df[(df["split"] == SPLIT_TRAIN) & (df["source"] == "real") & (df["label"] == 1)]
    for (category, defect), n in {("bottle", "crack"): 12, ("bottle", "hole"): 9, ("cable", "bent"): 10}.items():
        rows = real_train[(real_train["category"] == category) & (real_train["defect"] == defect)]
        k = n_real_train(n, fraction)
        assert sorted(rows["index_in_defect"]) == list(range(k))  # the first k of the sorted names
        entry = report["defects"][category][defect]
        assert entry["n_train"] == entry["train"] == k and entry["test"] == n - n // 3
        assert entry["dropped"] == 0 and entry.get("unused", 0) == n // 3 - k
    # generated pairs and good images are untouched
    for part in ("generated",):
        assert (df["source"] == part).sum() == (protocol["source"] == part).sum()
    assert report["split"]["unused_real_defects"] == sum(n // 3 - n_real_train(n, fraction) for n in (12, 9, 10))
    if fraction == 1.0:  # capped at the protocol's third
        pd.testing.assert_frame_equal(df, protocol)
    if fraction == 0.0:
        assert real_train.empty and report["split"]["train"]["real_defect"] == 0
        assert any("used by neither train nor test" in w for w in report["warnings"])


def test_real_fraction_and_val_together(tree):
    root, gen = tree
    df, report = build(root, gen, SplitSettings(val=0.5, real_fraction=0.2))
    crack = report["defects"]["bottle"]["crack"]  # n = 12: 2 train-side (train + val), 2 unused, 8 test
    assert crack["train"] + crack["val"] == 2 and crack["unused"] == 2 and crack["test"] == 8
    rows = df[(df["category"] == "bottle") & (df["defect"] == "crack") & (df["source"] == "real")]
    assert sorted(rows.loc[rows["split"] != SPLIT_TEST, "index_in_defect"]) == [0, 1]
    assert (rows["split"] == SPLIT_VAL).sum() == crack["val"]
    json.dumps(report, allow_nan=False)


def test_recipe_split_settings_are_validated(tmp_path):
    def recipe(text: str) -> Path:
        path = tmp_path / "r.yaml"
        path.write_text("name: r\n" + text)
        return path

    assert load_recipe(recipe("")).split == SplitSettings(0.0, PROTOCOL_REAL_FRACTION)
    assert load_recipe(recipe("")).split.is_protocol
    assert load_recipe(recipe("split: {val: 0.2, real_fraction: 0}\n")).split == SplitSettings(0.2, 0.0)
    for text, words in [("split: {val: 1}\n", "split.val"), ("split: {val: -0.1}\n", "split.val"),
                        ("split: {real_fraction: 1.5}\n", "split.real_fraction"),
                        ("split: {vall: 0.2}\n", "unknown setting(s) split.vall"),
                        ("split: 0.2\n", "split must be a mapping"),
                        ("task: road\nimage_size: null\nsplit: {val: 0.2}\n", "anomaly recipes only")]:
        with pytest.raises(AnosegError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_recipe(recipe(text))
