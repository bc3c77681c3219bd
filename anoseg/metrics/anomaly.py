"""Anomaly-segmentation metrics of the LFD/SeaS protocol (protocol.md §3): the one place each is defined.

Image and pixel level: AUROC (``roc_auc_score``), AP (``average_precision_score``, step-wise) and F1-max (maximum of
``2PR/(P+R)`` over the ``precision_recall_curve`` points, NaN points dropped). Per image: the oracle-threshold IoU.
Everything is exact (equal to scikit-learn to rounding, ties included) and numpy-only.

Why it is fast: every one of these numbers only needs, for each *distinct positive score* ``v``, the counts
``TP(v) = #pos >= v`` and ``FP(v) = #neg >= v`` (and ``#neg == v`` for AUROC's tie term):

* AP = Σ_v (#pos == v) / P · TP(v) / (TP(v) + FP(v)) — recall only moves at positive scores, so thresholds held by
  negatives alone add nothing to the step integral.
* F1 = 2·TP / (TP + FP + P) and IoU = TP / (FP + P): between two consecutive positive scores TP is constant and FP
  only grows as the threshold falls, so the maximum over *all* thresholds is reached at a positive score. Thresholds
  above the top positive give TP = 0, i.e. F1 = 0 or NaN (dropped) and IoU = 0 ("predict nothing").
* AUROC = Mann-Whitney U / (P·N) with ties counted one half — the trapezoidal area under the ROC curve.

So we sort the (few) positives and the negatives separately, in their own dtype (no float64 copy of 80M pixels), and
``searchsorted`` the distinct positive scores into the sorted negatives. Sorting the negatives dominates; there is no
N × thresholds blow-up and the extra memory is about one copy of the scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

#: The seven reported metrics of one category, in the order of the metrics.json schema.
METRICS: tuple[str, ...] = (
    "image_auroc",
    "image_ap",
    "image_f1max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1max",
    "iou",
)


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------


def _as_bool(labels: npt.ArrayLike) -> np.ndarray:
    """Labels/masks as a bool array: non-zero = positive. A bool input is returned without a copy."""
    labels = np.asarray(labels)
    return labels if labels.dtype == np.bool_ else labels != 0


def _split_sorted(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the positives and of the negatives, each sorted ascending, in the dtype of ``scores``."""
    scores = np.asarray(scores)
    labels = _as_bool(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same shape")
    scores, labels = scores.ravel(), labels.ravel()
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise ValueError(f"scores must be a real-valued array, got dtype {scores.dtype}")
    pos = scores[labels]  # boolean indexing copies: both arrays are ours to sort in place
    neg = scores[~labels]
    pos.sort()
    neg.sort()
    # NaN sorts last, so one look at each end finds it without scanning 80M values again
    if (pos.size and np.isnan(pos[-1])) or (neg.size and np.isnan(neg[-1])):
        raise ValueError("scores contain NaN")
    return pos, neg


def _positive_points(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """Counts at each distinct positive score ``v`` (ascending): ``v``, #pos == v, TP(v), #neg < v, #neg <= v."""
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    values = pos[starts]
    n_equal = np.diff(np.r_[starts, pos.size])
    tp = pos.size - starts  # positives >= v
    neg_below = np.searchsorted(neg, values, side="left")
    neg_at_or_below = np.searchsorted(neg, values, side="right")
    return values, n_equal, tp, neg_below, neg_at_or_below


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
    pos, neg = _split_sorted(scores, labels)
    n_pos, n_neg = int(pos.size), int(neg.size)
    result: dict[str, Any] = {
        "auroc": None,
        "ap": None,
        "f1max": None,
        "threshold": None,
        "n": n_pos + n_neg,
        "n_positive": n_pos,
        "reason": _undefined_reason(n_pos, n_neg),
    }
    if result["reason"] is not None:
        return result

    values, n_equal, tp, neg_below, neg_at_or_below = _positive_points(pos, neg)
    fp = n_neg - neg_below
    # U statistic doubled to stay in integers: each positive beats the negatives below it and ties the equal ones
    # (2·below + equal = below + at_or_below). Exact in int64 up to 2·P·N < 9.2e18.
    u2 = int(np.dot(n_equal, neg_below + neg_at_or_below))
    result["auroc"] = u2 / (2.0 * n_pos * n_neg)
    result["ap"] = float(np.dot(n_equal, tp / (tp + fp))) / n_pos
    f1 = 2.0 * tp / (tp + fp + n_pos)
    best = int(np.argmax(f1))  # values ascend, so argmax picks the lowest threshold among equal maxima
    result["f1max"] = float(f1[best])
    result["threshold"] = values[best].item()
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
    pos, neg = _split_sorted(scores, labels)
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

    With P mask pixels, ``IoU(t) = TP(t) / (FP(t) + P)``; evaluating it at the distinct scores of mask pixels is exact
    (see the module docstring). A mask covering the whole image is fine (IoU 1 at the lowest score); an empty mask
    gives ``None`` (the image does not enter the IoU mean).

    Example:
        >>> best_iou(np.array([[0.9, 0.2], [0.6, 0.1]]), np.array([[1, 0], [1, 1]]))
        0.75
    """
    pos, neg = _split_sorted(score_map, gt_mask)
    if pos.size == 0:
        return None
    _, _, tp, neg_below, _ = _positive_points(pos, neg)
    iou = tp / (neg.size - neg_below + pos.size)
    return float(iou.max())


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
) -> dict[str, Any]:
    """The seven metrics of one category plus counts: one ``categories`` entry of metrics.json (+ ``warnings``).

    Image score = max of each map. Pixel metrics pool every pixel of every image (normal images add all-negative
    maps). IoU = mean of :func:`best_iou` over the images whose IoU mask is non-empty. The protocol decides which
    masks define what: by default the pixel labels ``gt_masks`` also give the image labels (any positive pixel) and
    the IoU masks (the ``clean`` protocol); ``lfd-compat`` passes its own ``image_labels`` and ``iou_masks``.

    Args:
        pixel_scores: (N, H, W) anomaly maps (float32 stays float32).
        gt_masks: (N, H, W) pixel labels, non-zero = anomalous.
        image_labels: (N,) image labels, non-zero = anomalous; default ``gt_masks.any((1, 2))``.
        iou_masks: (N, H, W) masks for IoU; default ``gt_masks``.
        pixel_valid: (N,) which images have pixel ground truth (default all). The others (anomalies labelled only
            at image level, e.g. a defect type without masks) count for the image metrics and are left out of the
            pixel metrics and IoU.

    Returns:
        ``image_auroc, image_ap, image_f1max, pixel_auroc, pixel_ap, pixel_f1max, iou`` (fractions, ``None`` when
        undefined), ``n_images, n_anomalous_images, n_pixels, n_anomalous_pixels, n_iou_images, pixel_threshold``
        and ``warnings``: sentences without the category name, for the caller to prefix and collect.

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
    per_image = (n_images, scores.shape[1] * scores.shape[2])  # explicit: reshape(0, -1) cannot infer -1
    pixel_labels = _as_bool(gt_masks)
    _check_maps("gt_masks", pixel_labels, scores.shape)
    if image_labels is None:
        labels = pixel_labels.reshape(per_image).any(axis=1)
    else:
        labels = _as_bool(image_labels).ravel()
        if labels.shape != (n_images,):
            raise ValueError(f"image_labels has {labels.size} entries for {n_images} images")
    iou_labels = pixel_labels if iou_masks is None else _as_bool(iou_masks)
    _check_maps("iou_masks", iou_labels, scores.shape)
    valid = np.ones(n_images, bool) if pixel_valid is None else _as_bool(pixel_valid).ravel()
    if valid.shape != (n_images,):
        raise ValueError(f"pixel_valid has {valid.size} entries for {n_images} images")

    warnings: list[str] = []
    image_scores = scores.reshape(per_image).max(axis=1) if n_images else np.empty(0, scores.dtype)
    image = binary_metrics(image_scores, labels)
    if image["reason"]:
        reason = _undefined_reason(image["n_positive"], image["n"] - image["n_positive"], "test image")
        warnings.append(f"image-level AUROC/AP/F1-max undefined: {reason}")
    pixel = binary_metrics(scores[valid], pixel_labels[valid])
    if pixel["reason"]:
        reason = _undefined_reason(pixel["n_positive"], pixel["n"] - pixel["n_positive"], "test pixel")
        warnings.append(f"pixel-level AUROC/AP/F1-max undefined: {reason}")

    has_iou_mask = iou_labels.reshape(per_image).any(axis=1) & valid
    ious = [best_iou(scores[i], iou_labels[i]) for i in np.flatnonzero(has_iou_mask)]
    left_out = int(np.count_nonzero(labels & ~has_iou_mask & valid))
    if left_out:
        warnings.append(f"{left_out} anomalous image(s) have an empty IoU mask and are left out of the IoU mean")
    if not ious:
        warnings.append("IoU undefined: no test image has a non-empty IoU mask")

    return {
        "image_auroc": image["auroc"],
        "image_ap": image["ap"],
        "image_f1max": image["f1max"],
        "pixel_auroc": pixel["auroc"],
        "pixel_ap": pixel["ap"],
        "pixel_f1max": pixel["f1max"],
        "iou": float(np.mean(ious)) if ious else None,
        "n_images": n_images,
        "n_anomalous_images": int(np.count_nonzero(labels)),
        "n_pixels": int(scores[valid].size),
        "n_anomalous_pixels": pixel["n_positive"],
        "n_iou_images": len(ious),
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
