"""The 1/3–2/3 split, the strict/lenient policy and the data report of ``build_manifest``."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from anoseg.data.build import build_manifest
from anoseg.data.manifest import MANIFEST_COLUMNS, SORT_COLUMNS
from anoseg.data.split import assign_split, n_train
from anoseg.data.validation import ISSUE_KINDS
from anoseg.errors import AnosegError

from .conftest import names, rows_of, stems, truncate, write_image, write_mask


def build(root: Path, generated_root: Path | None = None, generator: str = "none", **kw):
    kw.setdefault("categories", None)
    return build_manifest(dataset="t", layout=kw.pop("layout", "mvtec_ad"), data_root=root,
                          generated_root=generated_root, generator=generator, verbose=False, **kw)


def test_n_train_is_floor_of_a_third():
    assert [n_train(n) for n in range(13)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert [assign_split("defect", i, 4) for i in range(4)] == ["train", "test", "test", "test"]
    assert assign_split("train_good", 5, 6) == "train" and assign_split("test_good", 0, 6) == "test"
    assert assign_split("generated", 9, 10) == "train"


def test_split_rule_on_hand_counted_tree(mvtec):
    unpadded = names(12, padded=False, start=1)  # 1.png … 12.png: text order 1, 10, 11, 12, 2, …
    root = mvtec({"cat": {"train_good": 3, "test_good": 2,
                          "defects": {"n1": 1, "n2": 2, "n3": 3, "n4": 4, "n12": unpadded}}})
    df, report = build(root)
    expected_train = {"n1": [], "n2": [], "n3": ["000"], "n4": ["000"], "n12": ["1", "10", "11", "12"]}
    for defect, train in expected_train.items():
        got = rows_of(df, defect=defect, split="train")
        assert stems(r["image"] for r in got) == train, defect
        n = {"n1": 1, "n2": 2, "n3": 3, "n4": 4, "n12": 12}[defect]
        assert len(rows_of(df, defect=defect, split="test")) == n - len(train)
        assert all(r["n_in_defect"] == n and r["label"] == 1 and r["mask"] for r in rows_of(df, defect=defect))
    assert stems(r["image"] for r in rows_of(df, defect="n12", split="test"))[:3] == ["2", "3", "4"]
    assert len(rows_of(df, defect="good", split="train")) == 3 and len(rows_of(df, defect="good", split="test")) == 2
    assert all(r["label"] == 0 and r["mask"] == "" for r in rows_of(df, defect="good"))
    assert report["defects"]["cat"]["n12"] == {"n": 12, "n_train": 4, "train": 4, "test": 8, "dropped": 0}
    issues = report["issues"]
    assert issues["few_anomalies"]["count"] == 2  # n1 and n2 (SeaS leakage note)
    assert {e["defect"] for e in issues["few_anomalies"]["examples"]} == {"n1", "n2"}
    assert issues["unsorted_names"]["count"] == 1 and issues["unsorted_names"]["case"] == 8
    assert len(report["warnings"]) == 2 and report["warnings"][1].startswith("2 × defect type(s) with n < 3")


def test_manifest_columns_sorting_and_paths(mvtec):
    df, _ = build(mvtec())
    assert tuple(df.columns) == MANIFEST_COLUMNS
    keys = list(df[list(SORT_COLUMNS)].itertuples(index=False))
    assert keys == sorted(keys)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["image"])
    crack = rows_of(df, defect="crack")  # test rows sort before train rows
    assert [(r["split"], r["index_in_defect"]) for r in crack] == [("test", 1), ("test", 2), ("test", 3), ("train", 0)]
    assert all(Path(r["mask"]).name == f"{Path(r['image']).stem}_mask.png" for r in crack)
    assert set(df["orig_mode"]) == {"RGB"} and set(df["fold"]) == {""} and set(df["generator"]) == {""}


def test_generator_none_ignores_generated_root(mvtec, generated):
    df, report = build(mvtec(), generated(), generator="none")
    assert set(df["source"]) == {"real"} and report["generated_root"] is None


def test_generated_rows_and_real_rows_identical_across_generators(mvtec, generated, tmp_path):
    root = mvtec()
    seas = generated({"bottle": {"crack": 5, "scuff": 2}}, name="gen/seas")
    other = generated({"bottle": {"hole": 4}}, name="gen/other")
    df_none, _ = build(root)
    df_seas, report = build(root, tmp_path / "gen", "seas")  # parent of several generators: gen/seas is used
    df_other, _ = build(root, other, "other")
    gen = rows_of(df_seas, source="generated")
    assert len(gen) == 7 and all(r["split"] == "train" and r["label"] == 1 and r["generator"] == "seas" for r in gen)
    assert report["generated_root"] == str(seas)
    assert report["generated"]["bottle"]["crack"] == {"n": 5, "pairs": 5, "empty_masks": 0, "dropped": 0}
    assert report["unmatched_generated_defects"] == {"bottle": ["scuff"]}

    def real_csv(df):
        buffer = io.StringIO()
        df[df.source == "real"].to_csv(buffer, index=False)
        return buffer.getvalue()

    assert real_csv(df_none) == real_csv(df_seas) == real_csv(df_other)
    assert len(df_other) == len(df_none) + 4


def test_drop_empty_generated(mvtec, generated):
    root, gen = mvtec(), generated()
    write_mask(gen / "bottle" / "crack" / "mask" / "002.png", (24, 24), value=0)
    df, report = build(root, gen, "seas")
    assert len(rows_of(df, source="generated")) == 5
    assert report["issues"]["empty_generated_mask"]["count"] == 1
    df, report = build(root, gen, "seas", drop_empty_generated=True)
    assert stems(r["image"] for r in rows_of(df, source="generated")) == ["000", "001", "003", "004"]
    assert report["generated"]["bottle"]["crack"] == {"n": 5, "pairs": 4, "empty_masks": 1, "dropped": 1}


# ---------------------------------------------------------------------------------------------------------------
# strict: every bad input raises, naming the file; lenient: dropped and reported


def _mask(root, name="001_mask.png", defect="crack"):
    return root / "bottle" / "ground_truth" / defect / name


def _img(root, name="001.png", defect="crack"):
    return root / "bottle" / "test" / defect / name


BREAKERS = {
    # name: (break the tree, expected text in the error, issue kind, rows of 'crack' kept in lenient mode)
    "missing_mask": (lambda r, g: _mask(r).unlink(), "001.png", "image_without_mask", 3),
    "missing_image": (lambda r, g: _img(r).unlink(), "001_mask.png", "mask_without_image", 3),
    "no_ground_truth_folder": (lambda r, g: shutil.rmtree(r / "bottle" / "ground_truth" / "crack"),
                               "ground_truth/crack", "defect_without_masks", 0),
    "no_test_folder": (lambda r, g: shutil.rmtree(r / "bottle" / "test" / "crack"), "test/crack",
                       "masks_without_defect", 0),
    "size_mismatch": (lambda r, g: write_mask(_mask(r), (16, 24)), "001_mask.png", "size_mismatch", 3),
    "truncated_image": (lambda r, g: truncate(write_image(_img(r), (64, 64))), "001.png", "unreadable_image", 3),
    "truncated_mask": (lambda r, g: truncate(write_mask(_mask(r), (16, 16))) and _mask(r).write_bytes(
        _mask(r).read_bytes()[:60]), "001_mask.png", "unreadable_mask", 3),
    "garbage_image": (lambda r, g: _img(r).write_bytes(b"garbage"), "001.png", "unreadable_image", 3),
    "ambiguous_stem": (lambda r, g: write_image(_img(r, "001.jpg")), "001", "ambiguous_name", 3),
    "ambiguous_mask": (lambda r, g: write_mask(_mask(r, "001.png")), "001", "ambiguous_name", 3),
}


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_strict_errors_name_the_file(mvtec, case):
    root = mvtec()
    breaker, text, _, _ = BREAKERS[case]
    breaker(root, None)
    with pytest.raises(AnosegError, match=text.replace(".", r"\.")):
        build(root)


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_lenient_drops_and_reports(mvtec, case):
    root = mvtec()
    breaker, _, kind, kept = BREAKERS[case]
    breaker(root, None)
    df, report = build(root, strict=False)
    assert report["issues"][kind]["count"] >= 1 and report["issues"][kind]["severity"] == "error"
    crack = rows_of(df, defect="crack")
    assert len(crack) == kept
    if kept:  # a dropped file in the middle does not shift the pairs or the positions after it
        assert all(Path(r["mask"]).stem == Path(r["image"]).stem + "_mask" for r in crack)
        # n counts the folder's images: 001.png and 001.jpg both count (and are both dropped); a deleted image does not
        n, expected = {"ambiguous_stem": (5, [0, 3, 4]), "missing_image": (3, [0, 1, 2])}.get(case, (4, [0, 2, 3]))
        assert sorted(r["index_in_defect"] for r in crack) == expected
        assert {r["n_in_defect"] for r in crack} == {n}
    assert len(rows_of(df, defect="hole")) == 3  # other defect types are untouched


def test_missing_middle_mask_keeps_split_positions(mvtec):
    root = mvtec({"bottle": {"defects": {"crack": 6}}})
    _mask(root, "002_mask.png").unlink()
    df, report = build(root, strict=False)
    crack = rows_of(df, defect="crack")
    assert [(Path(r["image"]).stem, r["split"], r["index_in_defect"]) for r in crack] == [
        ("003", "test", 3), ("004", "test", 4), ("005", "test", 5), ("000", "train", 0), ("001", "train", 1)]
    assert report["defects"]["bottle"]["crack"]["dropped"] == 1


@pytest.mark.parametrize(("setup", "text"), [
    ("missing_root", "data root not found"),
    ("unknown_category", "valid: bottle"),
    ("generated_root_missing", "generated root not found"),
    ("generated_root_empty", "generated root is empty"),
    ("generated_no_mask_folder", "mask"),
    ("generated_empty_image_folder", "image"),
    ("generated_mismatch", "003.png"),
])
def test_strict_errors_setup_and_generated(mvtec, generated, tmp_path, setup, text):
    root, gen = mvtec(), generated()
    kw = {"generated_root": gen, "generator": "seas"}
    if setup == "missing_root":
        root = tmp_path / "nowhere"
    elif setup == "unknown_category":
        kw["categories"] = ["bottle", "botle"]
    elif setup == "generated_root_missing":
        kw["generated_root"] = tmp_path / "no_gen"
    elif setup == "generated_root_empty":
        kw["generated_root"] = tmp_path / "empty_gen"
        kw["generated_root"].mkdir()
    elif setup == "generated_no_mask_folder":
        shutil.rmtree(gen / "bottle" / "crack" / "mask")
    elif setup == "generated_empty_image_folder":
        for p in (gen / "bottle" / "crack" / "image").iterdir():
            p.unlink()
    elif setup == "generated_mismatch":
        (gen / "bottle" / "crack" / "mask" / "003.png").unlink()
    with pytest.raises(AnosegError, match=text):
        build(root, **kw)


def test_lenient_generated_problems_are_skipped(mvtec, generated, tmp_path):
    root, gen = mvtec(), generated({"bottle": {"crack": 5, "hole": 3}})
    shutil.rmtree(gen / "bottle" / "hole" / "mask")
    (gen / "bottle" / "crack" / "mask" / "003.png").unlink()
    df, report = build(root, gen, "seas", strict=False)
    assert stems(r["image"] for r in rows_of(df, source="generated")) == ["000", "001", "002", "004"]
    assert report["issues"]["generated_incomplete"]["count"] == 1
    assert report["issues"]["image_without_mask"]["count"] == 1
    df, report = build(root, tmp_path / "no_gen", "seas", strict=False)
    assert set(df["source"]) == {"real"} and report["issues"]["generated_root_missing"]["count"] == 1


def test_categories_requested_expected_and_missing(mvtec, generated):
    root = mvtec({"a": {"defects": {"x": 3}}, "b": {"defects": {"y": 3}}})
    gen = generated({"a": {"x": 2}, "zzz": {"x": 2}})
    df, report = build(root, gen, "seas", categories=["b"])
    assert set(df["category"]) == {"b"}
    assert report["issues"]["generated_category_missing"]["count"] == 1  # b has no generated pairs: allowed
    df, report = build(root, expected_categories=["a", "c"], strict=True)
    assert set(df["category"]) == {"a", "b"}  # c missing: skipped with a warning; b found: kept
    assert report["issues"]["missing_category"]["examples"][0]["path"].endswith("c")
    with pytest.raises(AnosegError, match=r"'c' not found.*valid: a, b"):
        build(root, categories=["c"], strict=False)  # asked for explicitly: always an error


def test_report_notes(mvtec, tmp_path):
    root = mvtec({"bottle": {"train_good": 3, "defects": {"crack": 4}}})
    write_mask(_mask(root, "000_mask.png"), (32, 32), (0, 0, 0, 0))  # empty, twice the size: resized
    write_mask(_mask(root, "002_mask.png"), (17, 16))  # ±1 px aspect: resized, not an error
    shutil.copy(root / "bottle/train/good/000.png", root / "bottle/test/good/007.png")  # duplicate across splits
    (root / "bottle/test/crack/readme.txt").write_text("x")
    (root / "bottle/test/.ipynb_checkpoints").mkdir()
    (root / "bottle/test/.ipynb_checkpoints/000.png").write_bytes(b"junk")
    write_image(root / "bottle/test/crack/.hidden.png")
    write_mask(root / "bottle/ground_truth/good/000_mask.png", value=0)
    write_image(root / "bottle/train/good/005.PNG", mode="RGBA")
    write_image(root / "bottle/train/good/006.png", mode="L")
    Image.new("RGB", (16, 16)).save(root / "bottle/train/good/.DS_Store.png")
    progress = []
    df, report = build(root, progress=lambda done, total: progress.append((done, total)))
    issues = report["issues"]
    json.dumps(report, allow_nan=False)  # the CLI writes it as data_report.json
    assert issues["mask_resized"]["count"] == 2
    assert issues["empty_defect_mask"]["count"] == 1
    assert rows_of(df, defect="crack", index_in_defect=0)[0]["label"] == 1  # label from the folder
    assert issues["cross_split_duplicate"]["count"] == 1
    assert issues["ignored_file"]["count"] == 1 and issues["ground_truth_good"]["count"] == 1
    assert "good_with_defect_mask" not in issues
    assert issues["alpha_image"]["count"] == 1
    assert report["image_modes"] == {"L": 1, "RGB": len(df) - 2, "RGBA": 1}
    assert "good" not in report["defects"]["bottle"] and len(rows_of(df, defect="crack")) == 4
    assert rows_of(df, split="train", defect="good")[-1]["orig_mode"] == "L"
    total = report["n_files_verified"]
    # + 1: the ground_truth/good mask of test/good/000 is checked to be empty
    assert progress[0] == (0, total) and progress[-1] == (total, total) and total == 5 + 2 + 8 + 1 + 1
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert all(ISSUE_KINDS[k].case == v["case"] for k, v in issues.items())
