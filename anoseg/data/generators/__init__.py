"""Built-in anomaly generators: defect image/mask pairs made from a category's ``train/good`` images.

These are the classical baselines that the SeaS paper compares generated data against. ``generate_pairs`` writes the
generated-pair layout that ``anoseg prepare`` reads (docs/protocol.md §1.4)::

    <out>/<category>/<defect>/image/NNN.png     RGB, the source image's size (or image_size × image_size)
    <out>/<category>/<defect>/mask/NNN.png      L mode, exactly 0 / 255, same name and size as the image

Methods (the ``METHODS`` registry here; one module per method) and their defect folders:

* ``perlin`` → ``perlin`` (``perlin.py``): anomalib's ``PerlinAnomalyGenerator`` (the DRAEM recipe), with an optional
  texture folder (e.g. DTD);
* ``cutpaste`` → ``cutpaste_patch`` and ``cutpaste_scar`` (``cutpaste.py``; count split between them, patch first):
  CutPaste (Li et al., 2021) with masks, which no library provides.

To add a method: a module with its defect maker(s), and one ``Method`` record in ``METHODS``.

Guarantees: only ``train/good`` images are read (never test images); pair ``k`` of a defect folder uses the ``k``-th
source image, cycling through the sorted list; every pair has its own seed derived from (seed, category, defect,
``k``, attempt), so the same seed writes byte-identical files whatever the count or category list; a mask covers
exactly the pixels that may differ from the source, and every pixel outside it is unchanged; a draw whose mask is
empty (or that changed nothing under its mask) is discarded, counted, and redrawn.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from anoseg.constants import ALL_CATEGORIES, CUTPASTE, PERLIN
from anoseg.data.generators.cutpaste import color_jitter, cutpaste_patch, cutpaste_scar
from anoseg.data.generators.perlin import PerlinDefects
from anoseg.data.images import read_image
from anoseg.data.layouts import TRAIN_GOOD, open_layout
from anoseg.errors import AnosegError
from anoseg.io import check_output, check_removable, name_bytes, write_with

IMAGE_DIR, MASK_DIR = "image", "mask"
#: Draws per pair before giving up on a source image (an empty draw is rare: ~0 for cutpaste, <1 % for perlin).
MAX_ATTEMPTS = 25

#: A defect maker: (source RGB uint8 image, pair seed) → (defect image, bool mask of the pixels that may differ).
DefectMaker = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Method:
    """A registered generator method: the defect folders it writes, in the order the count is split between them,
    and the factory of their makers from (texture folder or None, seed)."""

    defects: tuple[str, ...]
    makers: Callable[[Path | None, int], dict[str, DefectMaker]]
    uses_textures: bool = False


def _numpy_maker(fn: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]) -> DefectMaker:
    return lambda image, seed: fn(image, np.random.default_rng(seed))


def _perlin_makers(textures: Path | None, seed: int) -> dict[str, DefectMaker]:
    perlin = PerlinDefects(textures, seed=seed)
    if textures is not None and perlin.n_textures == 0:
        raise AnosegError(f"no texture images (.png, .jpg, ...) found in {textures}")
    return {"perlin": perlin}


def _cutpaste_makers(textures: Path | None, seed: int) -> dict[str, DefectMaker]:
    return {"cutpaste_patch": _numpy_maker(cutpaste_patch), "cutpaste_scar": _numpy_maker(cutpaste_scar)}


#: The registry: method name (``anoseg generate --method``) → its record.
METHODS: dict[str, Method] = {
    PERLIN: Method(("perlin",), _perlin_makers, uses_textures=True),
    CUTPASTE: Method(("cutpaste_patch", "cutpaste_scar"), _cutpaste_makers),
}


# ---------------------------------------------------------------------------------------------------------------
# generate_pairs


def generate_pairs(*, method: str, layout: str, data_root: Path, categories: list[str], count: int, out: Path,
                   seed: int = 0, textures: Path | None = None, overwrite: bool = False,
                   image_size: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Write ``count`` defect image/mask pairs per category, made from its ``train/good`` images, below ``out``.

    ``layout`` is a recipe layout (``mvtec_ad``, ``visa``, ``mvtec_3d_ad``) read from ``data_root``; ``categories``
    may be ``["all"]`` (every category found). ``cutpaste`` splits ``count`` between ``cutpaste_patch`` (the larger
    half) and ``cutpaste_scar``. ``textures`` (perlin only) is a folder of texture images (e.g. DTD). Images are
    made at the source resolution, or resized to ``image_size`` × ``image_size`` first. An existing non-empty
    ``<out>/<category>`` is an error unless ``overwrite`` (then it is replaced, if it holds only generated pairs).
    ``progress(done, total)`` is called after each pair. Returns a JSON-able summary.

    Example:
        >>> summary = generate_pairs(method="cutpaste", layout="mvtec_ad", data_root=Path("data/demo/mvtec"),
        ...                          categories=["disk"], count=10, out=Path("data/generated/cutpaste"))
        ... # doctest: +SKIP
        >>> summary["categories"]["disk"]["written"], summary["categories"]["disk"]["defects"]  # doctest: +SKIP
        (10, {'cutpaste_patch': 5, 'cutpaste_scar': 5})
    """
    if method not in METHODS:
        raise AnosegError(f"unknown --method {method!r}; choose one of: {', '.join(METHODS)}")
    if count < 1:
        raise AnosegError(f"--count must be at least 1 (got {count})")
    if image_size is not None and image_size < 8:
        raise AnosegError(f"--image-size must be at least 8 pixels (got {image_size})")
    if textures is not None and not METHODS[method].uses_textures:
        users = ", ".join(name for name, m in METHODS.items() if m.uses_textures)
        raise AnosegError(f"--textures is used by the {users} method only (got --method {method})")
    if textures is not None and not Path(textures).is_dir():
        raise AnosegError(f"texture folder not found: {textures}")
    out = Path(out)

    sources = _train_good_sources(layout, Path(data_root), categories)
    for category in sources:  # check every category before writing anything
        _check_output(out / category, overwrite)
        check_output(out / category, folder=True, replace=False)
        if overwrite and (out / category).is_dir():
            check_removable(out / category)

    makers = _makers(method, textures, seed)
    counts = _split_count(count, METHODS[method].defects)
    summary: dict = {"method": method, "layout": layout, "data_root": str(data_root), "out": str(out), "seed": seed,
                     "count": count, "image_size": image_size, "textures": str(textures) if textures else None,
                     "categories": {}}
    total, done = count * len(sources), 0
    for category, images in sources.items():
        folder = out / category
        if folder.exists():
            shutil.rmtree(folder)  # overwrite=True here: _check_output refused otherwise
        written, skipped = 0, 0
        for defect, n in counts.items():
            for index in range(n):
                source = images[index % len(images)]
                skipped += _write_pair(makers[defect], source, folder / defect, index, n, image_size,
                                       _pair_seed(seed, category, defect, index))
                written += 1
                done += 1
                if progress is not None:
                    progress(done, total)
        summary["categories"][category] = {
            "folder": str(folder), "written": written, "skipped_empty": skipped,
            "sources_used": min(len(images), max(counts.values())), "sources_available": len(images),
            "defects": {d: n for d, n in counts.items() if n},
        }
    summary["written"] = sum(c["written"] for c in summary["categories"].values())
    summary["skipped_empty"] = sum(c["skipped_empty"] for c in summary["categories"].values())
    return summary


