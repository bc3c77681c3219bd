"""Masks the eye would check: thin defects survive resizing, EXIF-rotated files are read upright, inverted masks and
masks of good images are flagged — in the data report and once on the console."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from anoseg.cli import main
from anoseg.data.build import build_manifest
from anoseg.data.dataset import load_cached
from anoseg.data.images import read_image
from anoseg.data.layouts import TEST_GOOD, Sample
from anoseg.data.masks import read_mask, resize_mask
from anoseg.data.protocols import resized_mask
from anoseg.data.validation import DataReport, verify_samples

from .conftest import write_image

SIZE = 256
SMALL = (64, 64)
EXIF_ORIENTATION = 0x0112


def _mask(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """A bool mask with the given (row0, row1, col0, col1) boxes set (exclusive ends)."""
    mask = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    return mask


#: The issue's input: per defect type two 256² masks, one that nearest-neighbour resizing to 64² keeps (a source row
#: or column 4k + 2) and one it loses (a 1-px scratch on row 101, a 2×2 dot at rows/cols 100–101).
THIN_DEFECTS = {
    "scratch": [_mask((SIZE, SIZE), (101, 102, 0, SIZE)), _mask((SIZE, SIZE), (0, SIZE, 130, 131))],
    "dot": [_mask((SIZE, SIZE), (100, 102, 100, 102)), _mask((SIZE, SIZE), (96, 104, 160, 168))],
}


def _save_mask(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


@pytest.fixture
def thin_tree(tmp_path: Path) -> Path:
    """MVTec-AD tree: 256² images, 2 train/good, 4 test/good, 2 scratches + 2 dots (all test: n = 2 < 3)."""
    base = tmp_path / "thin" / "plate"
    for i in range(2):
        write_image(base / "train" / "good" / f"{i:03d}.png", (SIZE, SIZE))
    for i in range(4):
        write_image(base / "test" / "good" / f"{i:03d}.png", (SIZE, SIZE))
    for defect, masks in THIN_DEFECTS.items():
        for i, mask in enumerate(masks):
            write_image(base / "test" / defect / f"{i:03d}.png", (SIZE, SIZE))
            _save_mask(base / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
    return tmp_path / "thin"


def test_resize_keeps_every_defect_component_of_thin_masks():
    for defect, masks in THIN_DEFECTS.items():
        for mask in masks:
            small = resize_mask(mask, SMALL)
            assert small.shape == SMALL and small.dtype == bool
            # every component survives, none merge, and each lands where its source pixels are (÷4)
            assert ndimage.label(small)[1] == ndimage.label(mask)[1] == 1, defect
            rows, cols = np.nonzero(mask)
            assert set(np.flatnonzero(small.any(axis=1))) == set(rows // 4), defect
            assert set(np.flatnonzero(small.any(axis=0))) == set(cols // 4), defect
    scratch, dot = THIN_DEFECTS["scratch"][0], THIN_DEFECTS["dot"][0]
    assert np.array_equal(resize_mask(scratch, SMALL), _mask(SMALL, (25, 26, 0, 64)))
    assert np.array_equal(resize_mask(dot, SMALL), _mask(SMALL, (25, 26, 25, 26)))
    # enlarging is nearest neighbour; equal size is the identity; non-integer factors keep every component
    assert np.array_equal(resize_mask(_mask((2, 2), (0, 1, 0, 1)), (4, 4)), _mask((4, 4), (0, 2, 0, 2)))
    assert np.array_equal(resize_mask(dot, (SIZE, SIZE)), dot)
    rng = np.random.default_rng(0)
    sparse = rng.random((301, 177)) < 0.002
    labels, n = ndimage.label(sparse)
    small = resize_mask(sparse, (37, 50))
    assert small.sum() <= sparse.sum()
    for component in range(1, n + 1):
        rows, cols = np.nonzero(labels == component)
        cells = (((2 * rows + 1) * 37) // (2 * 301), ((2 * cols + 1) * 50) // (2 * 177))
        assert small[cells].all()


def test_clean_protocol_stores_the_thin_masks_non_empty(thin_tree: Path):
    for defect, masks in THIN_DEFECTS.items():
        for i, mask in enumerate(masks):
            path = thin_tree / "plate" / "ground_truth" / defect / f"{i:03d}_mask.png"
            stored = resized_mask(str(path), SMALL, "clean")
            assert stored.dtype == np.uint8 and set(np.unique(stored)) == {0, 1}
            assert np.array_equal(stored.astype(bool), resize_mask(mask, SMALL))


def test_prepare_reports_masks_whose_area_the_resize_changes(thin_tree: Path):
    _, report = build_manifest(dataset="t", layout="mvtec_ad", data_root=thin_tree, categories=None,
                                generated_root=None, generator="none", image_size=SMALL)
    changed = report["issues"]["mask_area_changed"]
    # 1-px lines (0.39 % of the image → 1.56 %) and the 2×2 dot (×4) grow; the aligned 8×8 block keeps its area
    assert changed["count"] == 3 and changed["severity"] == "warning"
    by_name = {Path(e["path"]).relative_to(thin_tree).as_posix(): e for e in changed["examples"]}
    assert sorted(by_name) == ["plate/ground_truth/dot/000_mask.png", "plate/ground_truth/scratch/000_mask.png",
                               "plate/ground_truth/scratch/001_mask.png"]
    assert by_name["plate/ground_truth/dot/000_mask.png"]["area_fraction"] == round(4 / SIZE**2, 6)
    assert by_name["plate/ground_truth/dot/000_mask.png"]["resized_area_fraction"] == round(1 / 64**2, 6)
    assert by_name["plate/ground_truth/scratch/000_mask.png"]["image_size"] == [64, 64]
    assert report["mask_resize"]["changed_by_more_than_half"] == 3
    assert sum("defect area the resize" in line for line in report["warnings"]) == 1
    # at the protocol's 256² nothing changes
    _, same = build_manifest(dataset="t", layout="mvtec_ad", data_root=thin_tree, categories=None,
                             generated_root=None, generator="none", image_size=(SIZE, SIZE))
    assert "mask_area_changed" not in same["issues"]


def test_thin_masks_reach_the_cached_split_non_empty(thin_tree: Path, tmp_path: Path):
    df, _ = build_manifest(dataset="t", layout="mvtec_ad", data_root=thin_tree, categories=None,
                           generated_root=None, generator="none", image_size=SMALL)
    test = df[df["split"] == "test"]
    cached = load_cached(test, SMALL, tmp_path / "cache", "clean")
    has_defect = np.asarray(cached.masks).reshape(len(test), -1).max(axis=1) > 0
    assert has_defect.tolist() == (cached.rows["label"] == 1).tolist()
    assert int((cached.rows["label"] == 1).sum()) == 4 and int((cached.rows["label"] == 0).sum()) == 4


# ---------------------------------------------------------------------------------------------------------------
# EXIF orientation


def _upright_pair(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with a bright defect in its upper-left quarter, and the mask of that defect."""
    image = np.full((height, width, 3), 40, np.uint8)
    mask = _mask((height, width), (4, height // 3, 4, width // 3))
    image[mask] = 230
    return image, mask


def _save_rotated_jpeg(path: Path, upright: np.ndarray, orientation: int = 6) -> Path:
    """Store ``upright`` as a phone camera does: pixels as the sensor saw them plus the tag that turns them upright.

    Orientation 6 means "rotate 90° clockwise to display", so the stored pixels are the upright view turned 90°
    counter-clockwise.
    """
    assert orientation == 6
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, quality=95, exif=exif.tobytes())
    return path


@pytest.fixture
def rotated_tree(tmp_path: Path) -> Path:
    """MVTec-AD tree whose defect images are rotated JPEGs (square and portrait) with upright PNG masks."""
    base = tmp_path / "phone" / "box"
    for i in range(3):
        write_image(base / "train" / "good" / f"{i:03d}.png", (48, 48))
        write_image(base / "test" / "good" / f"{i:03d}.png", (48, 48))
    for i, (width, height) in enumerate([(48, 48), (48, 48), (36, 48)]):
        image, mask = _upright_pair(width, height)
        _save_rotated_jpeg(base / "test" / "dent" / f"{i:03d}.jpg", image)
        _save_mask(base / "ground_truth" / "dent" / f"{i:03d}_mask.png", mask)
    return tmp_path / "phone"


def test_rotated_jpegs_are_read_upright_everywhere(rotated_tree: Path, tmp_path: Path):
    jpeg = rotated_tree / "box" / "test" / "dent" / "000.jpg"
    with Image.open(jpeg) as raw:
        assert raw.getexif()[EXIF_ORIENTATION] == 6
    upright, _ = _upright_pair(48, 48)
    pixels = read_image(jpeg)
    assert np.abs(pixels.astype(int) - upright).max() < 30  # JPEG noise only: same orientation as the mask
    # strict prepare accepts the portrait image (36×48 upright, 48×36 stored) with its upright 36×48 mask
    df, report = build_manifest(dataset="t", layout="mvtec_ad", data_root=rotated_tree, categories=None,
                                generated_root=None, generator="none", image_size=(48, 48))
    rotated = report["issues"]["exif_orientation"]
    assert rotated["count"] == 3 and rotated["severity"] == "warning"
    assert {e["orientation"] for e in rotated["examples"]} == {6}
    assert sum("EXIF orientation" in line for line in report["warnings"]) == 1
    defects = df[df["label"] == 1]
    assert len(defects) == 3 and "size_mismatch" not in report["issues"]
    # what the network sees: the bright defect lies under the mask, in train/eval's cache too
    cached = load_cached(defects, (48, 48), tmp_path / "cache", "clean")
    for image, stored in zip(np.asarray(cached.images), np.asarray(cached.masks), strict=True):
        gray = image.mean(axis=2)
        assert gray[stored > 0].mean() > 180 and gray[stored == 0].mean() < 80


def test_a_mask_with_its_own_orientation_tag_is_read_upright(tmp_path: Path):
    _, mask = _upright_pair(40, 30)
    stored = Image.fromarray(mask.astype(np.uint8) * 255).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    path = tmp_path / "m.png"
    stored.save(path, exif=exif.tobytes())
    assert np.array_equal(read_mask(path), mask)


# ---------------------------------------------------------------------------------------------------------------
# inverted masks, good images with defect masks, console


def test_inverted_masks_are_flagged_naming_the_folder(mvtec):
    root = mvtec({"bottle": {"defects": {"crack": 3, "hole": 3}}})
    folder = root / "bottle" / "ground_truth" / "hole"
    for i in range(2):  # 2 of 3 hole masks: defect white everywhere but a small box (the opposite convention)
        _save_mask(folder / f"{i:03d}_mask.png", ~_mask((16, 16), (4, 10, 4, 10)))
    _, report = build_manifest(dataset="t", layout="mvtec_ad", data_root=root, categories=None,
                               generated_root=None, generator="none")
    inverted = report["issues"]["inverted_masks"]
    assert inverted["count"] == 1 and inverted["severity"] == "warning"
    assert inverted["examples"][0]["path"] == str(folder)
    assert inverted["examples"][0]["mostly_defect"] == 2 and inverted["examples"][0]["masks"] == 3
    assert any(str(folder) in line for line in report["warnings"])


def test_good_image_with_a_defect_mask_is_flagged_and_keeps_label_0(tmp_path: Path):
    image = write_image(tmp_path / "test" / "good" / "000.png")
    mask = _save_mask(tmp_path / "gt" / "good" / "000.png", _mask((16, 16), (2, 5, 2, 5)))
    empty = _save_mask(tmp_path / "gt" / "good" / "001.png", _mask((16, 16)))
    report = DataReport(strict=True)
    samples = [Sample("c", "good", TEST_GOOD, image, mask, 0, 2), Sample("c", "good", TEST_GOOD, image, empty, 1, 2)]
    kept = verify_samples(samples, None, report, None, (16, 16))
    assert len(kept) == 2
    issues = report.as_dict()
    assert issues["good_with_defect_mask"]["count"] == 1
    assert issues["good_with_defect_mask"]["examples"][0]["path"] == str(mask)
    assert "empty_defect_mask" not in issues


def test_prepare_console_names_each_problem_once(thin_tree: Path, tmp_path: Path):
    _save_mask(thin_tree / "plate" / "ground_truth" / "dot" / "001_mask.png", _mask((SIZE, SIZE)))  # now empty
    recipe = tmp_path / "thin.yaml"
    recipe.write_text(f"name: thin\ntask: anomaly\nlayout: mvtec_ad\ndata_root: {thin_tree}\n"
                      "generator: none\nimage_size: [64, 64]\n")
    result = CliRunner().invoke(main, ["prepare", "--recipe", str(recipe), "--generator", "none",
                                       "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.count("defect area the resize") == 1, text
    assert "3 × mask(s) whose defect area the resize" in " ".join(text.split())
    assert text.count("with an empty mask") == 1, text
    report = json.loads((tmp_path / "out" / "thin" / "none" / "data_report.json").read_text())
    assert report["issues"]["mask_area_changed"]["count"] == 3
    assert report["issues"]["empty_defect_mask"]["count"] == 1


def test_layouts_check_the_masks_of_good_images(mvtec, tmp_path: Path):
    root = mvtec({"bottle": {"test_good": 3, "defects": {"crack": 3}}})
    gt_good = root / "bottle" / "ground_truth" / "good"
    _save_mask(gt_good / "000_mask.png", _mask((16, 16)))  # empty: fine
    _save_mask(gt_good / "001_mask.png", _mask((16, 16), (2, 6, 2, 6)))  # a defect drawn on a good image
    # MVTec 3D AD ships all-zero masks for test/good in test/good/gt
    base3d = tmp_path / "mv3d" / "cookie"
    for split in ("train", "test"):
        for i in range(2):
            write_image(base3d / split / "good" / "rgb" / f"{i:03d}.png")
    _save_mask(base3d / "test" / "good" / "gt" / "000.png", _mask((16, 16)))
    _save_mask(base3d / "test" / "good" / "gt" / "001.png", _mask((16, 16), (0, 16, 0, 1)))
    for i in range(3):
        write_image(base3d / "test" / "hole" / "rgb" / f"{i:03d}.png")
        _save_mask(base3d / "test" / "hole" / "gt" / f"{i:03d}.png", _mask((16, 16), (4, 8, 4, 8)))
    for layout, data_root, flagged in (("mvtec_ad", root, gt_good / "001_mask.png"),
                                       ("mvtec_3d_ad", tmp_path / "mv3d", base3d / "test" / "good" / "gt" / "001.png")):
        df, report = build_manifest(dataset="t", layout=layout, data_root=data_root, categories=None,
                                    generated_root=None, generator="none")
        good = report["issues"]["good_with_defect_mask"]
        assert good["count"] == 1 and [e["path"] for e in good["examples"]] == [str(flagged)], layout
        assert sum("good image(s) whose mask marks defect pixels" in line for line in report["warnings"]) == 1
        normal = df[df["defect"] == "good"]
        assert (normal["label"] == 0).all() and (normal["mask"] == "").all(), layout


def test_arrays_cached_by_an_older_decoder_are_not_reused(thin_tree: Path):
    import hashlib

    from anoseg.data.dataset import cache_key

    df, _ = build_manifest(dataset="t", layout="mvtec_ad", data_root=thin_tree, categories=None,
                           generated_root=None, generator="none")
    # the key the previous decoder (nearest-neighbour masks, EXIF ignored) gave the same rows
    old = hashlib.sha1(f"{SMALL}|clean|None".encode())
    for image, mask in zip(df["image"], df["mask"], strict=True):
        for path in (image, mask):
            stat = Path(path).stat() if path else None
            old.update(f"{path}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}\n".encode())
    assert cache_key(df, SMALL, "clean", None) != old.hexdigest()[:20]
