"""Layout readers on tiny trees: pairing by stem, VisA (split_csv and VisA_type), MVTec 3D AD (both variants)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anoseg.data.build import build_manifest
from anoseg.data.layouts import (
    CategoryScan,
    MVTecAD,
    list_dirs,
    list_images,
    open_layout,
    pair_by_stem,
    resolve_generated_root,
    visa_defect_name,
)
from anoseg.errors import AnosegError

from .conftest import names, rows_of, stems, write_image, write_mask


def build(root: Path, layout: str, **kw):
    return build_manifest(dataset="t", layout=layout, data_root=root, categories=kw.pop("categories", None),
                          generated_root=None, generator="none", verbose=False, **kw)


def test_pair_by_stem_suffix_same_name_and_gaps():
    scan = CategoryScan("c", "test")
    images = [Path(f"t/{n}") for n in ("000.png", "001.png", "002.png", "003.JPG")]
    masks = [Path(f"g/{n}") for n in ("000_mask.png", "002_mask.png", "003.png", "999_mask.png")]
    pairs = pair_by_stem(images, masks, scan)
    assert pairs == {images[0]: masks[0], images[2]: masks[1], images[3]: masks[2]}  # 001 has no mask: no shift
    assert [(i.kind, Path(i.path).name) for i in scan.issues] == [
        ("image_without_mask", "001.png"), ("mask_without_image", "999_mask.png")]


def test_listing_skips_hidden_stray_and_non_directories(tmp_path):
    for name in ("b", "a", ".ipynb_checkpoints", "__x"):
        (tmp_path / name).mkdir()
    (tmp_path / "license.txt").write_text("x")
    assert list_dirs(tmp_path) == ["__x", "a", "b"]
    for name in ("10.png", "2.PNG", "1.jpeg", ".DS_Store", "Thumbs.db", "notes.txt"):
        (tmp_path / "a" / name).write_bytes(b"")
    scan = CategoryScan("c", "test")
    assert [p.name for p in list_images(tmp_path / "a", scan)] == ["1.jpeg", "10.png", "2.PNG"]
    assert sorted(Path(i.path).name for i in scan.issues) == ["Thumbs.db", "notes.txt"]


def test_mvtec_categories_need_train_or_test(mvtec):
    root = mvtec({"bottle": {"defects": {"crack": 3}}, "cable": {"defects": {"bent": 3}}})
    (root / "docs").mkdir()
    (root / "readme.txt").write_text("x")
    assert open_layout("mvtec_ad", root).categories() == ["bottle", "cable"]
    with pytest.raises(AnosegError, match="unknown layout"):
        open_layout("kitti", root)


# ---------------------------------------------------------------------------------------------------------------
# VisA


def _visa_original(root: Path) -> Path:
    """Original VisA: split_csv/1cls.csv + <cat>/Data/{Images,Masks} + <cat>/image_anno.csv, raw masks of value 1."""
    rows = ["object,split,label,image,mask"]
    anno = ["image,label,mask"]
    for i in range(5):
        rel = f"pcb1/Data/Images/Normal/{i:04d}.JPG"
        write_image(root / rel)
        rows.append(f"pcb1,{'train' if i < 3 else 'test'},normal,{rel},")
        anno.append(f"{rel},normal,")
    labels = ["scratch", "scratch", "scratch", '"melt, scratch"', "Bent lead", "", "scratch"]
    for i, label in enumerate(labels):
        rel, mask = f"pcb1/Data/Images/Anomaly/{i:03d}.JPG", f"pcb1/Data/Masks/Anomaly/{i:03d}.png"
        write_image(root / rel)
        write_mask(root / mask, value=1)  # raw VisA masks: small non-zero values
        rows.append(f"pcb1,test,anomaly,{rel},{mask}")
        if label:
            anno.append(f"{rel},{label},{mask}")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    (root / "pcb1" / "image_anno.csv").write_text("\n".join(anno) + "\n")
    return root


def test_visa_defect_names():
    assert visa_defect_name("Different colour spot") == "different_colour_spot"
    assert visa_defect_name("melt, scratch") == "combined"
    assert visa_defect_name("scratch, scratch") == "scratch"
    assert visa_defect_name("normal") is None and visa_defect_name("") is None


def test_visa_split_csv(tmp_path):
    root = _visa_original(tmp_path / "visa")
    df, report = build(root, "visa")
    assert report["visa_layout"] == "split_csv" and report["variants"] == {"pcb1": "visa_split_csv"}
    scratch = rows_of(df, defect="scratch")  # 000, 001, 002, 006 → ⌊4/3⌋ = 1 to train
    assert sorted((Path(r["image"]).stem, r["split"]) for r in scratch) == [
        ("000", "train"), ("001", "test"), ("002", "test"), ("006", "test")]
    assert stems(r["image"] for r in rows_of(df, defect="combined")) == ["003"]
    assert stems(r["image"] for r in rows_of(df, defect="bent_lead")) == ["004"]
    assert stems(r["image"] for r in rows_of(df, defect="bad")) == ["005"]  # no label in image_anno.csv
    assert report["issues"]["visa_defect_fallback"]["count"] == 1
    assert stems(r["image"] for r in rows_of(df, defect="good", split="train")) == ["0000", "0001", "0002"]
    assert stems(r["image"] for r in rows_of(df, defect="good", split="test")) == ["0003", "0004"]
    assert "empty_defect_mask" not in report["issues"]  # value-1 masks are defects, not empty


def test_visa_split_csv_missing_files(tmp_path):
    root = _visa_original(tmp_path / "visa")
    (root / "pcb1/Data/Masks/Anomaly/001.png").unlink()
    with pytest.raises(AnosegError, match=r"001\.png"):
        build(root, "visa")
    df, report = build(root, "visa", strict=False)
    assert report["issues"]["missing_file"]["count"] == 1
    assert "001" not in stems(df["image"]) and len(rows_of(df, defect="scratch")) == 3


def test_visa_original_without_split_csv(tmp_path):
    root = _visa_original(tmp_path / "visa")
    shutil.rmtree(root / "split_csv")
    with pytest.raises(AnosegError, match="split_csv"):
        build(root, "visa")


def test_visa_type_same_name_masks(mvtec):
    root = mvtec({"candle": {"defects": {"combined": 3, "weird_candle_wick": 4}}}, mask_suffix="")
    df, report = build(root, "visa")
    assert report["visa_layout"] == "visa_type" and report["variants"] == {"candle": "visa_type"}
    rows = rows_of(df, defect="weird_candle_wick")
    assert all(Path(r["mask"]).name == Path(r["image"]).name for r in rows) and len(rows) == 4


# ---------------------------------------------------------------------------------------------------------------
# MVTec 3D AD


def _mvtec3d_original(root: Path) -> Path:
    base = root / "bagel"
    for name in names(3):
        write_image(base / "train/good/rgb" / name)
        (base / "train/good/xyz").mkdir(parents=True, exist_ok=True)
        (base / "train/good/xyz" / name.replace(".png", ".tiff")).write_bytes(b"xyz")
        write_image(base / "validation/good/rgb" / name)
    for name in names(2):
        write_image(base / "test/good/rgb" / name)
        write_mask(base / "test/good/gt" / name, value=0)
    for defect, n in (("crack", 4), ("hole", 3)):
        for name in names(n):
            write_image(base / "test" / defect / "rgb" / name)
            write_mask(base / "test" / defect / "gt" / name)
            (base / "test" / defect / "xyz").mkdir(parents=True, exist_ok=True)
    return root


def test_mvtec3d_original(tmp_path):
    root = _mvtec3d_original(tmp_path / "mvtec3d")
    df, report = build(root, "mvtec_3d_ad")
    assert report["variants"] == {"bagel": "mvtec_3d_ad"}
    assert len(rows_of(df, defect="good", split="train")) == 3  # validation/ not used
    assert all("/validation/" not in p for p in df["image"])
    assert all(r["mask"] == "" for r in rows_of(df, defect="good"))  # test/good/gt is ignored
    crack = rows_of(df, defect="crack")
    assert all(Path(r["mask"]).parent.name == "gt" and Path(r["image"]).parent.name == "rgb" for r in crack)
    assert sorted((Path(r["image"]).stem, r["split"]) for r in crack)[0] == ("000", "train")
    assert sorted(report["defects"]["bagel"]) == ["crack", "hole"]
    assert report["issues"]["validation_ignored"]["count"] == 1


def test_mvtec3d_defect_without_gt(tmp_path):
    root = _mvtec3d_original(tmp_path / "mvtec3d")
    shutil.rmtree(root / "bagel/test/hole/gt")
    with pytest.raises(AnosegError, match="hole/gt"):
        build(root, "mvtec_3d_ad")


def test_mvtec3d_seas_reorganised(tmp_path):
    """SeaS's change_mvtec3d_to_mvtec_type: rgb/ flattened, gt/ → ground_truth/<t> for every t including good."""
    original = _mvtec3d_original(tmp_path / "orig")
    root = tmp_path / "reorg"
    src = original / "bagel"
    for t in ("good", "crack", "hole"):
        shutil.copytree(src / "test" / t / "rgb", root / "bagel/test" / t)
        shutil.copytree(src / "test" / t / "gt", root / "bagel/ground_truth" / t)
    shutil.copytree(src / "train/good/rgb", root / "bagel/train/good")
    df, report = build(root, "mvtec_3d_ad")
    assert report["variants"] == {"bagel": "mvtec_3d_ad_reorg"}
    assert set(df["defect"]) == {"good", "crack", "hole"}
    assert report["issues"]["ground_truth_good"]["count"] == 1  # never a defect type
    assert len(rows_of(df, defect="good", split="test")) == 2 and all(
        r["label"] == 0 and r["mask"] == "" for r in rows_of(df, defect="good"))
    assert all(Path(r["mask"]).name == Path(r["image"]).name for r in rows_of(df, defect="crack"))
    # same split as the original layout
    df_orig, _ = build(original, "mvtec_3d_ad")
    key = ["split", "defect", "index_in_defect", "n_in_defect", "label"]
    assert df[key].sort_values(key).values.tolist() == df_orig[key].sort_values(key).values.tolist()


