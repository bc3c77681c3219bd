"""Tests of the built-in anomaly generators (perlin via anomalib, cutpaste ours) on tiny MVTec-layout trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anoseg.data import generators
from anoseg.data.generators import cutpaste_patch, cutpaste_scar, generate_pairs
from anoseg.data.images import read_image
from anoseg.errors import AnosegError

N_GOOD = 3


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random but smooth-ish RGB picture: every pixel distinct enough that copies can be traced back."""
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_tree(root: Path, *, mvtec3d: bool = False) -> Path:
    """``alpha``: 64×64 RGB; ``beta``: 40×48 grayscale (mode L, non-square); each with test images and masks."""
    rng = np.random.default_rng(123)
    for category, (height, width), gray in (("alpha", (64, 64), False), ("beta", (40, 48), True)):
        base = root / category
        good = base / "train" / "good" / ("rgb" if mvtec3d else "")
        for k in range(N_GOOD):
            image = _texture(rng, height, width)
            _save(good / f"{k:03d}.png", image[..., 0] if gray else image)
        test_good = base / "test" / "good" / ("rgb" if mvtec3d else "")
        _save(test_good / "000.png", _texture(rng, height, width))
        mask = np.zeros((height, width), np.uint8)
        mask[5:10, 5:10] = 255
        if mvtec3d:
            _save(base / "test" / "crack" / "rgb" / "000.png", _texture(rng, height, width))
            _save(base / "test" / "crack" / "gt" / "000.png", mask)
        else:
            _save(base / "test" / "crack" / "000.png", _texture(rng, height, width))
            _save(base / "ground_truth" / "crack" / "000_mask.png", mask)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "mvtec")


