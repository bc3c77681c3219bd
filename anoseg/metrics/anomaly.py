"""Anomaly-segmentation metrics of the LFD/SeaS protocol (docs/metrics.md): the one place each is defined.

Image and pixel level: AUROC (``roc_auc_score``), AP (``average_precision_score``, step-wise) and F1-max (maximum of
``2PR/(P+R)`` over the ``precision_recall_curve`` points, NaN points dropped). Per image: the oracle-threshold IoU.
Pixel AUPRO (MVTec AD's per-region overlap, integrated up to FPR 0.3) on request. Everything is exact (equal to
scikit-learn / anomalib to rounding, ties included) and numpy-only (scipy labels AUPRO's regions).

This module holds the definitions, their inputs and their outputs. The counting behind them (one sort of the pooled
pixels, label included; why the counts at the distinct positive scores suffice) is :mod:`anoseg.metrics._engine`;
``tests/metrics/test_reference.py`` holds the two equal to a brute-force transcription of the definitions below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from anoseg.constants import METRICS, PIXEL_AUPRO  # METRICS: the seven reported metrics, in metrics.json order
from anoseg.metrics._engine import (
    as_bool,
    best_iou_flat,
    binary_from_tally,
    flat_pair,
    scan_maps,
    split_sorted,
    tally_flat,
)

__all__ = ["AUPRO_FPR_LIMIT", "METRICS", "anomaly_metrics", "aupro", "best_iou", "binary_metrics",
           "mean_over_categories", "pr_curve"]

#: MVTec AD's integration limit for AUPRO (FPR up to 30%).
AUPRO_FPR_LIMIT = 0.3


def _undefined_reason(n_pos: int, n_neg: int, unit: str = "sample") -> str | None:
    """Why AUROC/AP/F1-max are undefined (one class only), or None when both classes are present."""
    if n_pos and n_neg:
        return None
    if not n_pos and not n_neg:
        return f"no {unit}s"
    kind = "anomalous" if unit != "sample" else "positive"
    other = "normal" if unit != "sample" else "negative"
    return f"no {kind if not n_pos else other} {unit} among {n_pos + n_neg} {unit}s (only one class)"


# --------------------------------------------------------------------------------------------------------------------
# binary metrics
# --------------------------------------------------------------------------------------------------------------------


def binary_metrics(scores: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, Any]:
    """AUROC, AP and F1-max of scores against binary labels, exactly as scikit-learn defines them.

    ``auroc`` = ``roc_auc_score``, ``ap`` = ``average_precision_score``, ``f1max`` = max of ``2PR/(P+R)`` over the
    ``precision_recall_curve`` points with NaN points dropped; ``threshold`` is the score reaching ``f1max``
    (predict positive where score >= threshold; the lowest such score if several tie, as anomalib's ``F1Max``).
    With only one class present the three metrics are undefined: they are ``None`` and ``reason`` says why.

    Args:
        scores: real scores of any shape (float32 is kept as float32; never copied to float64).
        labels: same shape; non-zero / True = positive.

    Returns:
        ``{"auroc", "ap", "f1max", "threshold", "n", "n_positive", "reason"}`` with ``reason`` None when defined.

    Raises:
        ValueError: shapes differ or a score is NaN.

    Example:
        >>> m = binary_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        >>> round(m["auroc"], 4), round(m["ap"], 4), round(m["f1max"], 4), float(m["threshold"])
        (0.75, 0.8333, 0.8, 0.35)
    """
    t = tally_flat(*flat_pair(scores, labels))
    result: dict[str, Any] = {
        "auroc": None,
        "ap": None,
        "f1max": None,
        "threshold": None,
        "n": t.n_pos + t.n_neg,
        "n_positive": t.n_pos,
        "reason": _undefined_reason(t.n_pos, t.n_neg),
    }
    if result["reason"] is None:
        result.update(binary_from_tally(t))
    return result


def pr_curve(
    scores: npt.ArrayLike, labels: npt.ArrayLike, max_points: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact precision-recall curve in ``sklearn.metrics.precision_recall_curve`` layout (for plots).

    ``thresholds`` are the distinct scores, ascending; ``precision[i]``/``recall[i]`` hold at ``thresholds[i]``
    ("positive where score >= threshold") and a final point (precision 1, recall 0) without threshold closes the
    curve. With ``max_points`` the thresholds are thinned to at most that many, evenly spaced by index and keeping
    both ends; the points kept are still exact.

    Raises:
        ValueError: no positive label (recall is undefined), shapes differ, or NaN scores.

    Example:
        >>> p, r, t = pr_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        >>> p.round(3).tolist(), r.tolist(), t.tolist()
        ([0.5, 0.667, 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.5, 0.0], [0.1, 0.35, 0.4, 0.8])
    """
    pos, neg = split_sorted(*flat_pair(scores, labels))
    if pos.size == 0:
        raise ValueError("precision-recall curve undefined: no positive label")
    thresholds = np.union1d(pos, neg)  # distinct scores, ascending
    if max_points is not None and thresholds.size > max_points:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        keep = np.unique(np.linspace(0, thresholds.size - 1, max_points).round().astype(np.intp))
        thresholds = thresholds[keep]
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    precision = tp / (tp + fp)  # every threshold is an observed score, so tp + fp >= 1
    recall = tp / pos.size
    return np.r_[precision, 1.0], np.r_[recall, 0.0], thresholds


# --------------------------------------------------------------------------------------------------------------------
# IoU
# --------------------------------------------------------------------------------------------------------------------

def best_iou(score_map: npt.ArrayLike, gt_mask: npt.ArrayLike) -> float | None:
    """Oracle IoU of one image: max over thresholds t of IoU(score >= t, mask), "predict nothing" (IoU 0) included.

    LFD's ``iou_px`` (protocol: per-image threshold, an upper bound, not a deployable IoU). With P mask pixels,
    ``IoU(t) = TP(t) / (FP(t) + P)``; evaluating it at the distinct scores of mask pixels is exact (see the module
    docstring). A mask covering the whole image is fine (IoU 1 at the lowest score); an empty mask gives ``None``
    (the image does not enter the IoU mean).

    Raises:
        ValueError: shapes differ or a score is NaN.

    Example:
        >>> best_iou(np.array([[0.9, 0.2], [0.6, 0.1]]), np.array([[1, 0], [1, 1]]))
        0.75
    """
    return best_iou_flat(*flat_pair(score_map, gt_mask))


# --------------------------------------------------------------------------------------------------------------------
# AUPRO
# --------------------------------------------------------------------------------------------------------------------

def aupro(
    score_maps: npt.ArrayLike, gt_masks: npt.ArrayLike, fpr_limit: float = AUPRO_FPR_LIMIT
) -> float | None:
    """Pixel AUPRO: normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD's definition).

    Source: Bergmann et al., "The MVTec Anomaly Detection Dataset" (IJCV 2021) §4.2 / "Uninformed Students"
    (CVPR 2020) and their evaluation code; equal to anomalib's ``AUPRO`` (docs/metrics.md). Regions are the
    8-connected components of each image's mask. At a threshold t ("anomalous where score >= t"), PRO(t) = mean over
    all regions of the fraction of the region's pixels at or above t, FPR(t) = fraction of all normal pixels at or
    above t; the curve through the distinct scores (ties as straight segments), from (0, 0), is integrated with the
    trapezoid rule up to FPR = ``fpr_limit`` (linear interpolation at the limit) and divided by ``fpr_limit``.

    Computed without the curve: with the normal pixels sorted descending on the FPR axis (one unit each, a tie group
    spanning its units with PRO rising linearly), the area is Σ over defect pixels p of w_p · g(p) with
    w_p = 1 / (|region(p)| · #regions) and g(p) = L - (#neg > p + #neg == p / 2), L = ``fpr_limit`` · #neg
    (clipped at 0; the tie group straddling L contributes d²/2c).

    Args:
        score_maps: (N, H, W) anomaly maps, higher = more anomalous.
        gt_masks: (N, H, W) ground truth, non-zero = defect.
        fpr_limit: integration limit on the false-positive rate, in (0, 1].

    Returns:
        AUPRO in [0, 1], or ``None`` when undefined (no defect region, or no normal pixel).

    Raises:
        ValueError: shapes differ, maps are not (N, H, W), a score is NaN, or ``fpr_limit`` is outside (0, 1].

    Example:
        >>> maps = np.zeros((1, 4, 4), np.float32); maps[0, 0, :2] = 0.9
        >>> masks = np.zeros((1, 4, 4), bool); masks[0, 0, :2] = True
        >>> round(aupro(maps, masks), 12)
        1.0
    """
    scores = np.asarray(score_maps)
    if scores.ndim != 3:
        raise ValueError(f"score_maps must be (N, H, W), got shape {scores.shape}")
    labels = as_bool(gt_masks)
    _check_maps("gt_masks", labels, scores.shape)
    return scan_maps(scores, labels, labels, iou=False, regions=True, fpr_limit=fpr_limit).aupro


# --------------------------------------------------------------------------------------------------------------------
# one category, many categories
# --------------------------------------------------------------------------------------------------------------------


def _check_maps(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape} (same as pixel_scores)")


def anomaly_metrics(
    pixel_scores: npt.ArrayLike,
    gt_masks: npt.ArrayLike,
    image_labels: npt.ArrayLike | None = None,
    iou_masks: npt.ArrayLike | None = None,
    pixel_valid: npt.ArrayLike | None = None,
    aupro: bool = False,
) -> dict[str, Any]:
    """The seven metrics of one category plus counts: one ``categories`` entry of metrics.json (+ ``warnings``).

    Image score = max of each map. Pixel metrics pool every pixel of every image (normal images add all-negative
    maps). IoU = mean of :func:`best_iou` over the images whose IoU mask is non-empty. The protocol decides which
    masks define what: by default the pixel labels ``gt_masks`` also give the image labels (any positive pixel) and
    the IoU masks (the ``clean`` protocol); ``lfd-compat`` passes its own ``image_labels`` and ``iou_masks``.
    The pooled pixels are sorted once for every pixel metric (AUPRO included); see the module docstring.

    Args:
        pixel_scores: (N, H, W) anomaly maps (float32 stays float32).
        gt_masks: (N, H, W) pixel labels, non-zero = anomalous.
        image_labels: (N,) image labels, non-zero = anomalous; default ``gt_masks.any((1, 2))``.
        iou_masks: (N, H, W) masks for IoU; default ``gt_masks``.
        pixel_valid: (N,) which images have pixel ground truth (default all). The others (anomalies labelled only
            at image level, e.g. a defect type without masks) count for the image metrics and are left out of the
            pixel metrics, IoU and AUPRO.
        aupro: also compute ``pixel_aupro`` (:func:`aupro` of ``pixel_scores`` against ``gt_masks``, FPR <= 0.3).

    Returns:
        ``image_auroc, image_ap, image_f1max, pixel_auroc, pixel_ap, pixel_f1max, iou`` (fractions, ``None`` when
        undefined), ``pixel_aupro`` when asked, then ``n_images, n_anomalous_images, n_pixels, n_anomalous_pixels,
        n_iou_images, pixel_threshold`` and ``warnings``: sentences without the category name, for the caller to
        prefix and collect.

    Raises:
        ValueError: shapes differ, maps are not (N, H, W), or a score is NaN.

    Example:
        >>> scores = np.zeros((2, 4, 4), np.float32); scores[1, :2, :2] = 0.9
        >>> masks = np.zeros((2, 4, 4), bool); masks[1, :2, :2] = True
        >>> m = anomaly_metrics(scores, masks)
        >>> m["image_auroc"], m["pixel_ap"], m["iou"], m["n_iou_images"]
        (1.0, 1.0, 1.0, 1)
    """
    scores = np.asarray(pixel_scores)
    if scores.ndim != 3:
        raise ValueError(f"pixel_scores must be (N, H, W), got shape {scores.shape}")
    n_images = scores.shape[0]
    per_image = (n_images, scores.shape[1] * scores.shape[2])
    pixel_labels = as_bool(gt_masks)
    _check_maps("gt_masks", pixel_labels, scores.shape)
    if image_labels is None:
        labels = pixel_labels.reshape(per_image).any(axis=1)
    else:
        labels = as_bool(image_labels).ravel()
        if labels.shape != (n_images,):
            raise ValueError(f"image_labels has {labels.size} entries for {n_images} images")
    iou_labels = pixel_labels if iou_masks is None else as_bool(iou_masks)
    _check_maps("iou_masks", iou_labels, scores.shape)

    valid = np.ones(n_images, bool) if pixel_valid is None else as_bool(pixel_valid).ravel()
    if valid.shape != (n_images,):
        raise ValueError(f"pixel_valid has {valid.size} entries for {n_images} images")

    if valid.all():
        scan = scan_maps(scores, pixel_labels, iou_labels, iou=True, regions=aupro, fpr_limit=AUPRO_FPR_LIMIT)
        image_scores = scan.image_scores
    else:  # copies of the images with pixel ground truth (rare: datasets with image-level-only defects)
        scan = scan_maps(scores[valid], pixel_labels[valid], iou_labels[valid], iou=True, regions=aupro,
                         fpr_limit=AUPRO_FPR_LIMIT)
        image_scores = scores.reshape(per_image).max(axis=1)
    warnings: list[str] = []
    image = binary_metrics(image_scores, labels)
    if image["reason"]:
        reason = _undefined_reason(image["n_positive"], image["n"] - image["n_positive"], "test image")
        warnings.append(f"image-level AUROC/AP/F1-max undefined: {reason}")
    t = scan.tally
    pixel: dict[str, Any] = {"auroc": None, "ap": None, "f1max": None, "threshold": None}
    reason = _undefined_reason(t.n_pos, t.n_neg, "test pixel")
    if reason:
        warnings.append(f"pixel-level AUROC/AP/F1-max undefined: {reason}")
    else:
        pixel.update(binary_from_tally(t))

    has_iou_mask = iou_labels.reshape(per_image).any(axis=1) & valid
    left_out = int(np.count_nonzero(labels & ~has_iou_mask & valid))
    if left_out:
        warnings.append(f"{left_out} anomalous image(s) have an empty IoU mask and are left out of the IoU mean")
    if not scan.ious:
        warnings.append("IoU undefined: no test image has a non-empty IoU mask")
    if aupro and scan.aupro is None:
        warnings.append("pixel AUPRO undefined: " + ("no normal test pixel" if t.n_pos and not t.n_neg
                                                      else "no anomalous region"))

    result: dict[str, Any] = {
        "image_auroc": image["auroc"],
        "image_ap": image["ap"],
        "image_f1max": image["f1max"],
        "pixel_auroc": pixel["auroc"],
        "pixel_ap": pixel["ap"],
        "pixel_f1max": pixel["f1max"],
        "iou": float(np.mean(scan.ious)) if scan.ious else None,
    }
    if aupro:
        result[PIXEL_AUPRO] = scan.aupro
    return {
        **result,
        "n_images": n_images,
        "n_anomalous_images": int(np.count_nonzero(labels)),
        "n_pixels": int(np.count_nonzero(valid)) * per_image[1],
        "n_anomalous_pixels": t.n_pos,
        "n_iou_images": len(scan.ious),
        "pixel_threshold": pixel["threshold"],
        "warnings": warnings,
    }


def _defined(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def mean_over_categories(
    per_category: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] = METRICS
) -> tuple[dict[str, float | None], dict[str, list[str]]]:
    """Unweighted mean of each metric over the categories where it is defined (not None/NaN).

    Returns ``(mean, excluded)``: ``mean[m]`` is None when no category defines ``m``; ``excluded`` maps a metric to the
    categories left out of its mean (in the given order), and lists only metrics with at least one exclusion.

    Example:
        >>> mean, excluded = mean_over_categories({"a": {"iou": 0.5}, "b": {"iou": None}, "c": {"iou": 0.7}}, ["iou"])
        >>> round(mean["iou"], 6), excluded
        (0.6, {'iou': ['b']})
    """
    mean: dict[str, float | None] = {}
    excluded: dict[str, list[str]] = {}
    for metric in metrics:
        values = [float(entry[metric]) for entry in per_category.values() if _defined(entry.get(metric))]
        missing = [name for name, entry in per_category.items() if not _defined(entry.get(metric))]
        mean[metric] = math.fsum(values) / len(values) if values else None
        if missing:
            excluded[metric] = missing
    return mean, excluded
