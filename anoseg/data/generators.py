"""Built-in anomaly generators: defect image/mask pairs made from a category's ``train/good`` images.

These are the classical baselines that the SeaS paper compares generated data against. ``generate_pairs`` writes the
generated-pair layout that ``anoseg prepare`` reads (protocol.md §1.4)::

    <out>/<category>/<defect>/image/NNN.png     RGB, the source image's size (or image_size × image_size)
    <out>/<category>/<defect>/mask/NNN.png      L mode, exactly 0 / 255, same name and size as the image

Methods and their defect folders:

* ``perlin`` → ``perlin``: anomalib's ``PerlinAnomalyGenerator`` (the DRAEM recipe): a thresholded, rotated Perlin
  noise mask, filled with an augmented texture (``textures`` folder, e.g. DTD) or, without one, with augmented Perlin
  noise, blended into the image with a random factor.
* ``cutpaste`` → ``cutpaste_patch`` and ``cutpaste_scar`` (count split between them, patch first): CutPaste
  (Li et al., 2021) with masks, which no library provides. *patch*: a rectangle of 2–15 % of the image area, aspect
  ratio 0.3–3.3, cut from one random place, colour-jittered and pasted at another. *scar*: a thin rectangle (width
  2–16 px, length 10–25 % of the shorter side) cut, jittered, rotated by a random angle and pasted with its rotated
  mask.

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
from pathlib import Path

import numpy as np
from PIL import Image

from anoseg.data.images import is_image_file, read_image
from anoseg.data.layouts import TRAIN_GOOD, open_layout
from anoseg.errors import AnosegError
from anoseg.io import write_with
from anoseg.paths import ALL_CATEGORIES

#: method name → the defect folders it writes, in the order the count is split between them.
METHODS: dict[str, tuple[str, ...]] = {
    "perlin": ("perlin",),
    "cutpaste": ("cutpaste_patch", "cutpaste_scar"),
}
IMAGE_DIR, MASK_DIR = "image", "mask"
#: Draws per pair before giving up on a source image (an empty draw is rare: ~0 for cutpaste, <1 % for perlin).
MAX_ATTEMPTS = 25

PATCH_AREA = (0.02, 0.15)  # fraction of the image area
PATCH_ASPECT = (0.3, 3.3)  # width / height, drawn log-uniformly so that r and 1/r are equally likely
SCAR_WIDTH = (2, 16)  # pixels, inclusive
SCAR_LENGTH = (0.10, 0.25)  # fraction of the shorter image side
JITTER = 0.1  # CutPaste's colour jitter strength (brightness, contrast, saturation, hue)
TEXTURE_EXTENSIONS = (".png", ".jpg", ".jpeg")  # what anomalib's texture reader (torchvision.io) decodes

#: A defect maker: (source RGB uint8 image, pair seed) → (defect image, bool mask of the pixels that may differ).
DefectMaker = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------------------------------------------------
# CutPaste (ours: numpy + PIL, masks exact by construction)


def color_jitter(patch: np.ndarray, rng: np.random.Generator, strength: float = JITTER) -> np.ndarray:
    """Random brightness, contrast, saturation and hue change of an (h, w, 3) uint8 patch (torchvision's order).

    Example:
        >>> color_jitter(np.full((4, 4, 3), 100, np.uint8), np.random.default_rng(0)).shape
        (4, 4, 3)
    """
    if strength <= 0:
        return patch
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, 3)
    hue = rng.uniform(-strength, strength)
    x = patch.astype(np.float32) * brightness
    x = (x - _gray(x).mean()) * contrast + _gray(x).mean()
    gray = _gray(x)[..., None]
    x = (x - gray) * saturation + gray
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    # hue is a rotation of PIL's 8-bit H channel; grey pixels (S = 0) are unaffected
    hsv = np.asarray(Image.fromarray(out).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(hue * 255)) % 256
    return np.asarray(Image.merge("HSV", [Image.fromarray(hsv[..., c]) for c in range(3)]).convert("RGB"))


def _gray(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def cutpaste_patch(image: np.ndarray, rng: np.random.Generator, *, jitter: float = JITTER) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """CutPaste "patch": copy a random rectangle of ``image`` to another random place, with its mask.

    The rectangle covers 2–15 % of the image with aspect ratio 0.3–3.3 and is colour-jittered before pasting.
    Returns ``(new_image, mask)``; ``mask`` (bool, H × W) is the pasted rectangle and every pixel outside it equals
    ``image``. Example:
        >>> img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        >>> out, mask = cutpaste_patch(img, np.random.default_rng(1))
        >>> bool((out[~mask] == img[~mask]).all()), 0.02 <= mask.mean() <= 0.15
        (True, True)
    """
    height, width = image.shape[:2]
    area = rng.uniform(*PATCH_AREA) * height * width
    aspect = np.exp(rng.uniform(np.log(PATCH_ASPECT[0]), np.log(PATCH_ASPECT[1])))
    pw = int(np.clip(round(np.sqrt(area * aspect)), 1, width))
    ph = int(np.clip(round(np.sqrt(area / aspect)), 1, height))
    sy, sx = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
    dy, dx = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
    patch = color_jitter(image[sy:sy + ph, sx:sx + pw], rng, jitter)
    out = image.copy()
    out[dy:dy + ph, dx:dx + pw] = patch
    mask = np.zeros((height, width), bool)
    mask[dy:dy + ph, dx:dx + pw] = True
    return out, mask


def cutpaste_scar(image: np.ndarray, rng: np.random.Generator, *, jitter: float = JITTER) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """CutPaste "scar": a thin rectangle of ``image``, rotated by a random angle and pasted elsewhere, with its mask.

    Width 2–16 px (at most half the length, so it stays thin on small images), length 10–25 % of the shorter side.
    The strip and a mask of it are rotated together with nearest-neighbour sampling, so every pasted pixel is a
    (jittered) source pixel and the mask is exactly the set of pasted pixels; every pixel outside it equals ``image``.
    Example:
        >>> img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        >>> out, mask = cutpaste_scar(img, np.random.default_rng(1))
        >>> bool((out[~mask] == img[~mask]).all()), bool(mask.any())
        (True, True)
    """
    height, width = image.shape[:2]
    length = max(2, round(rng.uniform(*SCAR_LENGTH) * min(height, width)))
    thickness = int(min(rng.integers(SCAR_WIDTH[0], SCAR_WIDTH[1] + 1), max(1, length // 2)))
    angle = float(rng.uniform(0.0, 180.0))
    sy, sx = int(rng.integers(0, height - length + 1)), int(rng.integers(0, width - thickness + 1))
    strip = color_jitter(image[sy:sy + length, sx:sx + thickness], rng, jitter)
    rotated = np.asarray(Image.fromarray(strip).rotate(angle, Image.Resampling.NEAREST, expand=True))
    inside = np.asarray(Image.new("L", (thickness, length), 255).rotate(angle, Image.Resampling.NEAREST,
                                                                         expand=True)) > 0
    bh, bw = inside.shape
    if bh > height or bw > width:  # only on images a few pixels wide; the caller redraws
        return image.copy(), np.zeros((height, width), bool)
    dy, dx = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
    out = image.copy()
    region = out[dy:dy + bh, dx:dx + bw]
    region[inside] = rotated[inside]
    mask = np.zeros((height, width), bool)
    mask[dy:dy + bh, dx:dx + bw] = inside
    return out, mask


def _numpy_maker(fn: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]) -> DefectMaker:
    return lambda image, seed: fn(image, np.random.default_rng(seed))


# ---------------------------------------------------------------------------------------------------------------
# Perlin (anomalib)


class PerlinDefects:
    """anomalib's ``PerlinAnomalyGenerator`` (DRAEM) on uint8 arrays, deterministic per seed.

    anomalib draws everything from torch's global RNG (noise, rotation, the choice of 3 of its 10 augmentations,
    blend factor, texture choice), and its constructor fixes the solarisation threshold, so both are run under a
    forked RNG seeded here, leaving the caller's RNG state untouched. ``probability=1`` (its default 0.5 returns half
    of the images unchanged). Its mask is binary and the image is blended only under it (checked in the tests); the
    output is still composed as ``where(mask, anomalib's image, source)`` so that the contract cannot drift.
    Example:
        >>> maker = PerlinDefects(seed=0)
        >>> out, mask = maker(np.zeros((64, 64, 3), np.uint8), 7)
        >>> out.shape, mask.dtype
        ((64, 64, 3), dtype('bool'))
    """

    def __init__(self, textures: Path | None = None, *, seed: int = 0) -> None:
        import torch  # lazy: torch + anomalib take seconds to import
        from anomalib.data.utils.generators import PerlinAnomalyGenerator

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = PerlinAnomalyGenerator(anomaly_source_path=None, probability=1.0)
        if textures is not None:
            # anomalib would list anomaly_source_path in file-system order and by lower-case suffix only (a DTD copy
            # with .JPG files would look empty): list the textures ourselves, sorted, so that a texture index means
            # the same file everywhere, and only in the formats its reader (torchvision.io.read_image) decodes
            self.generator.anomaly_source_paths = sorted(
                p for p in Path(textures).rglob("*") if p.is_file() and is_image_file(p)
                and p.suffix.lower() in TEXTURE_EXTENSIONS)

    @property
    def n_textures(self) -> int:
        return len(self.generator.anomaly_source_paths)

    def __call__(self, image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            tensor = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div(255.0)
            augmented, mask = self.generator(tensor)
        mask = mask[0].numpy() > 0.5
        augmented = np.rint(augmented.clamp(0, 1).mul(255.0).permute(1, 2, 0).numpy()).astype(np.uint8)
        return np.where(mask[..., None], augmented, image), mask


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
        >>> summary["categories"]["disk"]["written"], summary["categories"]["disk"]["defects"]
        (10, {'cutpaste_patch': 5, 'cutpaste_scar': 5})
    """
    if method not in METHODS:
        raise AnosegError(f"unknown --method {method!r}; choose one of: {', '.join(METHODS)}")
    if count < 1:
        raise AnosegError(f"--count must be at least 1 (got {count})")
    if image_size is not None and image_size < 8:
        raise AnosegError(f"--image-size must be at least 8 pixels (got {image_size})")
    if textures is not None and method != "perlin":
        raise AnosegError(f"--textures is used by the perlin method only (got --method {method})")
    if textures is not None and not Path(textures).is_dir():
        raise AnosegError(f"texture folder not found: {textures}")
    out = Path(out)

    sources = _train_good_sources(layout, Path(data_root), categories)
    for category in sources:  # check every category before writing anything
        _check_output(out / category, overwrite)

    makers = _makers(method, textures, seed)
    counts = _split_count(count, METHODS[method])
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
    if method == "perlin":
        perlin = PerlinDefects(textures, seed=seed)
        if textures is not None and perlin.n_textures == 0:
            raise AnosegError(f"no texture images (.png, .jpg, ...) found in {textures}")
        return {"perlin": perlin}
    return {"cutpaste_patch": _numpy_maker(cutpaste_patch), "cutpaste_scar": _numpy_maker(cutpaste_scar)}


def _split_count(count: int, defects: tuple[str, ...]) -> dict[str, int]:
    """``count`` shared between ``defects`` as evenly as possible, the first ones getting the remainder."""
    base, extra = divmod(count, len(defects))
    return {d: base + (i < extra) for i, d in enumerate(defects)}


def _pair_seed(seed: int, category: str, defect: str, index: int) -> int:
    """A seed of its own for each pair: independent of the count, the category list and the generation order."""
    # crc32, not hash(): str hashes change between Python processes
    entropy = [seed & 0xFFFFFFFF, zlib.crc32(category.encode()), zlib.crc32(defect.encode()), index]
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


__all__ = ["METHODS", "PerlinDefects", "color_jitter", "cutpaste_patch", "cutpaste_scar", "generate_pairs"]