def _run(tree: Path, out: Path, **kwargs) -> dict:
    args = {"method": "cutpaste", "layout": "mvtec_ad", "data_root": tree, "categories": ["alpha"], "count": 4,
            "out": out, "seed": 0}
    args.update(kwargs)
    return generate_pairs(**args)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _pairs(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(``<defect>/<name>``, RGB image, raw mask) of every pair below a category folder."""
    pairs = []
    for image_path in sorted(folder.glob("*/image/*.png")):
        mask_path = image_path.parent.parent / "mask" / image_path.name
        pairs.append((f"{image_path.parent.parent.name}/{image_path.name}",
                      np.asarray(Image.open(image_path)), np.asarray(Image.open(mask_path))))
    return pairs


def _assert_aligned(source: np.ndarray, image: np.ndarray, mask: np.ndarray) -> None:
    """The mask is non-empty, nothing outside it changed, and something under it did."""
    inside = mask > 0
    assert inside.any()
    assert np.array_equal(image[~inside], source[~inside])
    assert (image[inside] != source[inside]).any()


# ---------------------------------------------------------------------------------------------------------------
# layout, summary, alignment


def test_cutpaste_layout_and_summary(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    summary = _run(tree, out, categories=["alpha", "beta"], count=5)

    for category, size in (("alpha", (64, 64)), ("beta", (48, 40))):
        folder = out / category
        assert sorted(p.name for p in folder.iterdir()) == ["cutpaste_patch", "cutpaste_scar"]
        for defect, n in (("cutpaste_patch", 3), ("cutpaste_scar", 2)):
            names = [f"{k:03d}.png" for k in range(n)]
            assert sorted(p.name for p in (folder / defect / "image").iterdir()) == names
            assert sorted(p.name for p in (folder / defect / "mask").iterdir()) == names
            for name in names:
                image, mask = Image.open(folder / defect / "image" / name), Image.open(folder / defect / "mask" / name)
                assert (image.mode, mask.mode) == ("RGB", "L")
                assert image.size == mask.size == size
                assert set(np.unique(np.asarray(mask))) == {0, 255}
        entry = summary["categories"][category]
        assert entry["written"] == 5 and entry["skipped_empty"] == 0
        assert entry["defects"] == {"cutpaste_patch": 3, "cutpaste_scar": 2}
        assert entry["sources_available"] == N_GOOD and entry["sources_used"] == N_GOOD
    assert summary["written"] == 10


def test_cutpaste_pairs_cycle_sources_and_change_only_masked_pixels(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    _run(tree, out, categories=["alpha", "beta"], count=8)
    for category in ("alpha", "beta"):
        sources = [read_image(p) for p in sorted((tree / category / "train" / "good").glob("*.png"))]
        pairs = _pairs(out / category)
        assert len(pairs) == 8
        for name, image, mask in pairs:
            index = int(Path(name).stem)
            _assert_aligned(sources[index % N_GOOD], image, mask)


def test_perlin_layout_and_alignment(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    summary = _run(tree, out, method="perlin", categories=["beta"], count=4)
    folder = out / "beta"
    assert [p.name for p in folder.iterdir()] == ["perlin"]
    sources = [read_image(p) for p in sorted((tree / "beta" / "train" / "good").glob("*.png"))]
    pairs = _pairs(folder)
    assert [name for name, _, _ in pairs] == [f"perlin/{k:03d}.png" for k in range(4)]
    for name, image, mask in pairs:
        assert image.shape == (40, 48, 3) and mask.shape == (40, 48)
        assert set(np.unique(mask)) == {0, 255}
        _assert_aligned(sources[int(Path(name).stem) % N_GOOD], image, mask)
    assert summary["categories"]["beta"]["defects"] == {"perlin": 4}


def test_anomalib_perlin_changes_only_masked_pixels() -> None:
    """anomalib's own claim, without our where(mask, …) composition: binary mask, nothing changed outside it."""
    torch = pytest.importorskip("torch")
    from anomalib.data.utils.generators import PerlinAnomalyGenerator

    generator = PerlinAnomalyGenerator(probability=1.0)
    image = torch.from_numpy(_texture(np.random.default_rng(0), 64, 64)).permute(2, 0, 1).float() / 255
    for seed in range(8):
        torch.manual_seed(seed)
        augmented, mask = generator(image)
        assert mask.shape == (1, 64, 64)
        assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() > 0
        outside = mask[0] == 0
        assert torch.equal(augmented[:, outside], image[:, outside])
        assert not torch.equal(augmented[:, ~outside], image[:, ~outside])


def test_image_size_resizes_sources_first(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    _run(tree, out, categories=["beta"], count=2, image_size=32)
    for _, image, mask in _pairs(out / "beta"):
        assert image.shape == (32, 32, 3) and mask.shape == (32, 32)


def test_mvtec_3d_original_layout_reads_train_good_rgb(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "mvtec3d", mvtec3d=True)
    summary = _run(root, tmp_path / "gen", layout="mvtec_3d_ad", categories=["all"], count=2)
    assert sorted(summary["categories"]) == ["alpha", "beta"]
    assert all(entry["written"] == 2 for entry in summary["categories"].values())


def test_progress_reports_every_pair(tree: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    _run(tree, tmp_path / "gen", categories=["alpha", "beta"], count=3, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k, 6) for k in range(1, 7)]


# ---------------------------------------------------------------------------------------------------------------
# the cutpaste primitives


@pytest.mark.parametrize("jitter", [0.0, 0.1])
def test_cutpaste_patch_copies_a_window_of_the_same_image(jitter: float) -> None:
    image = _texture(np.random.default_rng(1), 64, 64)
    for seed in range(20):
        out, mask = cutpaste_patch(image, np.random.default_rng(seed), jitter=jitter)
        ys, xs = np.nonzero(mask)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert mask.sum() == h * w  # a filled rectangle
        assert 0.015 <= mask.mean() <= 0.16  # 2–15 % of the area, up to rounding of the sides
        assert 0.3 / 1.2 <= w / h <= 3.3 * 1.2
        assert np.array_equal(out[~mask], image[~mask])
        if jitter == 0:  # the pasted rectangle is an exact copy of some window of the source image
            pasted = out[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            windows = np.lib.stride_tricks.sliding_window_view(image, (h, w, 3))[..., 0, :, :, :]
            assert (windows == pasted).all(axis=(2, 3, 4)).any()


def test_cutpaste_scar_is_thin_rotated_and_made_of_source_pixels() -> None:
    image = _texture(np.random.default_rng(2), 128, 128)
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    bounding_shapes = set()
    for seed in range(20):
        out, mask = cutpaste_scar(image, np.random.default_rng(seed), jitter=0.0)
        assert mask.any()
        assert np.array_equal(out[~mask], image[~mask])
        # at most 16 px × 25 % of the side (nearest-neighbour rotation may add a pixel per row)
        assert mask.sum() <= 16 * 0.25 * 128 * 1.2
        assert {tuple(c) for c in out[mask]} <= colours
        ys, xs = np.nonzero(mask)
        bounding_shapes.add((ys.max() - ys.min(), xs.max() - xs.min()))
    assert len(bounding_shapes) > 10  # varied sizes and angles


def test_color_jitter_changes_colours_but_keeps_shape() -> None:
    patch = _texture(np.random.default_rng(3), 8, 8)
    jittered = generators.color_jitter(patch, np.random.default_rng(0))
    assert jittered.shape == patch.shape and jittered.dtype == np.uint8
    assert not np.array_equal(jittered, patch)
    assert np.array_equal(generators.color_jitter(patch, np.random.default_rng(0), strength=0), patch)


# ---------------------------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("method", ["cutpaste", "perlin"])
def test_same_seed_same_bytes_other_seed_other_bytes(tree: Path, tmp_path: Path, method: str) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        _run(tree, tmp_path / name, method=method, count=3, seed=seed)
    first, second, other = (_files(tmp_path / name) for name in "abc")
    assert len(first) == 2 * 3 and first == second
    assert first.keys() == other.keys()
    assert all(first[k] != other[k] for k in first if "/image/" in k)


def test_pairs_do_not_depend_on_count_or_category_list(tree: Path, tmp_path: Path) -> None:
    small = _run(tree, tmp_path / "small", categories=["alpha"], count=2)
    _run(tree, tmp_path / "large", categories=["beta", "alpha"], count=4)
    assert small["written"] == 2
    large = _files(tmp_path / "large" / "alpha")
    for name, data in _files(tmp_path / "small" / "alpha").items():  # patch 000, scar 000
        assert large[name] == data


def test_torch_global_rng_is_left_alone(tree: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _run(tree, tmp_path / "gen", method="perlin", count=1)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------------------------------------------
# sources: only train/good


def test_never_reads_test_images(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in [*tree.rglob("test/**/*.png"), *tree.rglob("ground_truth/**/*.png")]:
        path.write_bytes(b"not a png")  # any attempt to decode these would raise
    opened: list[Path] = []

    def spy(path, **kwargs):
        opened.append(Path(path))
        return read_image(path, **kwargs)

    monkeypatch.setattr(generators, "read_image", spy)
    _run(tree, tmp_path / "gen", categories=["alpha", "beta"], count=4)
    assert len(opened) == 8
    assert all(p.parent.parts[-2:] == ("train", "good") for p in opened)


# ---------------------------------------------------------------------------------------------------------------
# empty draws


def test_empty_draws_are_redrawn_and_counted(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[bytes] = set()

    def first_draw_empty(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        key = image.tobytes()
        if key not in seen:  # the first draw on each new source image is empty
            seen.add(key)
            return image.copy(), np.zeros(image.shape[:2], bool)
        return cutpaste_patch(image, np.random.default_rng(seed))

    monkeypatch.setattr(generators, "_makers", lambda *a: {"cutpaste_patch": first_draw_empty,
                                                           "cutpaste_scar": first_draw_empty})
    summary = _run(tree, tmp_path / "gen", count=6)
    assert summary["categories"]["alpha"]["written"] == 6
    assert summary["categories"]["alpha"]["skipped_empty"] == N_GOOD  # one per distinct source image
    for _, _, mask in _pairs(tmp_path / "gen" / "alpha"):
        assert mask.any()


def test_always_empty_draws_give_up_naming_the_source(tree: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def unchanged(image, seed):
        return image.copy(), np.ones(image.shape[:2], bool)  # mask set but nothing changed: not a defect

    monkeypatch.setattr(generators, "_makers", lambda *a: {"cutpaste_patch": unchanged, "cutpaste_scar": unchanged})
    with pytest.raises(AnosegError, match=r"train/good/000\.png"):
        _run(tree, tmp_path / "gen", count=1)


# ---------------------------------------------------------------------------------------------------------------
# overwrite


def test_refuses_to_overwrite_unless_asked(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    _run(tree, out, count=4)
    stale = out / "alpha" / "cutpaste_patch" / "image" / "999.png"
    stale.write_bytes(b"old")
    with pytest.raises(AnosegError, match=str(out / "alpha")):
        _run(tree, out, count=2)
    assert stale.exists()  # nothing touched

    summary = _run(tree, out, count=2, overwrite=True)
    assert summary["written"] == 2
    assert not stale.exists()
    assert len(_files(out / "alpha")) == 4


def test_empty_output_folder_is_fine(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "gen" / "alpha").mkdir(parents=True)
    assert _run(tree, tmp_path / "gen", count=1)["written"] == 1


def test_overwrite_never_deletes_a_dataset(tree: Path) -> None:
    # --out pointing at the data root: <out>/alpha is the real category, which must survive --overwrite
    with pytest.raises(AnosegError, match="refusing to overwrite"):
        _run(tree, tree, count=1, overwrite=True)
    assert (tree / "alpha" / "train" / "good" / "000.png").is_file()


def test_other_categories_checked_before_writing(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    _run(tree, out, categories=["beta"], count=1)
    with pytest.raises(AnosegError, match="beta"):
        _run(tree, out, categories=["alpha", "beta"], count=1)
    assert not (out / "alpha").exists()


# ---------------------------------------------------------------------------------------------------------------
# textures (perlin)


def test_perlin_with_texture_folder(tree: Path, tmp_path: Path) -> None:
    textures = tmp_path / "dtd" / "images" / "banded"
    rng = np.random.default_rng(9)
    _save(textures / "a.PNG", _texture(rng, 30, 20))  # upper-case suffix: anomalib alone would miss it
    _save(textures / "b.jpg", _texture(rng, 20, 30))
    (textures / "readme.txt").write_text("not an image")
    maker = generators.PerlinDefects(tmp_path / "dtd")
    assert [p.name for p in maker.generator.anomaly_source_paths] == ["a.PNG", "b.jpg"]

    out = tmp_path / "gen"
    _run(tree, out, method="perlin", count=2, textures=tmp_path / "dtd")
    sources = [read_image(p) for p in sorted((tree / "alpha" / "train" / "good").glob("*.png"))]
    for name, image, mask in _pairs(out / "alpha"):
        _assert_aligned(sources[int(Path(name).stem)], image, mask)


# ---------------------------------------------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "draem"}, "unknown --method 'draem'"),
    ({"count": 0}, "--count"),
    ({"image_size": 2}, "--image-size"),
    ({"categories": []}, "no category"),
    ({"categories": ["gamma"]}, "category 'gamma' not found"),
    ({"layout": "kitti"}, "unknown layout 'kitti'"),
    ({"textures": Path("/nonexistent")}, "perlin method only"),
    ({"method": "perlin", "textures": Path("/nonexistent/dtd")}, "texture folder not found: /nonexistent/dtd"),
])
def test_bad_options(tree: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(AnosegError, match=message.replace("(", r"\(").replace("-", r"\-")):
        _run(tree, tmp_path / "gen", **kwargs)


def test_missing_data_root(tmp_path: Path) -> None:
    with pytest.raises(AnosegError, match=str(tmp_path / "nowhere")):
        _run(tmp_path / "nowhere", tmp_path / "gen")


@pytest.mark.parametrize("empty", [True, False])
def test_missing_or_empty_train_good(tree: Path, tmp_path: Path, empty: bool) -> None:
    good = tree / "alpha" / "train" / "good"
    for path in good.iterdir():
        path.unlink()
    if not empty:
        good.rmdir()
    with pytest.raises(AnosegError, match=str(good)):
        _run(tree, tmp_path / "gen")


def test_empty_texture_folder(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "dtd").mkdir()
    with pytest.raises(AnosegError, match="no texture images"):
        _run(tree, tmp_path / "gen", method="perlin", textures=tmp_path / "dtd")


def test_registry_matches_the_cli_vocabulary():
    from anoseg.constants import GENERATION_METHODS

    assert tuple(generators.METHODS) == GENERATION_METHODS
    assert {name: m.defects for name, m in generators.METHODS.items()} == {
        "perlin": ("perlin",), "cutpaste": ("cutpaste_patch", "cutpaste_scar")}
    assert [name for name, m in generators.METHODS.items() if m.uses_textures] == ["perlin"]
