"""Pictures a person looks at: heatmaps and image | ground truth | heatmap | colour bar strips (uint8 RGB arrays).

Heatmaps always use the fixed scale 0 (blue) … 1 (red) of the JET colour map, so red means a high defect probability,
never "the highest value of this image"; every strip ends with a colour bar saying so.
"""

from __future__ import annotations

import functools

import numpy as np

GAP = 10  # pixels between panels, as in the reference visualisation
BAR_WIDTH = 12
OUTLINE_COLOUR = (255, 255, 255)  # white shows on every JET colour


def heatmap(scores: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] (H, W) → JET colours (H, W, 3) uint8 (a view of an (H, W, 4) buffer).

    Indexes matplotlib's 256-entry JET table the way its colormap call does (``floor(256·s)``, 1.0 → the last
    entry, NaN → the first), through a copy of the table packed as one uint32 per colour: one 4-byte gather per
    pixel instead of a float64 RGBA image (predict draws one per image).
    """
    scores = np.asarray(scores)
    index = np.multiply(scores, _JET_SIZE, dtype=np.result_type(scores.dtype, np.float32))  # float32 stays float32
    np.fmax(index, 0, out=index)  # fmax: NaN → 0
    np.minimum(index, _JET_SIZE - 1, out=index)  # 1.0 → the last entry
    packed = np.take(_jet_packed(), index.astype(np.uint8))
    return packed.view(np.uint8).reshape(*scores.shape, 4)[..., :3]


_JET_SIZE = 256


@functools.cache
def _jet_table() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["jet"](np.arange(_JET_SIZE))[:, :3] * 255).astype(np.uint8)


@functools.cache
def _jet_packed() -> np.ndarray:
    """The JET table as (256,) uint32: each colour's R, G, B and a zero byte, in memory order."""
    table = np.zeros((_JET_SIZE, 4), np.uint8)
    table[:, :3] = _jet_table()
    return table.view(np.uint32).ravel()


def blend(image: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend two uint8 RGB images: ``(1 - alpha)·image + alpha·colour``, rounded down.

    In 16-bit integers with ``alpha`` in 1/256 steps: a picture to look at, blended at a fraction of the cost of
    two float32 copies of the image (predict draws one per image).
    """
    weight = np.uint16(round(alpha * 256))
    out = image.astype(np.uint16)
    out *= np.uint16(256) - weight
    out += colour.astype(np.uint16) * weight
    out >>= 8
    return out.astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    """The image with mask pixels tinted."""
    tinted = image.copy()
    tinted[mask > 0] = blend(image[mask > 0][None], np.array(colour, np.uint8)[None, None].repeat(
        int((mask > 0).sum()), 1), 0.5)[0]
    return tinted


def strip(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of equal height side by side with white gaps."""
    height = panels[0].shape[0]
    gap = np.full((height, GAP, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for panel in panels:
        parts += [panel, gap]
    return np.concatenate(parts[:-1], axis=1)


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels (H, W) bool of a binary mask: mask pixels with a 4-neighbour outside it (or the border).

    The same as ``mask & ~scipy.ndimage.binary_erosion(mask, border_value=0)`` (cross-shaped structuring element),
    written with four shifted comparisons.
    """
    mask = np.asarray(mask, bool)
    interior = np.zeros_like(mask)
    interior[1:-1, 1:-1] = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:])
    return mask & ~interior


@functools.lru_cache(maxsize=16)
def colour_bar(height: int, width: int = BAR_WIDTH) -> np.ndarray:
    """A vertical JET colour bar (height, width + labels, 3) uint8 for the fixed scale 1 (top) … 0 (bottom).

    Cached per size (a read-only array: callers copy it into their strips), as predict draws one per image."""
    from PIL import Image, ImageDraw

    values = np.linspace(1.0, 0.0, height)[:, None].repeat(width, axis=1)
    bar = np.full((height, width + 14, 3), 255, np.uint8)
    bar[:, :width] = heatmap(values)
    picture = Image.fromarray(bar)
    draw = ImageDraw.Draw(picture)
    if height >= 24:  # labels only where they fit
        draw.text((width + 3, 0), "1", fill=(0, 0, 0))
        draw.text((width + 3, height - 11), "0", fill=(0, 0, 0))
    bar = np.array(picture)
    bar.flags.writeable = False
    return bar


def overlay_strip(image: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None,
                  outline_mask: np.ndarray | None = None) -> np.ndarray:
    """image | ground truth (if given) | heatmap over the image (fixed 0–1 scale) | colour bar.

    ``outline_mask`` (e.g. predict's binary decision) is drawn as a white outline on the heatmap panel.
    """
    panels = [image]
    if mask is not None:
        panels.append(mask_overlay(image, mask))
    heat = blend(image, heatmap(scores))
    if outline_mask is not None:
        heat[outline(outline_mask)] = OUTLINE_COLOUR
    panels += [heat, colour_bar(image.shape[0])]
    return strip(panels)