def _makers(method: str, textures: Path | None, seed: int) -> dict[str, DefectMaker]:
    return METHODS[method].makers(textures, seed)


def _split_count(count: int, defects: tuple[str, ...]) -> dict[str, int]:
    """``count`` shared between ``defects`` as evenly as possible, the first ones getting the remainder."""
    base, extra = divmod(count, len(defects))
    return {d: base + (i < extra) for i, d in enumerate(defects)}


def _pair_seed(seed: int, category: str, defect: str, index: int) -> int:
    """A seed of its own for each pair: independent of the count, the category list and the generation order."""
    # crc32, not hash(): str hashes change between Python processes
    entropy = [seed & 0xFFFFFFFF, zlib.crc32(name_bytes(category)), zlib.crc32(name_bytes(defect)), index]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _write_pair(maker: DefectMaker, source: Path, folder: Path, index: int, n: int, image_size: int | None,
                seed: int) -> int:
    """Make and write pair ``index`` of ``folder`` from ``source``; returns the number of discarded (empty) draws."""
    image = read_image(source)
    if image_size is not None and image.shape[:2] != (image_size, image_size):
        image = np.asarray(Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BILINEAR))
    for attempt in range(MAX_ATTEMPTS):
        draw_seed = seed if attempt == 0 else int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])
        defect_image, mask = maker(image, draw_seed)
        # an empty mask, or one under which nothing changed, would be a normal image labelled as a defect
        if mask.any() and (defect_image[mask] != image[mask]).any():
            name = f"{index:0{max(3, len(str(n - 1)))}d}.png"  # zero-padded so name order = number order
            _save_png(folder / IMAGE_DIR / name, defect_image)
            _save_png(folder / MASK_DIR / name, mask.astype(np.uint8) * 255)
            return attempt
    raise AnosegError(f"no visible defect made from {source} in {MAX_ATTEMPTS} draws (image too small or flat?)")


