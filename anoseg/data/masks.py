"""Masks → one boolean array. The only place in anoseg that binarises a mask (docs/protocol.md §6 #10–#15).

Every encoding seen in the wild is reduced to one channel of values, then thresholded with ``value > threshold``:

==========================  ==========================================================================
``L`` 0/255, 0/1, soft      the values
``1``                       0/255
``P`` (palette)             the palette *indices* (label images); a grayscale palette (index i ↦ (i, i, i))
                            is an intensity image and is thresholded like ``L``
``RGB`` / ``RGBA`` / ``LA``  maximum over the colour channels; alpha only when the colour is one constant
                            value and the alpha channel is not (a transparency-encoded mask)
``I;16`` / ``I`` / ``F``    the raw values, binarised *before* any scaling (``> 0``); an explicit threshold
                            is given on the 8-bit scale and converted (×257 for 16 bit, ÷255 for float ≤ 1)
JPEG (lossy)                as above, but the default threshold is 127: compression noise is not a defect
==========================  ==========================================================================

The default threshold is 0 (any non-zero value is a defect) for lossless files; ``threshold`` overrides it for every
file (e.g. 127 for soft generator masks). Label images (non-gray palettes) are always ``> 0``.

``resize_mask`` is the one rule for bringing a binary mask to the network's size (docs/protocol.md, "Mask resizing"):
a target pixel is a defect pixel iff a defect pixel of the source lies in it, so no defect component disappears.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from anoseg.data.images import exif_orientation, open_image, strict_decoding

#: Default threshold for lossless masks: any non-zero value is a defect.
DEFAULT_THRESHOLD = 0
#: Default threshold for lossy formats (JPEG): compression ringing around edges must not become defect pixels.
LOSSY_THRESHOLD = 127
LOSSY_FORMATS = ("JPEG", "MPO")
_ALPHA_MODES = {"RGBA": 3, "RGBa": 3, "LA": 1, "La": 1, "PA": 1}
_MAX_HISTOGRAM_VALUES = 16


@dataclass(frozen=True)
class MaskInfo:
    """What the data stage learns from decoding a mask file once."""

    mode: str  # PIL mode of the file
    size: tuple[int, int]  # (width, height), PIL order
    format: str  # PIL format name
    lossy: bool  # JPEG (or JPEG-compressed TIFF): default threshold 127
    encoding: str  # how the values were taken: "values", "palette-indices", "max-colour", "alpha"
    threshold: float  # the threshold actually applied, on the file's own value scale
    n_positive: int
    n_pixels: int
    n_values: int  # distinct values of the reduced channel (2 for a clean 0/255 mask)
    histogram: dict[int | float, int] | None  # value → count, only for masks with more than 2 distinct values
    exif_orientation: int = 1  # the file's EXIF orientation tag, applied before binarising (1 = none)


def is_lossy(image: Image.Image) -> bool:
    """True for formats whose decoded values carry compression noise."""
    if image.format in LOSSY_FORMATS:
        return True
    return image.format == "TIFF" and str(image.info.get("compression", "")).lower() in ("jpeg", "tiff_jpeg")


def mask_channel(image: Image.Image) -> tuple[np.ndarray, str]:
    """Reduce a mask image of any mode to one 2-D array of values and say how (see the module table).

    Example:
        >>> values, how = mask_channel(Image.new("RGB", (4, 4), (0, 0, 200)))
        >>> int(values.max()), how
        (200, 'max-colour')
    """
    mode = image.mode
    if mode == "1":
        return np.asarray(image.convert("L")), "values"
    if mode == "P":
        indices = np.asarray(image)
        return indices, "values" if _gray_palette(image, indices) else "palette-indices"
    if mode == "PA":
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return np.asarray(image), "values"
    if mode not in ("RGB", "RGBA", "RGBa", "LA", "La"):
        image, mode = image.convert("RGB"), "RGB"  # CMYK, YCbCr, LAB, HSV, RGBX
    array = np.asarray(image)
    alpha_at = _ALPHA_MODES.get(mode)
    colour = array[..., :alpha_at] if alpha_at is not None else array
    if alpha_at is not None:
        alpha = array[..., alpha_at]
        # A mask drawn as transparency over one flat colour: the colour says nothing, the alpha says everything.
        if colour.min() == colour.max() and alpha.min() != alpha.max():
            return alpha, "alpha"
    return colour.max(axis=2), "max-colour"


def _gray_palette(image: Image.Image, indices: np.ndarray) -> bool:
    palette = image.getpalette() or []
    used = np.unique(indices)
    for i in used.tolist():
        rgb = palette[3 * i : 3 * i + 3]
        if rgb != [i, i, i]:
            return False
    return True


def _scaled_threshold(threshold: int, values: np.ndarray, encoding: str) -> float:
    if encoding == "palette-indices":
        return 0  # label images: every non-background label is a defect, whatever the intensity threshold
    kind, itemsize = values.dtype.kind, values.dtype.itemsize
    if kind == "f":
        return threshold / 255 if values.size and float(np.nanmax(values)) <= 1.0 else threshold
    if itemsize == 2 or (itemsize > 2 and values.size and int(values.max()) > 255):
        return threshold * 257  # 8-bit scale → 16-bit scale (255 ↦ 65535); mode "I" holds 16-bit samples
    return threshold


def binarize(image: Image.Image, threshold: int | None = None) -> tuple[np.ndarray, MaskInfo]:
    """Binarise a decoded mask image; returns the (H, W) bool mask and a description of the file.

    Example:
        >>> mask, info = binarize(Image.new("L", (8, 8), 1))
        >>> bool(mask.all()), info.n_values
        (True, 1)
    """
    values, encoding = mask_channel(image)
    lossy = is_lossy(image)
    if threshold is None:
        threshold = LOSSY_THRESHOLD if lossy else DEFAULT_THRESHOLD
    applied = _scaled_threshold(threshold, values, encoding)
    mask = np.asarray(values > applied)
    distinct, counts = np.unique(values, return_counts=True)
    histogram = None
    if len(distinct) > 2:
        order = np.argsort(counts)[::-1][:_MAX_HISTOGRAM_VALUES]
        histogram = {_plain(distinct[i]): int(counts[i]) for i in sorted(order, key=lambda i: distinct[i])}
    info = MaskInfo(
        mode=image.mode,
        size=image.size,
        format=image.format or "",
        lossy=lossy,
        encoding=encoding,
        threshold=applied,
        n_positive=int(mask.sum()),
        n_pixels=int(mask.size),
        n_values=len(distinct),
        histogram=histogram,
    )
    return mask, info


def _plain(value: np.generic) -> int | float:
    return float(value) if np.issubdtype(type(value), np.floating) else int(value)


def _cell_of_source(n_in: int, n_out: int) -> np.ndarray:
    """For each source index, the target cell its centre falls in: ⌊(i + ½)·n_out / n_in⌋, in exact integers."""
    return ((2 * np.arange(n_in, dtype=np.int64) + 1) * n_out) // (2 * n_in)


def _any_along(mask: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    n_in = mask.shape[axis]
    if n_out == n_in:
        return mask
    if n_out > n_in:  # enlarging: each target pixel takes the source pixel under its centre (nearest neighbour)
        return np.take(mask, _cell_of_source(n_out, n_in), axis=axis)
    # shrinking: every target cell holds at least one source centre (spacing n_out/n_in < 1), so the group starts
    # are strictly increasing and each cell is the OR of its group
    starts = np.searchsorted(_cell_of_source(n_in, n_out), np.arange(n_out))
    return np.logical_or.reduceat(mask, starts, axis=axis)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask so that no defect pixel is lost: "any defect pixel in the source cell".

    Shrinking, target pixel (y, x) is a defect iff some source pixel whose centre falls inside the target cell is one
    (max pooling over the cell; for an integer factor k, over the k×k block). Enlarging is nearest neighbour. So a
    1-px scratch stays a 1-px scratch at any size and every connected defect keeps at least one pixel, at the cost
    of growing thin defects' area fraction (a 1-px line at 1024 px covers a full 1-px line at 256 px).
    ``clean`` uses this for every mask; ``lfd-compat`` reproduces the reference code's bilinear resize instead
    (``anoseg.data.protocols``). The rule and its effect are described in docs/protocol.md ("Mask resizing").

    Args:
        mask: (H, W) array, non-zero = defect.
        size: (height, width) of the result, each ≥ 1.
    Returns:
        (height, width) bool array.
    Raises:
        ValueError: ``mask`` is not 2-D or a size is < 1.

    Example:
        >>> line = np.zeros((256, 256), bool); line[100, :] = True
        >>> resized = resize_mask(line, (64, 64))
        >>> int(resized.sum()), np.flatnonzero(resized.any(axis=1)).tolist()
        (64, [25])
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    binary = mask.astype(bool, copy=False)
    return _any_along(_any_along(binary, height, 0), width, 1)


def read_mask(path: str | Path, threshold: int | None = None, *, exif_transpose: bool = True) -> np.ndarray:
    """Read a mask file of any encoding upright (its EXIF orientation applied) as an (H, W) bool array
    (``value > threshold`` after channel reduction).

    ``threshold`` is on the 8-bit scale; None = 0 for lossless files, 127 for JPEG.

    Example:
        >>> read_mask("data/demo/mvtec/disk/ground_truth/crack/000_mask.png").dtype  # doctest: +SKIP
        dtype('bool')
    """
    return binarize(open_image(path, exif_transpose=exif_transpose, what="mask"), threshold)[0]


def inspect_mask(path: str | Path, threshold: int | None = None) -> tuple[np.ndarray, MaskInfo]:
    """Decode a mask file completely and upright (truncation is an ``AnosegError``) and binarise it; see ``binarize``.

    Example:
        >>> mask, info = inspect_mask("data/demo/generated/seas/disk/crack/mask/000.png")  # doctest: +SKIP
        >>> info.mode, info.n_values  # doctest: +SKIP
        ('L', 2)
    """
    with strict_decoding():
        image = open_image(path, exif_transpose=False, what="mask")
    orientation = exif_orientation(image)
    if orientation == 1:
        return binarize(image, threshold)
    upright = ImageOps.exif_transpose(image)
    upright.format = image.format  # the format decides the default threshold (JPEG: 127)
    mask, info = binarize(upright, threshold)
    return mask, replace(info, exif_orientation=orientation)