# ---------------------------------------------------------------------------------------------------------------
# generated


def test_resolve_generated_root(tmp_path):
    (tmp_path / "gen/seas/bottle").mkdir(parents=True)
    assert resolve_generated_root(tmp_path / "gen", "seas", ["bottle"]) == tmp_path / "gen/seas"
    assert resolve_generated_root(tmp_path / "gen/seas", "seas", ["bottle"]) == tmp_path / "gen/seas"


def test_generated_good_folder_and_stray_files_ignored(mvtec, generated):
    root, gen = mvtec(), generated({"bottle": {"crack": 3, "good": 2}})
    (gen / "bottle" / "notes.txt").write_text("x")
    (gen / "bottle" / ".cache").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(gen / "bottle" / "crack" / "image" / ".000.png")
    df, report = build_manifest(dataset="t", layout="mvtec_ad", data_root=root, categories=None,
                                generated_root=gen, generator="seas", verbose=False)
    assert stems(r["image"] for r in rows_of(df, source="generated")) == ["000", "001", "002"]
    assert {r["defect"] for r in rows_of(df, source="generated")} == {"crack"}
    assert report["issues"]["generated_good_ignored"]["count"] == 1


def test_mvtec_scan_reports_ground_truth_without_test(mvtec):
    root = mvtec()
    write_mask(root / "bottle/ground_truth/extra/000_mask.png")
    scan = MVTecAD(root).scan("bottle")
    assert [i.kind for i in scan.issues] == ["masks_without_defect"]
    assert {(s.defect, s.role) for s in scan.samples} == {
        ("good", "train_good"), ("good", "test_good"), ("crack", "defect"), ("hole", "defect")}