def _save_png(path: Path, array: np.ndarray) -> None:
    image = Image.fromarray(array)  # (H, W, 3) uint8 → RGB, (H, W) uint8 → L
    write_with(path, lambda tmp: image.save(tmp, format="PNG"))


# ---------------------------------------------------------------------------------------------------------------
# inputs and outputs


def _train_good_sources(layout: str, data_root: Path, categories: list[str]) -> dict[str, list[Path]]:
    """Category → its sorted ``train/good`` image paths (listed by the layout reader; no test image is opened)."""
    if not data_root.is_dir():
        raise AnosegError(f"data root not found: {data_root}")
    reader = open_layout(layout, data_root)
    found = reader.categories()
    if not categories:
        raise AnosegError("no category given (--category)")
    names = found if ALL_CATEGORIES in categories else list(dict.fromkeys(categories))
    if not names:
        raise AnosegError(f"no categories found in {data_root} (layout {layout})")
    sources: dict[str, list[Path]] = {}
    for category in names:
        if category not in found:
            raise AnosegError(f"category {category!r} not found in {data_root} "
                              f"(found: {', '.join(found) or 'none'})")
        scan = reader.scan(category)
        images = sorted((s.image for s in scan.samples if s.role == TRAIN_GOOD), key=lambda p: (p.name, str(p)))
        if not images:
            folders = [str(f.path) for f in scan.folders if f.role == TRAIN_GOOD]
            folders += [i.path for i in scan.issues if i.kind == "missing_good" and "train" in Path(i.path).parts]
            where = folders[0] if folders else str(data_root / category / "train" / "good")
            raise AnosegError(f"no train/good images for category {category!r}: {where} is missing or empty")
        sources[category] = images
    return sources


def _check_output(folder: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``overwrite``; never replace one that holds more than pairs."""
    if folder.exists() and not folder.is_dir():
        raise AnosegError(f"output {folder} exists and is not a folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not overwrite:
        raise AnosegError(f"output folder {folder} is not empty; pass --overwrite to replace it")
    # --overwrite deletes the folder: make sure it is a generated-pair folder and not, say, a dataset category
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        children = {c.name for c in entry.iterdir() if not c.name.startswith(".")} if entry.is_dir() else None
        if children is None or not children <= {IMAGE_DIR, MASK_DIR}:
            raise AnosegError(f"refusing to overwrite {folder}: {entry} is not a <defect>/{{image,mask}} folder of "
                              f"generated pairs; remove it yourself or choose another --out")


__all__ = ["METHODS", "DefectMaker", "Method", "PerlinDefects", "color_jitter", "cutpaste_patch", "cutpaste_scar",
           "generate_pairs"]
