"""The MVTec AD 2, MPDD, BTAD, KolektorSDD2 and folder readers on tiny copies of their trees (public_trees.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from anoseg.cli import main
from anoseg.data.build import build_manifest
from anoseg.data.layouts import LAYOUTS, open_layout
from anoseg.data.layouts.folder import good_split
from anoseg.errors import AnosegError

from . import public_trees as trees
from .conftest import rows_of, stems, write_image


def build(root: Path, layout: str, **kw):
    return build_manifest(dataset="t", layout=layout, data_root=root, categories=kw.pop("categories", None),
                          generated_root=None, generator="none", verbose=False, **kw)


def split_of(df, **where) -> list[tuple[str, str]]:
    return sorted((Path(r["image"]).name, r["split"]) for r in rows_of(df, **where))


def test_every_layout_has_a_recipe_of_its_name():
    from anoseg.recipes import load_recipe

    for name in LAYOUTS:
        assert load_recipe(name).layout == name


def test_mvtec_ad_2_public_test_set(tmp_path):
    df, report = build(trees.mvtec_ad_2(tmp_path / "mad2"), "mvtec_ad_2")
    assert report["categories"] == ["can", "vial"] and set(df["defect"]) == {"good", "bad"}
    assert split_of(df, category="can", defect="bad") == [
        ("000_regular.png", "train"), ("001_overexposed.png", "train"), ("002_underexposed.png", "test"),
        ("003_shift_1.png", "test"), ("004_shift_2.png", "test"), ("005_regular.png", "test")]
    assert all(Path(r["mask"]).name == Path(r["image"]).stem + "_mask.png" for r in rows_of(df, defect="bad"))
    assert not any(part in p for p in df["image"] for part in ("/validation/", "/test_private"))
    assert report["issues"]["unused_folder"]["count"] == 6  # validation, test_private, test_private_mixed × 2
    assert len(rows_of(df, category="vial", defect="good", split="test")) == 2


def test_mpdd_reads_like_mvtec_ad(tmp_path):
    root = trees.mpdd(tmp_path / "mpdd")
    df, report = build(root, "mpdd")
    df_mvtec, _ = build(root, "mvtec_ad")
    assert report["variants"] == {"bracket_black": "mpdd", "tubes": "mpdd"}
    assert df.drop(columns="dataset").equals(df_mvtec.drop(columns="dataset"))
    assert sorted(report["defects"]["bracket_black"]) == ["hole", "scratches"]


def test_btad_ok_ko_and_mixed_extensions(tmp_path):
    df, report = build(trees.btad(tmp_path / "btad"), "btad")
    assert report["categories"] == ["01", "02", "03"] and set(df["defect"]) == {"good", "ko"}
    masks = {c: {Path(r["mask"]).suffix for r in rows_of(df, category=c, defect="ko")} for c in ("01", "02", "03")}
    assert masks == {"01": {".png"}, "02": {".png"}, "03": {".bmp"}}
    assert {Path(r["image"]).suffix for r in rows_of(df, category="01")} == {".bmp"}
    assert split_of(df, category="03", defect="ko") == [("0000.bmp", "train"), ("0001.bmp", "test"),
                                                        ("0002.bmp", "test")]
    assert len(rows_of(df, category="02", defect="good", split="train")) == 4
    assert all(Path(r["image"]).parent.name == "ok" for r in rows_of(df, defect="good"))


def test_ksdd2_positives_from_masks_and_its_own_split(tmp_path):
    df, report = build(trees.ksdd2(tmp_path / "ksdd2"), "ksdd2")
    assert report["categories"] == ["ksdd2"] and set(df["defect"]) == {"good", "defect"}
    assert split_of(df, defect="defect") == [("10001.png", "train"), ("10003.png", "train"), ("10005.png", "train"),
                                             ("10007.png", "train"), ("10009.png", "test"), ("10011.png", "test")]
    assert stems(r["image"] for r in rows_of(df, defect="good", split="test")) == ["10008", "10010", "10012"]
    assert all(r["mask"] == "" for r in rows_of(df, defect="good"))
    assert report["defects"]["ksdd2"]["defect"] == {"n": 6, "n_train": 4, "train": 4, "test": 2,
                                                    "fixed_split": True, "dropped": 0}


def test_ksdd2_image_without_gt(tmp_path):
    root = trees.ksdd2(tmp_path / "ksdd2")
    (root / "train" / "10003_GT.png").unlink()
    with pytest.raises(AnosegError, match="10003"):
        build(root, "ksdd2")


def test_autovi_one_mask_folder_per_image(tmp_path):
    root = trees.autovi(tmp_path / "autovi")
    df, report = build(root, "autovi")
    assert report["categories"] == ["pipe_clip", "tank_screw"]
    assert sorted(report["defects"]["pipe_clip"]) == ["operator_hand", "unclipped"]
    assert all(Path(r["mask"]).parent.name == Path(r["image"]).stem and Path(r["mask"]).name == "0000.png"
               for r in rows_of(df, label=1))
    assert split_of(df, category="tank_screw", defect="missing") == [("0000.png", "train"), ("0001.png", "test"),
                                                                      ("0002.png", "test")]
    write_image(root / "pipe_clip/ground_truth/unclipped/0001/0001.png")  # a second mask: reported, not used
    (root / "pipe_clip/ground_truth/unclipped/0002/0000.png").unlink()
    with pytest.raises(AnosegError, match=r"unclipped/0002\.png"):
        build(root, "autovi")
    df, report = build(root, "autovi", strict=False)
    assert report["issues"]["extra_masks"]["count"] == 1 and len(rows_of(df, defect="unclipped")) == 2


def test_kolektorsdd_positives_from_masks_and_the_one_third_rule(tmp_path):
    df, report = build(trees.kolektorsdd(tmp_path / "ksdd"), "kolektorsdd")
    assert report["categories"] == ["kolektorsdd"] and "unsorted_names" not in report["issues"]
    defects = sorted((Path(r["image"]).parent.name, r["split"]) for r in rows_of(df, defect="defect"))
    assert defects == [("kos01", "train"), ("kos02", "test"), ("kos03", "test")]
    good = rows_of(df, defect="good")
    assert len(good) == 12 and sum(r["split"] == "test" for r in good) == 2 and all(r["mask"] == "" for r in good)


def test_bmad_img_label_folders(tmp_path):
    df, report = build(trees.bmad(tmp_path / "bmad"), "bmad")
    assert report["categories"] == ["Brain", "Liver"] and set(df["defect"]) == {"good", "Ungood"}
    assert not any("/valid/" in p for p in df["image"]) and report["issues"]["unused_folder"]["count"] == 2
    assert all(Path(r["mask"]).parent.name == "label" for r in rows_of(df, defect="Ungood"))
    assert all(r["mask"] == "" for r in rows_of(df, defect="good", split="test"))
    assert split_of(df, category="Liver", defect="Ungood") == [("00100.png", "train"), ("00101.png", "test"),
                                                               ("00102.png", "test")]


def test_folder_layout_mask_conventions_and_image_level_defects(tmp_path):
    df, report = build(trees.folder(tmp_path / "mine"), "folder", strict=True)
    assert report["categories"] == ["connector", "pcb"]
    assert {(r["defect"], Path(r["mask"]).parent.name) for r in rows_of(df, category="pcb", label=1)} == {
        ("scratch", "scratch"), ("dent", "dent"), ("stain", "")}
    assert all(Path(r["mask"]).parent.parent.name == "masks" for r in rows_of(df, defect="dent"))
    assert all(Path(r["mask"]).parent.parent.name == "mask" for r in rows_of(df, defect="bent"))
    stain = rows_of(df, defect="stain")
    assert len(stain) == 2 and all(r["split"] == "test" and r["mask"] == "" and r["label"] == 1 for r in stain)
    assert report["issues"]["image_level_defect"]["count"] == 1
    assert stems(r["image"] for r in rows_of(df, category="pcb", defect="good", split="test")) == ["img_04", "img_09"]
    assert len(rows_of(df, category="connector", defect="good")) == 5  # OK/ is a good folder too
    assert split_of(df, defect="dent") == [("a7.jpg", "train"), ("b2.jpg", "test"), ("c9.jpg", "test"),
                                           ("d1.jpg", "test")]
    assert [good_split(i) for i in range(10)].count("test") == 2


def test_folder_layout_mask_file_in_good_is_not_a_good_image(tmp_path):
    root = trees.folder(tmp_path / "mine")
    good = sorted(p for p in (root / "pcb" / "good").iterdir())
    n_good = len(good)
    write_image(good[0].with_name(good[0].stem + "_mask.png"), mode="L")  # an annotation tool's all-black mask
    df, report = build(root, "folder", strict=False)
    rows = rows_of(df, category="pcb", defect="good")
    assert len(rows) == n_good and not any(Path(r["image"]).stem.endswith("_mask") for r in rows)
    assert report["issues"]["ignored_file"]["count"] >= 1


def test_predict_never_scores_mask_files_or_mask_folders(tmp_path):
    from anoseg.engine.predict import collect_images

    images = [write_image(tmp_path / "ds" / "pcb" / "good" / "000.png"),
              write_image(tmp_path / "ds" / "pcb" / "scratch" / "001.png")]
    masks = [write_image(tmp_path / "ds" / "pcb" / "scratch" / "001_mask.png"),  # folder layout
             write_image(tmp_path / "ds" / "ksdd2" / "00001_GT.png"),  # KolektorSDD2
             write_image(tmp_path / "ds" / "kos01" / "Part0_label.bmp")]  # KolektorSDD
    images.append(write_image(tmp_path / "ds" / "kos01" / "Part0.jpg"))
    write_image(tmp_path / "ds" / "bmad" / "test" / "Ungood" / "label" / "x.png")  # BMAD's mask folder
    skipped: list[Path] = []
    assert sorted(collect_images([tmp_path / "ds"], skipped)) == sorted(images)
    assert sorted(skipped) == sorted(masks)


def test_folder_layout_categories_eval_cannot_score_are_named(tmp_path):
    root = trees.folder(tmp_path / "mine")
    for i in range(4):
        write_image(root / "plain" / "good" / f"{i}.png")  # good images only: no anomalous test image
    _, report = build(root, "folder", strict=False)
    issue = report["issues"]["untested_category"]
    assert issue["count"] == 1 and "plain" in " ".join(e["message"] for e in issue["examples"])
    assert any("plain" in w for w in report["warnings"])
    pcb = sorted(p.name for p in (root / "pcb" / "good").iterdir())
    (root / "test.csv").write_text(f"image\npcb/good/{pcb[0]}\n")  # connector and plain: no test image at all
    _, report = build(root, "folder", strict=False)
    messages = " ".join(e["message"] for e in report["issues"]["untested_category"]["examples"])
    assert "connector: no test image" in messages and "plain: no test image" in messages


def test_folder_layout_image_without_its_mask_is_an_error(tmp_path):
    root = trees.folder(tmp_path / "mine")
    (root / "pcb" / "scratch" / "s1_mask.png").unlink()
    with pytest.raises(AnosegError, match="s1"):
        build(root, "folder")
    df, _ = build(root, "folder", strict=False)
    assert sorted(stems(r["image"] for r in rows_of(df, defect="scratch"))) == ["s0", "s2"]


def test_folder_layout_single_category_with_test_list(tmp_path):
    root = trees.folder_single(tmp_path / "parts")
    df, report = build(root, "folder")
    assert report["categories"] == ["parts"] and report["variants"] == {"parts": "folder_test_list"}
    assert split_of(df, defect="crack") == [("0.png", "test"), ("1.png", "test"), ("2.png", "train"),
                                            ("3.png", "train")]
    assert split_of(df, defect="good") == [("0.png", "train"), ("1.png", "train"), ("2.png", "train"),
                                           ("3.png", "test")]
    for entry in ("crack/9.png", "crack/1_mask.png"):  # a typo, a mask
        (root / "test.csv").write_text(f"image\n{entry}\n")
        with pytest.raises(AnosegError, match=entry.replace(".", r"\.")):
            build(root, "folder")


def test_folder_layout_test_list_outside_the_categories(tmp_path):
    root = trees.folder(tmp_path / "mine")
    (root / "test.csv").write_text("image\npcb/good/img_00.png\npbc/good/img_01.png\n")
    df, report = build(root, "folder", strict=False)
    missing = report["issues"]["missing_file"]
    assert missing["count"] == 1 and "pbc" in missing["examples"][0]["path"]
    assert split_of(df, category="pcb", defect="good")[0] == ("img_00.png", "test")


def test_folder_layout_stray_mask_folder_and_missing_good(tmp_path):
    root = tmp_path / "mine"
    write_image(root / "pcb" / "hole" / "0.png")
    write_image(root / "pcb" / "masks" / "hole" / "0.png")
    write_image(root / "pcb" / "masks" / "ghost" / "0.png")
    scan = open_layout("folder", root).scan("pcb")
    assert sorted(i.kind for i in scan.issues) == ["masks_without_defect", "missing_good"]


def test_folder_layout_refuses_a_train_test_tree_and_reports_nested_folders(tmp_path, mvtec):
    with pytest.raises(AnosegError, match="--layout mvtec_ad"):
        open_layout("folder", mvtec())
    root = trees.folder(tmp_path / "mine")
    write_image(root / "pcb" / "scratch" / "batch2" / "s9.png")
    df, report = build(root, "folder")
    assert report["issues"]["unused_folder"]["count"] == 1 and "s9" not in stems(df["image"])


def test_init_and_dry_run_show_the_split_and_write_nothing(tmp_path):
    root = trees.folder(tmp_path / "mine")
    (root / "pcb" / "scratch" / "s1_mask.png").unlink()
    result = CliRunner().invoke(main, ["init", str(root)])
    assert result.exit_code == 0, result.output
    assert "stain" in result.output and "s1.png" in result.output and "none (image level)" in result.output
    assert "pcb/masks/dent" in result.output and "beside the images" in result.output
    output = tmp_path / "outputs"
    result = CliRunner().invoke(main, ["prepare", "--layout", "folder", "--data-root", str(root), "--dry-run",
                                       "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "connector" in result.output and not output.exists()
    for command in (["init", str(root), "--layout", "nope"], ["prepare", "--layout", "nope"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2 and "unknown layout 'nope'; choose one of: mvtec_ad" in result.output


def test_folder_layout_with_generated_pairs_made_from_its_train_good(tmp_path):
    from anoseg.data.generators import generate_pairs

    root = trees.folder(tmp_path / "mine")
    out = tmp_path / "generated" / "cutpaste"
    summary = generate_pairs(method="cutpaste", layout="folder", data_root=root, categories=["pcb"], count=3,
                             out=out, seed=0, textures=None, overwrite=False)
    assert summary["categories"]["pcb"]["sources_used"] <= 8  # the 8 train/good images, never the 2 test ones
    df, _ = build_manifest(dataset="t", layout="folder", data_root=root, categories=["pcb"],
                                generated_root=out, generator="cutpaste", verbose=False)
    generated = rows_of(df, source="generated")
    assert len(generated) == 3 and all(r["split"] == "train" and r["category"] == "pcb" for r in generated)

