"""CutPaste defects with masks (Li et al., "CutPaste: Self-Supervised Learning for Anomaly Detection and
Localization", CVPR 2021), which no library provides: numpy + PIL, masks exact by construction.

*patch*: a rectangle of 2–15 % of the image area, aspect ratio 0.3–3.3, cut from one random place, colour-jittered and
pasted at another. *scar*: a thin rectangle (width 2–16 px, length 10–25 % of the shorter side) cut, jittered, rotated
by a random angle and pasted with its rotated mask. In both, every pixel outside the mask equals the source.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PATCH_AREA = (0.02, 0.15)  # fraction of the image area
PATCH_ASPECT = (0.3, 3.3)  # width / height, drawn log-uniformly so that r and 1/r are equally likely
SCAR_WIDTH = (2, 16)  # pixels, inclusive
SCAR_LENGTH = (0.10, 0.25)  # fraction of the shorter image side
JITTER = 0.1  # CutPaste's colour jitter strength (brightness, contrast, saturation, hue)


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
        >>> bool((out[~mask] == img[~mask]).all()), bool(0.02 <= mask.mean() <= 0.15)
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
