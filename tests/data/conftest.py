"""Tiny dataset trees built in tmp_path for the data-stage tests (16×16 PNGs, nothing downloaded)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIZE = 16


def write_image(path: Path, size: tuple[int, int] = (SIZE, SIZE), mode: str = "RGB") -> Path:
    """A small image whose pixels depend on its path (so no two test images are duplicates)."""
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = (SIZE, SIZE), box: tuple[int, int, int, int] = (4, 4, 10, 10),
               value: int = 255) -> Path:
    """An L-mode mask with one filled box ``(x0, y0, x1, y1)`` (exclusive ends) of ``value``."""
    width, height = size
    pixels = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def names(n: int, padded: bool = True, start: int = 0, ext: str = ".png") -> list[str]:
    return [f"{i:03d}{ext}" if padded else f"{i}{ext}" for i in range(start, start + n)]


def make_mvtec(root: Path, categories: dict[str, dict], mask_suffix: str = "_mask") -> Path:
    """An MVTec-AD tree. ``categories[c]`` = {"train_good": int, "test_good": int, "defects": {d: int | names}}."""
    for category, spec in categories.items():
        base = root / category
        for name in names(spec.get("train_good", 3)):
            write_image(base / "train" / "good" / name)
        for name in names(spec.get("test_good", 2)):
            write_image(base / "test" / "good" / name)
        for defect, files in spec.get("defects", {}).items():
            for name in names(files) if isinstance(files, int) else files:
                write_image(base / "test" / defect / name)
                write_mask(base / "ground_truth" / defect / f"{Path(name).stem}{mask_suffix}.png")
    return root


def make_generated(root: Path, categories: dict[str, dict[str, int]], size: tuple[int, int] = (24, 24)) -> Path:
    """A SeaS-layout tree: ``categories[c][d]`` pairs in ``<root>/<c>/<d>/{image,mask}/NNN.png``."""
    for category, defects in categories.items():
        for defect, n in defects.items():
            for name in names(n):
                write_image(root / category / defect / "image" / name, size)
                write_mask(root / category / defect / "mask" / name, size)
    return root


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def mvtec(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``mvtec({"bottle": {...}})`` → root of a fresh MVTec-AD tree under tmp_path."""

    def build(categories: dict[str, dict] | None = None, mask_suffix: str = "_mask", name: str = "mvtec") -> Path:
        categories = categories or {"bottle": {"defects": {"crack": 4, "hole": 3}}}
        return make_mvtec(tmp_path / name, categories, mask_suffix)

    return build


@pytest.fixture
def generated(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``generated({"bottle": {"crack": 5}}, name="seas")`` → a generated-pairs root under tmp_path."""

    def build(categories: dict[str, dict[str, int]] | None = None, name: str = "generated/seas") -> Path:
        return make_generated(tmp_path / name, categories or {"bottle": {"crack": 5}})

    return build


def rows_of(df, **where: object) -> list[dict]:
    """Manifest rows matching column == value filters, as dicts."""
    mask = np.ones(len(df), bool)
    for column, value in where.items():
        mask &= (df[column] == value).to_numpy()
    return df[mask].to_dict("records")


def stems(paths: Iterable[str]) -> list[str]:
    return [Path(p).stem for p in paths]
