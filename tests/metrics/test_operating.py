"""Metrics at a fixed threshold and thresholds at a target FPR / recall, against scikit-learn, on data with ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_curve

from anoseg.metrics.operating import (
    confusion_at,
    mean_image_iou,
    metrics_at,
    threshold_at_fpr,
    threshold_at_recall,
)


def tied_data(seed: int, n: int = 300, levels: int = 12):
    """Scores on a coarse grid (many ties, positives and negatives sharing scores) and labels (~30 % positive)."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    scores = np.floor((rng.random(n) * 0.7 + 0.3 * labels) * levels) / levels
    return scores.astype(np.float32), labels


def sklearn_roc(scores, labels):
    fpr, tpr, thresholds = roc_curve(labels, scores.astype(np.float64), drop_intermediate=False)
    return fpr, tpr, thresholds


@pytest.mark.parametrize("seed", range(6))
def test_counts_and_rates_equal_sklearn_at_every_observed_threshold(seed):
    scores, labels = tied_data(seed)
    for threshold in [*np.unique(scores).tolist(), 1.5]:
        predicted = scores >= threshold
        tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[False, True]).ravel()
        got = metrics_at(scores, labels, threshold)
        assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (tp, fp, tn, fn)
        precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="binary",
                                                                   zero_division=np.nan)
        for mine, theirs in ((got["precision"], precision), (got["recall"], recall), (got["f1"], f1)):
            if math.isnan(theirs):
                assert mine is None
            else:
                assert mine == pytest.approx(theirs, abs=1e-12)
        assert got["fpr"] == pytest.approx(fp / (fp + tn), abs=1e-12)
        assert got["iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-12)


def test_undefined_rates_are_none():
    got = metrics_at(np.array([0.1, 0.2]), np.array([0, 0]), 0.5)  # nothing flagged, no positive
    assert (got["precision"], got["recall"], got["f1"], got["iou"]) == (None, None, None, None)
    assert got["fpr"] == 0.0
    assert metrics_at(np.array([0.9]), np.array([1]), 0.5)["fpr"] is None


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.1, 0.29, 1 / 3, 0.5, 0.99, 1.0])
def test_threshold_at_fpr_is_the_smallest_sklearn_threshold_within_the_target(seed, target):
    scores, labels = tied_data(seed)
    fpr, _, thresholds = sklearn_roc(scores, labels)
    # roc_curve goes from the highest threshold (first one: flag nothing) down; fpr never decreases on the way
    best = thresholds[np.flatnonzero(fpr <= target)[-1]]
    got = threshold_at_fpr(scores, labels, target)
    if np.isinf(best):  # only "flag nothing" meets the target
        assert got > scores.max() and metrics_at(scores, labels, got)["fp"] == 0
    else:
        assert got == pytest.approx(best, abs=0)
    assert metrics_at(scores, labels, got)["fpr"] <= target
    lower = scores[scores < got]
    if lower.size:  # the next observed score below breaks the target: got is the smallest
        assert metrics_at(scores, labels, lower.max())["fpr"] > target


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.01, 0.1, 0.5, 0.9, 0.95, 0.7, 1.0])
def test_threshold_at_recall_is_the_largest_sklearn_threshold_reaching_the_target(seed, target):
    scores, labels = tied_data(seed)
    _, tpr, thresholds = sklearn_roc(scores, labels)
    best = thresholds[np.flatnonzero(tpr >= target)[0]]
    got = threshold_at_recall(scores, labels, target)
    assert got == pytest.approx(best, abs=0)
    assert metrics_at(scores, labels, got)["recall"] >= target
    higher = scores[scores > got]
    if higher.size:
        assert metrics_at(scores, labels, higher.min())["recall"] < target


def test_ties_at_the_edge_are_all_flagged_or_none():
    # three good samples tie at 0.5: a 1/4 FPR target cannot flag one of them alone
    scores = np.array([0.1, 0.5, 0.5, 0.5, 0.5, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1])
    assert threshold_at_fpr(scores, labels, 0.25) == 0.9
    assert threshold_at_fpr(scores, labels, 0.75) == 0.5
    assert threshold_at_fpr(scores, labels, 1.0) == 0.1
    for dtype in (np.float64, np.float32, np.int64):  # a good sample at the top score: only "flag nothing" meets 0
        top = np.array([0, 3, 3], dtype=dtype)
        got = threshold_at_fpr(top, np.array([1, 0, 1]), 0.0)
        assert got > top.max()
        assert confusion_at(top, np.array([1, 0, 1]), got) == {"tp": 0, "fp": 0, "tn": 1, "fn": 2}
        assert not (top >= got).any()  # also compared in the scores' own dtype, as predict does


def test_undefined_targets_and_bad_values():
    assert threshold_at_fpr(np.array([0.3, 0.4]), np.array([1, 1]), 0.1) is None
    assert threshold_at_recall(np.array([0.3, 0.4]), np.array([0, 0]), 0.9) is None
    with pytest.raises(ValueError, match="target FPR"):
        threshold_at_fpr(np.array([0.3]), np.array([0]), 1.5)
    with pytest.raises(ValueError, match="target recall"):
        threshold_at_recall(np.array([0.3]), np.array([1]), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        threshold_at_fpr(np.array([np.nan, 0.3]), np.array([0, 1]), 0.1)


def test_mean_image_iou_is_the_per_image_jaccard_at_the_threshold():
    rng = np.random.default_rng(3)
    maps = np.floor(rng.random((5, 6, 6)) * 4) / 4  # ties
    masks = rng.random((5, 6, 6)) < 0.3
    masks[2] = False  # an image without defect pixels does not count
    for threshold in (0.25, 0.5, 0.75):
        expected = [np.logical_and(m >= threshold, g).sum() / np.logical_or(m >= threshold, g).sum()
                    for m, g in zip(maps, masks, strict=True) if g.any()]
        assert mean_image_iou(maps, masks, threshold) == pytest.approx(np.mean(expected), abs=1e-12)
    assert mean_image_iou(maps, np.zeros_like(masks), 0.5) is None
