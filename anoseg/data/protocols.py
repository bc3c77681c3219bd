"""The two evaluation protocols, and the only place that says how a resized mask becomes each kind of label.

``clean`` (default): binarise the raw mask (``anoseg.data.masks.binarize``), resize it with
``anoseg.data.masks.resize_mask`` (a target pixel is a defect iff a source defect pixel lies in it: no defect
component disappears), and use that one binary mask everywhere. ``lfd-compat``: LFD's reference code — bilinear resize
of the raw mask's first channel, then truncation (``== 255``) for the training target and IoU, ``!= 0`` for pixel
labels and the image label. Both read every file upright (its EXIF orientation applied). docs/protocol.md
("Mask resizing") states the rule for both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from anoseg.constants import CLEAN, LFD_COMPAT


def resized_mask(path: str | Path | None, size: tuple[int, int], protocol: str, threshold: int | None = None
                 ) -> np.ndarray:
    """The stored form of a mask at ``size = (H, W)``: clean → {0, 1} (``resize_mask``: no defect component is lost);
    lfd-compat → bilinear uint8 0…255 of the raw values. An empty ``path`` (a normal image) gives zeros."""
    from anoseg.data.images import open_image

    height, width = size
    if not path:
        return np.zeros((height, width), np.uint8)
    if protocol == CLEAN:
        from anoseg.data.masks import read_mask, resize_mask

        return resize_mask(read_mask(path, threshold=threshold), (height, width)).astype(np.uint8)
    raw = np.asarray(open_image(path, what="mask"))
    if raw.ndim == 3:  # LFD keeps channel 0
        raw = raw[..., 0]
    raw = np.clip(raw, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(raw).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


def train_target(mask: np.ndarray, protocol: str) -> np.ndarray:
    """Class index per pixel for the loss."""
    return (mask == 255).astype(np.uint8) if protocol == LFD_COMPAT else (mask > 0).astype(np.uint8)


def pixel_labels(mask: np.ndarray, protocol: str) -> np.ndarray:
    """Positive pixels for pixel AUROC / AP / F1-max (both protocols: any non-zero value)."""
    return mask > 0


def iou_mask(mask: np.ndarray, protocol: str) -> np.ndarray:
    """Ground truth for the per-image IoU: truncation in lfd-compat (thin defects vanish), the binary mask otherwise."""
    return mask == 255 if protocol == LFD_COMPAT else mask > 0


def image_label(mask: np.ndarray, protocol: str) -> np.ndarray:
    """Image labels (N,) from masks (N, H, W): anomalous iff any pixel is non-zero."""
    return mask.reshape(len(mask), -1).max(axis=1) > 0
