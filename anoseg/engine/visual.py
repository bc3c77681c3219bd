"""Pictures a person looks at: heatmaps and image | ground truth | heatmap strips (uint8 RGB arrays)."""

from __future__ import annotations

import numpy as np

GAP = 10  # pixels between panels, as in the reference visualisation


def heatmap(scores: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] (H, W) → JET colours (H, W, 3) uint8."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(scores, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def blend(image: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend two uint8 RGB images."""
    return (image.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).astype(np.uint8)


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


def overlay_strip(image: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """image | ground truth (if given) | heatmap over the image."""
    panels = [image]
    if mask is not None:
        panels.append(mask_overlay(image, mask))
    panels.append(blend(image, heatmap(scores)))
    return strip(panels)
