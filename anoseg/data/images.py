"""Read and verify images: any file PIL decodes becomes an (H, W, 3) uint8 RGB array (docs/protocol.md §6 #16–#21).

* grayscale (``L``, ``1``, ``LA``) is replicated to three channels, alpha is dropped, palettes are expanded;
* 16-bit (``I;16*``, ``I``) and float (``F``) images are scaled to 8 bit explicitly (PIL's own conversion clips);
* ``inspect_image`` decodes a file completely so truncated or corrupt files fail here, in the data stage, and not
  silently grey-filled later. Nothing in anoseg sets PIL's global ``LOAD_TRUNCATED_IMAGES``;
* every file is read **upright**: its own EXIF orientation tag (phone cameras, annotation tools) is applied with
  ``PIL.ImageOps.exif_transpose``, for images and masks alike, in prepare, train, eval and predict (one rule,
  docs/protocol.md "EXIF orientation"). Masks are expected to be drawn on the upright view, as every viewer shows it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from anoseg.constants import IMAGE_EXTENSIONS
from anoseg.errors import AnosegError

#: PIL modes with more than 8 bits per sample; they are rescaled, not clipped.
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_EXIF_ORIENTATION = 0x0112


def is_image_file(path: str | Path) -> bool:
    """True for a non-hidden file name with one of ``IMAGE_EXTENSIONS`` (any case).

    Example:
        >>> is_image_file("0836.JPG"), is_image_file(".000.png"), is_image_file("readme.txt")
        (True, False, False)
    """
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class ImageInfo:
    """What the data stage learns from decoding an image file once."""

    mode: str  # PIL mode of the file ("RGB", "L", "RGBA", "I;16", ...): the manifest's ``orig_mode``
    size: tuple[int, int]  # (width, height), PIL order
    format: str  # PIL format name ("PNG", "JPEG", ...)
    digest: str  # hash of the decoded pixels: equal for the same picture stored twice (duplicate check)
    exif_orientation: int  # the file's EXIF orientation tag (1 = upright or no tag); always applied when reading

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("RGBA", "LA", "PA", "RGBa", "La")

    @property
    def high_bit_depth(self) -> bool:
        return self.mode in HIGH_BIT_DEPTH_MODES


@contextmanager
def strict_decoding() -> Iterator[None]:
    """Within this block PIL raises on truncated files even if someone set ``LOAD_TRUNCATED_IMAGES`` globally."""
    # Another library may have set the global flag; verification must still see truncation. Only the (single
    # threaded) data stage uses this; read_image, which the training loader calls from threads, never touches it.
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def open_image(path: str | Path, *, exif_transpose: bool = True, what: str = "image") -> Image.Image:
    """Open and fully decode an image file, upright (``exif_transpose``: its EXIF orientation applied); any failure
    becomes an ``AnosegError`` naming the file (``what`` it is).

    Example:
        >>> open_image("data/demo/mvtec/disk/test/crack/000.png").mode  # doctest: +SKIP
        'RGB'
    """
    try:
        with Image.open(path) as handle:
            handle.load()  # decodes every byte: a truncated file raises here
            image = ImageOps.exif_transpose(handle) if exif_transpose else handle.copy()
            image.format = handle.format
    except FileNotFoundError:
        raise AnosegError(f"{what} not found: {path}") from None
    except UnidentifiedImageError:
        raise AnosegError(f"cannot read {what} {path}: not an image file PIL can decode") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise AnosegError(f"cannot read {what} {path}: {exc}") from None
    return image


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """An (H, W, 3) uint8 array from a PIL image of any mode.

    16-bit images are divided by 65535 (not clipped at 255); float images are taken as [0, 1] when their maximum is at
    most 1, else as 0…255. Example:
        >>> to_rgb_array(Image.new("I;16", (4, 2), 65535))[0, 0]
        array([255, 255, 255], dtype=uint8)
    """
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode in HIGH_BIT_DEPTH_MODES:
        gray = _to_uint8(np.asarray(image), mode)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("L", "LA", "La", "1"):
        gray = np.asarray(image.getchannel(0) if mode != "1" else image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    # RGBA/RGBa/RGBX (alpha dropped), P/PA (palette expanded), CMYK, YCbCr, LAB, HSV
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    values = values.astype(np.float64)
    # "I" is a 32-bit container; in image files it holds 16-bit samples (PNG/TIFF), so 65535 is the range.
    scale = 255.0 / 65535.0
    if mode == "F":
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
    return np.clip(np.nan_to_num(values * scale) + 0.5, 0, 255).astype(np.uint8)


def read_image(path: str | Path, *, exif_transpose: bool = True) -> np.ndarray:
    """Read an image file upright as an (H, W, 3) uint8 RGB array (grayscale replicated, alpha dropped, 16 bit
    scaled).

    Example:
        >>> read_image("data/demo/mvtec/mesh/train/good/000.png").shape  # doctest: +SKIP
        (160, 160, 3)
    """
    return to_rgb_array(open_image(path, exif_transpose=exif_transpose))


def inspect_image(path: str | Path, *, what: str = "image") -> ImageInfo:
    """Decode an image file completely and describe it upright (``size`` and ``digest`` after its EXIF orientation is
    applied); raises ``AnosegError`` naming the file (``what`` it is) if it is missing, truncated or corrupt.

    Example:
        >>> inspect_image("data/demo/mvtec/mesh/train/good/000.png").mode  # doctest: +SKIP
        'L'
    """
    with strict_decoding():
        image = open_image(path, exif_transpose=False, what=what)
    orientation = exif_orientation(image)
    if orientation != 1:
        upright = ImageOps.exif_transpose(image)
        upright.format, image = image.format, upright
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.mode}{image.size}".encode())
    return ImageInfo(
        mode=image.mode,
        size=image.size,
        format=image.format or "",
        digest=digest.hexdigest(),
        exif_orientation=orientation,
    )


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of a decoded (not yet transposed) image: 1…8, 1 when absent or invalid."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block must not make an otherwise readable image unreadable
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1
