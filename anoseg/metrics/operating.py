"""Metrics at a fixed decision threshold, and thresholds chosen for a target operating point (docs/operating-points.md).

One rule everywhere, the one ``anoseg predict`` applies: a sample (an image, a pixel) is **flagged** when its score
is **>= the threshold**. With P positives (defects) and N negatives (good) and, at threshold t, TP/FP the flagged
positives/negatives, FN = P - TP and TN = N - FP:

* precision = TP / (TP + FP), recall (TPR) = TP / P, FPR = FP / N, F1 = 2·TP / (2·TP + FP + FN),
  IoU (Jaccard of the flagged set and the positive set) = TP / (TP + FP + FN);
  each is ``None`` where its denominator is 0 (scikit-learn's ``zero_division`` case).
* :func:`threshold_at_fpr`: the smallest threshold whose FPR <= target (the most defects caught while at most a
  fraction ``target`` of the good samples is flagged).
* :func:`threshold_at_recall`: the largest threshold whose recall >= target (the fewest false alarms while at least a
  fraction ``target`` of the defects is caught).

Candidate thresholds are the observed scores (between two consecutive distinct scores every threshold flags the same
samples, so the observed score is the representative), plus, for :func:`threshold_at_fpr`, one threshold just above
the largest score (``numpy.nextafter`` in the scores' dtype: flags nothing) when no observed score meets the target.
Ties are exact: all samples of one score are flagged or none. Equal to scikit-learn's ``roc_curve``
(``drop_intermediate=False``), ``precision_recall_fscore_support`` and ``confusion_matrix``
(tests/metrics/test_operating.py). numpy only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt


def _flat(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    labels = labels if labels.dtype == np.bool_ else labels != 0
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same shape")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise ValueError(f"scores must be a real-valued array, got dtype {scores.dtype}")
    scores, labels = scores.ravel(), labels.ravel()
    if scores.size and np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return scores, labels


def _check_target(target: float, name: str, low_open: bool) -> None:
    ok = math.isfinite(target) and (target > 0.0 if low_open else target >= 0.0) and target <= 1.0
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {target}")


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def confusion_at(scores: npt.ArrayLike, labels: npt.ArrayLike, threshold: float) -> dict[str, int]:
    """The confusion counts at ``threshold`` (flagged = score >= threshold), of any-shaped scores and labels.

    Returns ``{"tp", "fp", "tn", "fn"}`` (ints): flagged positives, flagged negatives, passed negatives, passed
    positives. Equal to ``sklearn.metrics.confusion_matrix(labels, scores >= threshold).ravel()`` = (tn, fp, fn, tp).

    Raises:
        ValueError: shapes differ or a score is NaN.

    Example:
        >>> confusion_at(np.array([0.1, 0.4, 0.4, 0.8]), np.array([0, 0, 1, 1]), 0.4)
        {'tp': 2, 'fp': 1, 'tn': 1, 'fn': 0}
    """
    scores, labels = _flat(scores, labels)
    flagged = scores >= threshold
    n_pos = int(np.count_nonzero(labels))
    tp = int(np.count_nonzero(flagged & labels))
    fp = int(np.count_nonzero(flagged)) - tp
    return {"tp": tp, "fp": fp, "tn": labels.size - n_pos - fp, "fn": n_pos - tp}


def rates_from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    """Precision, recall, F1, IoU and FPR from confusion counts (definitions in the module docstring; ``None`` where
    a denominator is 0).

    Example:
        >>> rates_from_counts(tp=2, fp=1, tn=1, fn=0)["f1"]
        0.8
    """
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "iou": _ratio(tp, tp + fp + fn), "fpr": _ratio(fp, fp + tn)}


def metrics_at(scores: npt.ArrayLike, labels: npt.ArrayLike, threshold: float) -> dict[str, Any]:
    """Every number at one fixed threshold: :func:`rates_from_counts` of :func:`confusion_at`, counts included.

    Returns ``{"precision", "recall", "f1", "iou", "fpr", "tp", "fp", "tn", "fn"}``.

    Raises:
        ValueError: shapes differ or a score is NaN.

    Example:
        >>> m = metrics_at(np.array([0.1, 0.4, 0.4, 0.8]), np.array([0, 0, 1, 1]), 0.4)
        >>> m["precision"], m["recall"], m["fpr"]
        (0.6666666666666666, 1.0, 0.5)
    """
    counts = confusion_at(scores, labels, threshold)
    return {**rates_from_counts(**counts), **counts}


def mean_image_iou(maps: npt.ArrayLike, masks: npt.ArrayLike, threshold: float) -> float | None:
    """Mean over the images with a non-empty mask of IoU(map >= threshold, mask): the fixed-threshold counterpart of
    the oracle per-image IoU (``anoseg.metrics.anomaly.best_iou``, which picks each image's best threshold).

    ``maps`` and ``masks``: (N, H, W). ``None`` when no mask has a positive pixel.

    Raises:
        ValueError: shapes differ, arrays are not (N, H, W), or a score is NaN.

    Example:
        >>> maps = np.array([[[0.9, 0.2], [0.6, 0.1]]]); masks = np.array([[[1, 0], [1, 1]]])
        >>> mean_image_iou(maps, masks, 0.5)
        0.6666666666666666
    """
    maps, masks = np.asarray(maps), np.asarray(masks)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be (N, H, W)")
    _flat(maps[:0], masks[:0])
    ious = []
    for score_map, mask in zip(maps, masks, strict=True):
        mask = mask if mask.dtype == np.bool_ else mask != 0
        if not mask.any():
            continue
        if np.issubdtype(score_map.dtype, np.floating) and np.isnan(score_map).any():
            raise ValueError("scores contain NaN")
        flagged = score_map >= threshold
        ious.append(np.count_nonzero(flagged & mask) / np.count_nonzero(flagged | mask))
    return float(np.mean(ious)) if ious else None


def _allowed(count_total: int, target: float, at_least: bool) -> int:
    """The largest k in [0, n] with k / n <= target (``at_least=False``), or the smallest k in [0, n] with
    k / n >= target (``at_least=True``); the comparison in floating point, as scikit-learn's rates are computed."""
    n = count_total
    k = min(n, max(0, math.floor(target * n)))
    if at_least:
        while k > 0 and (k - 1) / n >= target:
            k -= 1
        while k < n and k / n < target:
            k += 1
        return k
    while k < n and (k + 1) / n <= target:
        k += 1
    while k > 0 and k / n > target:
        k -= 1
    return k


def threshold_at_fpr(scores: npt.ArrayLike, labels: npt.ArrayLike, target: float) -> float | None:
    """The smallest threshold whose false-positive rate is at most ``target`` (flagged = score >= threshold).

    With N negatives let k be the most false positives allowed (k / N <= target). A threshold t has FPR <= target
    iff at most k negatives score >= t iff t is above the (k + 1)-th largest negative score e; the answer is the
    smallest observed score > e, or the next value of the scores' dtype above the largest score (flags nothing) when
    no score is above e. When k = N (``target`` = 1) it is the smallest score (flags everything). The same threshold
    as the last one of ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)`` whose ``fpr <=
    target``.

    Args:
        scores: real scores of any shape, higher = more anomalous.
        labels: same shape, non-zero = positive (defect).
        target: the FPR allowed, in [0, 1].

    Returns:
        The threshold (a Python float), or ``None`` when there is no negative (the FPR is undefined).

    Raises:
        ValueError: shapes differ, a score is NaN or ``target`` is outside [0, 1].

    Example:
        >>> threshold_at_fpr(np.array([0.1, 0.3, 0.3, 0.5, 0.9]), np.array([0, 0, 0, 1, 1]), 0.34)
        0.5
    """
    _check_target(target, "target FPR", low_open=False)
    scores, labels = _flat(scores, labels)
    negatives = scores[~labels]
    n_neg = negatives.size
    if n_neg == 0:
        return None
    k = _allowed(n_neg, target, at_least=False)
    if k >= n_neg:
        return scores.min().item()
    edge = np.partition(negatives, n_neg - 1 - k)[n_neg - 1 - k]  # the (k + 1)-th largest negative score
    above = scores[scores > edge]
    if above.size:
        return above.min().item()
    top = scores.max()
    if np.issubdtype(scores.dtype, np.integer):
        return float(top) + 1.0
    # the next value *of the scores' dtype*: numpy compares float32 scores with a Python float in float32, where
    # float64's next value above a float32 score would round back to it
    return np.nextafter(top, np.array(np.inf, dtype=scores.dtype)).item()


def threshold_at_recall(scores: npt.ArrayLike, labels: npt.ArrayLike, target: float) -> float | None:
    """The largest threshold whose recall (TPR) is at least ``target`` (flagged = score >= threshold).

    With P positives let m be the fewest positives to catch (m / P >= target). Recall(t) >= target iff at least m
    positives score >= t iff t <= the m-th largest positive score, which is the answer. The same threshold as the
    first one of ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)`` whose ``tpr >= target``.

    Args:
        scores: real scores of any shape, higher = more anomalous.
        labels: same shape, non-zero = positive (defect).
        target: the recall wanted, in (0, 1].

    Returns:
        The threshold (a Python float), or ``None`` when there is no positive (recall is undefined).

    Raises:
        ValueError: shapes differ, a score is NaN or ``target`` is outside (0, 1].

    Example:
        >>> threshold_at_recall(np.array([0.1, 0.3, 0.3, 0.5, 0.9]), np.array([0, 0, 1, 1, 1]), 0.6)
        0.5
    """
    _check_target(target, "target recall", low_open=True)
    scores, labels = _flat(scores, labels)
    positives = scores[labels]
    n_pos = positives.size
    if n_pos == 0:
        return None
    m = max(1, _allowed(n_pos, target, at_least=True))
    return np.partition(positives, n_pos - m)[n_pos - m].item()  # the m-th largest positive score
