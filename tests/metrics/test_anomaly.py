"""Anomaly metrics against scikit-learn / anomalib oracles and a brute-force IoU, with ties and degenerate inputs."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from anoseg.metrics import METRICS, anomaly_metrics, best_iou, binary_metrics, mean_over_categories, pr_curve

TOL = 1e-6


# ------------------------------------------------------------------------------------------------------------- oracles


def sk_f1max(labels: np.ndarray, scores: np.ndarray) -> float:
    """docs/metrics.md: F1 over the precision_recall_curve points, non-finite points dropped."""
    p, r, _ = precision_recall_curve(labels.ravel(), scores.ravel())
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * p * r / (p + r)
    return float(f1[np.isfinite(f1)].max())


def brute_iou(scores: np.ndarray, mask: np.ndarray) -> float:
    """Max IoU over every distinct score used as threshold, plus "predict nothing" (IoU 0)."""
    mask = mask != 0
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        best = max(best, np.count_nonzero(pred & mask) / np.count_nonzero(pred | mask))
    return best


def case(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if name == "random":
        labels = rng.random(2000) < 0.1
        return (rng.random(2000) + 0.8 * labels).astype(np.float32), labels
    if name == "tied":  # five distinct scores shared by both classes
        labels = rng.random(600) < 0.3
        return (rng.integers(0, 5, 600) + labels * rng.integers(0, 2, 600)).astype(np.float32) / 5, labels
    if name == "all_equal":
        return np.full(50, 0.5, np.float32), np.arange(50) < 10
    if name == "perfect":
        labels = np.arange(40) % 3 == 0
        return labels.astype(np.float64) + rng.random(40) * 0.5, labels
    if name == "inverted":
        labels = np.arange(40) % 3 == 0
        return -labels.astype(np.float64) + rng.random(40) * 0.5, labels
    if name == "integers_2d":
        labels = (rng.random((20, 30)) < 0.2).astype(np.uint8)
        return rng.integers(0, 7, (20, 30)) + 2 * labels, labels
    if name == "n2":
        return np.array([0.3, 0.7], np.float32), np.array([0, 1])
    if name == "n2_reversed":
        return np.array([0.3, 0.7], np.float32), np.array([1, 0])
    if name == "n2_tied":
        return np.array([0.5, 0.5], np.float32), np.array([True, False])
    if name == "n3":
        return np.array([0.2, 0.2, 0.9]), np.array([1, 0, 0])
    raise KeyError(name)


CASES = ["random", "tied", "all_equal", "perfect", "inverted", "integers_2d", "n2", "n2_reversed", "n2_tied", "n3"]


# ------------------------------------------------------------------------------------------------------ binary_metrics


@pytest.mark.parametrize("name", CASES)
def test_binary_metrics_match_sklearn(name: str) -> None:
    scores, labels = case(name)
    m = binary_metrics(scores, labels)
    y, s = labels.ravel() != 0, scores.ravel()
    assert m["reason"] is None
    assert m["n"] == y.size and m["n_positive"] == np.count_nonzero(y)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s), abs=TOL)
    assert m["ap"] == pytest.approx(average_precision_score(y, s), abs=TOL)
    assert m["f1max"] == pytest.approx(sk_f1max(y, s), abs=TOL)
    # the threshold reaches F1-max when used as "positive where score >= threshold"
    pred = s >= m["threshold"]
    tp = np.count_nonzero(pred & y)
    assert 2 * tp / (np.count_nonzero(pred) + np.count_nonzero(y)) == pytest.approx(m["f1max"], abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_random_seeds(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(5, 3000))
    labels = rng.random(n) < rng.uniform(0.05, 0.6)
    labels[:2] = [True, False]
    scores = np.round(rng.normal(size=n) + labels * rng.uniform(0, 2), int(rng.integers(0, 3))).astype(np.float32)
    m = binary_metrics(scores, labels)
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=TOL)
    assert m["ap"] == pytest.approx(average_precision_score(labels, scores), abs=TOL)
    assert m["f1max"] == pytest.approx(sk_f1max(labels, scores), abs=TOL)


def test_binary_metrics_hand_values() -> None:
    # all-equal scores: AUROC 1/2, AP = prevalence, F1 = 2p/(1+p) from predicting everything
    m = binary_metrics(np.full(10, 0.3, np.float32), np.arange(10) < 4)
    assert (m["auroc"], m["ap"], m["f1max"]) == pytest.approx((0.5, 0.4, 0.8 / 1.4))
    # two thresholds tie on F1 = 2/3: 0.9 ({a} of {a, b}: TP 1, FP 0) and 0.5 (TP 2, FP 2) -> the lower one wins
    m = binary_metrics(np.array([0.9, 0.5, 0.5, 0.5]), np.array([1, 1, 0, 0]))
    assert m["f1max"] == pytest.approx(2 / 3) and m["threshold"] == 0.5


@pytest.mark.parametrize(
    ("scores", "labels", "reason"),
    [
        (np.array([0.1, 0.9, 0.4]), np.array([0, 0, 0]), "no positive"),
        (np.array([0.1, 0.9, 0.4]), np.array([1, 1, 1]), "no negative"),
        (np.array([0.5]), np.array([1]), "no negative"),
        (np.array([0.5]), np.array([0]), "no positive"),
        (np.array([], np.float32), np.array([], bool), "no samples"),
    ],
)
def test_binary_metrics_single_class_is_undefined(scores: np.ndarray, labels: np.ndarray, reason: str) -> None:
    m = binary_metrics(scores, labels)
    assert m["auroc"] is None and m["ap"] is None and m["f1max"] is None and m["threshold"] is None
    assert reason in m["reason"]
    if scores.size:  # scikit-learn only warns and returns NaN here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert math.isnan(roc_auc_score(labels, scores))


def test_binary_metrics_rejects_nan_and_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics(np.array([np.nan, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(np.zeros(4), np.zeros(5))


def test_binary_metrics_does_not_modify_inputs() -> None:
    scores, labels = case("random")
    before = scores.copy()
    binary_metrics(scores, labels)
    np.testing.assert_array_equal(scores, before)


def test_binary_metrics_match_anomalib() -> None:
    torch = pytest.importorskip("torch")
    am = pytest.importorskip("anomalib.metrics")
    from types import SimpleNamespace

    scores, labels = case("tied", seed=3)
    batch = SimpleNamespace(pred_score=torch.from_numpy(scores), gt_label=torch.from_numpy(labels.astype(np.int64)))
    ours = binary_metrics(scores, labels)
    for cls, key in ((am.AUROC, "auroc"), (am.AUPR, "ap"), (am.F1Max, "f1max")):
        metric = cls(fields=["pred_score", "gt_label"])
        metric.update(batch)
        assert float(metric.compute()) == pytest.approx(ours[key], abs=TOL), key  # anomalib works in float32


# ------------------------------------------------------------------------------------------------------------ pr_curve


@pytest.mark.parametrize("name", ["random", "tied", "all_equal", "n2_tied", "integers_2d"])
def test_pr_curve_matches_sklearn(name: str) -> None:
    scores, labels = case(name)
    p, r, t = pr_curve(scores, labels)
    sp, sr, st = precision_recall_curve(labels.ravel(), scores.ravel())
    np.testing.assert_array_equal(t, st)
    np.testing.assert_allclose(p, sp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r, sr, rtol=0, atol=1e-12)


def test_pr_curve_decimated_points_stay_exact() -> None:
    scores, labels = case("random")
    sp, sr, st = precision_recall_curve(labels, scores)
    p, r, t = pr_curve(scores, labels, max_points=50)
    assert 2 <= t.size <= 50 and t[0] == st[0] and t[-1] == st[-1]
    index = np.searchsorted(st, t)
    np.testing.assert_array_equal(st[index], t)
    np.testing.assert_allclose(p[:-1], sp[index], atol=1e-12)
    np.testing.assert_allclose(r[:-1], sr[index], atol=1e-12)
    assert (p[-1], r[-1]) == (1.0, 0.0)


def test_pr_curve_without_positives_raises() -> None:
    with pytest.raises(ValueError, match="no positive"):
        pr_curve(np.array([0.1, 0.2]), np.array([0, 0]))


# ------------------------------------------------------------------------------------------------------------ best_iou


@pytest.mark.parametrize("seed", range(8))
def test_best_iou_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((12, 12), bool)
    y, x = rng.integers(0, 9, 2)
    mask[y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = True
    scores = rng.random((12, 12)) + mask * rng.uniform(0, 1)
    if seed % 2:  # few distinct values: ties across and within the mask
        scores = np.round(scores * 3) / 3
    assert best_iou(scores.astype(np.float32), mask) == pytest.approx(brute_iou(scores.astype(np.float32), mask))


def test_best_iou_adversarial_maps() -> None:
    rng = np.random.default_rng(7)
    full = np.ones((6, 6), bool)
    assert best_iou(rng.random((6, 6)), full) == 1.0  # no negatives: the lowest threshold predicts everything
    one = np.zeros((6, 6), bool)
    one[2, 3] = True
    top = rng.random((6, 6)) * 0.5
    top[2, 3] = 0.9
    assert best_iou(top, one) == 1.0
    bottom = top.copy()
    bottom[2, 3] = -1.0  # the defect pixel scores lowest: only "everything" catches it
    assert best_iou(bottom, one) == pytest.approx(1 / 36) == pytest.approx(brute_iou(bottom, one))
    flat = np.full((6, 6), 0.4)
    assert best_iou(flat, one) == pytest.approx(1 / 36)  # all tied: predict all or nothing
    two = one.copy()
    two[0, 0] = True
    tied = np.zeros((6, 6))
    tied[2, 3] = tied[0, 0] = tied[5, 5] = 0.7  # a false positive tied with both defect pixels
    assert best_iou(tied, two) == pytest.approx(2 / 3) == pytest.approx(brute_iou(tied, two))


def test_best_iou_empty_mask_is_none() -> None:
    assert best_iou(np.random.default_rng(0).random((4, 4)), np.zeros((4, 4), np.uint8)) is None


# ----------------------------------------------------------------------------------------------------- anomaly_metrics


def make_category(seed: int = 0, n_normal: int = 4, n_anomalous: int = 8, size: int = 16):
    rng = np.random.default_rng(seed)
    n = n_normal + n_anomalous
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n_normal, n):
        y, x = rng.integers(0, size - 4, 2)
        masks[i, y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = 1
    scores = rng.random((n, size, size)) * 0.6 + masks * rng.uniform(0.1, 0.6, (n, 1, 1))
    scores = (np.round(scores * 50) / 50).astype(np.float32)  # ties, like quantised maps
    return scores, masks


def test_anomaly_metrics_match_oracles() -> None:
    scores, masks = make_category()
    m = anomaly_metrics(scores, masks)
    image_scores, image_labels = scores.max(axis=(1, 2)), masks.any(axis=(1, 2))
    assert list(m) == [
        *METRICS,
        "n_images",
        "n_anomalous_images",
        "n_pixels",
        "n_anomalous_pixels",
        "n_iou_images",
        "pixel_threshold",
        "warnings",
    ]  # the metrics.json category entry, in schema order
    assert m["image_auroc"] == pytest.approx(roc_auc_score(image_labels, image_scores), abs=TOL)
    assert m["image_ap"] == pytest.approx(average_precision_score(image_labels, image_scores), abs=TOL)
    assert m["image_f1max"] == pytest.approx(sk_f1max(image_labels, image_scores), abs=TOL)
    assert m["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), scores.ravel()), abs=TOL)
    assert m["pixel_ap"] == pytest.approx(average_precision_score(masks.ravel(), scores.ravel()), abs=TOL)
    assert m["pixel_f1max"] == pytest.approx(sk_f1max(masks, scores), abs=TOL)
    expected_iou = np.mean([brute_iou(scores[i], masks[i]) for i in range(4, 12)])
    assert m["iou"] == pytest.approx(expected_iou, abs=TOL)
    assert (m["n_images"], m["n_anomalous_images"], m["n_iou_images"]) == (12, 8, 8)
    assert (m["n_pixels"], m["n_anomalous_pixels"]) == (scores.size, int(masks.sum()))
    assert isinstance(m["pixel_threshold"], float) and m["warnings"] == []


def test_anomaly_metrics_compat_masks() -> None:
    """lfd-compat: image labels from the folder, IoU on other (eroded) masks; one anomalous image has none left."""
    scores, masks = make_category(seed=1)
    iou_masks = masks.copy()
    iou_masks[5] = 0
    image_labels = masks.any(axis=(1, 2))
    image_labels[4] = True  # already anomalous; and a folder-labelled image whose mask is empty:
    masks_pixel = masks.copy()
    masks_pixel[6] = 0
    iou_masks[6] = 0
    m = anomaly_metrics(scores, masks_pixel, image_labels=image_labels.astype(np.uint8), iou_masks=iou_masks)
    assert m["image_auroc"] == pytest.approx(roc_auc_score(image_labels, scores.max(axis=(1, 2))), abs=TOL)
    assert m["pixel_ap"] == pytest.approx(average_precision_score(masks_pixel.ravel(), scores.ravel()), abs=TOL)
    kept = [i for i in range(12) if iou_masks[i].any()]
    assert m["n_iou_images"] == len(kept) == 6
    assert m["iou"] == pytest.approx(np.mean([brute_iou(scores[i], iou_masks[i]) for i in kept]), abs=TOL)
    assert m["n_anomalous_images"] == 8
    assert any("2 anomalous image(s) have an empty IoU mask" in w for w in m["warnings"])


def test_anomaly_metrics_normal_only_category() -> None:
    scores, masks = make_category(n_normal=5, n_anomalous=0)
    m = anomaly_metrics(scores, masks)
    assert all(m[k] is None for k in METRICS) and m["pixel_threshold"] is None
    assert m["n_anomalous_images"] == 0 and m["n_iou_images"] == 0
    assert m["warnings"] == [
        "image-level AUROC/AP/F1-max undefined: no anomalous test image among 5 test images (only one class)",
        "pixel-level AUROC/AP/F1-max undefined: no anomalous test pixel among 1280 test pixels (only one class)",
        "IoU undefined: no test image has a non-empty IoU mask",
    ]


def test_anomaly_metrics_anomalous_only_category() -> None:
    scores, masks = make_category(n_normal=0, n_anomalous=6)
    m = anomaly_metrics(scores, masks)
    assert m["image_auroc"] is None and m["image_ap"] is None and m["image_f1max"] is None
    assert m["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), scores.ravel()), abs=TOL)
    assert m["iou"] is not None and m["n_iou_images"] == 6
    assert m["warnings"] == [
        "image-level AUROC/AP/F1-max undefined: no normal test image among 6 test images (only one class)"
    ]


def test_anomaly_metrics_empty_and_bad_shapes() -> None:
    m = anomaly_metrics(np.zeros((0, 8, 8), np.float32), np.zeros((0, 8, 8), bool))
    assert m["n_images"] == 0 and all(m[k] is None for k in METRICS)
    with pytest.raises(ValueError, match="gt_masks"):
        anomaly_metrics(np.zeros((2, 8, 8)), np.zeros((2, 8, 7)))
    with pytest.raises(ValueError, match="image_labels"):
        anomaly_metrics(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), image_labels=[1, 0, 1])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        anomaly_metrics(np.zeros((8, 8)), np.zeros((8, 8)))


# ------------------------------------------------------------------------------------------------ mean_over_categories


def test_mean_over_categories() -> None:
    per_category = {
        "bottle": {"image_auroc": 0.9, "iou": 0.5, "n_images": 10},
        "screw": {"image_auroc": None, "iou": 0.7, "n_images": 3},
        "wood": {"image_auroc": 0.8, "iou": float("nan"), "n_images": 1000},
    }
    mean, excluded = mean_over_categories(per_category, ["image_auroc", "iou", "pixel_ap"])
    assert mean["image_auroc"] == pytest.approx(0.85)  # unweighted: n_images plays no part
    assert mean["iou"] == pytest.approx(0.6)
    assert mean["pixel_ap"] is None
    assert excluded == {"image_auroc": ["screw"], "iou": ["wood"], "pixel_ap": ["bottle", "screw", "wood"]}
    mean, excluded = mean_over_categories({"a": {k: 0.25 for k in METRICS}})
    assert list(mean) == list(METRICS) and set(mean.values()) == {0.25} and excluded == {}


def test_metrics_package_imports_no_heavy_library() -> None:
    code = (
        "import sys, anoseg.metrics; "
        "print(sorted(m for m in ('sklearn', 'anomalib', 'torch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------- fast path (sorted keys)


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 17])
def test_sorted_keys_counts_equal_generic_counts(chunk: int) -> None:
    """The one-sort path (float32 >= 0) gives the same counts as sorting positives and negatives apart, also when a
    chunk boundary splits a group of tied positives or the run of negatives tied with them."""
    from anoseg.metrics import _engine as impl

    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 1500))
        labels = rng.random(n) < rng.uniform(0.02, 0.8)
        labels[:2] = [True, False]
        scores = rng.random(n) + labels * rng.uniform(0, 1)
        levels = [0, 1, 2, 5, 40][seed % 5]
        if levels:
            scores = np.floor(scores * levels) / levels  # long tie runs across classes
        scores = scores.astype(np.float32)
        keys = impl._sorted_keys(scores, labels)
        fast = impl._tally_keys(keys, int(labels.sum()), 0.3, chunk=chunk)
        slow = impl._tally_split(scores, labels, 0.3)
        for field in ("values", "n_equal", "tp", "neg_below", "neg_at_or_below"):
            np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field), err_msg=f"{seed} {field}")
        assert fast.edge == slow.edge


def test_binary_metrics_negative_and_signed_zero_scores() -> None:
    """Negative scores (and -0.0, whose sign bit is set) take the generic path: same values as scikit-learn."""
    scores, labels = case("tied", seed=4)
    for shifted in (scores - np.float32(0.5), np.where(scores == 0, np.float32(-0.0), scores)):
        m = binary_metrics(shifted, labels)
        assert m["auroc"] == pytest.approx(roc_auc_score(labels, shifted), abs=TOL)
        assert m["ap"] == pytest.approx(average_precision_score(labels, shifted), abs=TOL)


def test_anomaly_metrics_threaded_iou_and_generic_path_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """IoUs computed in the helper thread (large categories) equal the in-thread ones; float64 maps (generic path)
    give the same metrics as float32 maps (sorted keys)."""
    from anoseg.metrics import _engine as impl

    scores, masks = make_category(seed=2, n_normal=3, n_anomalous=9)
    inline = anomaly_metrics(scores, masks)
    monkeypatch.setattr(impl, "_THREAD_MIN", 1)
    threaded = anomaly_metrics(scores, masks)
    generic = anomaly_metrics(scores.astype(np.float64), masks)
    for key in METRICS:
        assert threaded[key] == inline[key] == pytest.approx(generic[key], abs=1e-12), key


def test_best_iou_poor_maps_grow_the_partition() -> None:
    """Maps whose best IoU is far below 1/4 make the top-k partition grow (up to the full sort): still exact."""
    for seed in range(30):
        rng = np.random.default_rng(300 + seed)
        mask = rng.random((16, 16)) < rng.uniform(0.005, 0.3)
        mask[rng.integers(16), rng.integers(16)] = True
        scores = rng.random((16, 16)) - mask * rng.uniform(0, 1)  # defects score lower: tiny IoUs
        if seed % 2:
            scores = np.round(scores * 6) / 6
        assert best_iou(scores.astype(np.float32), mask) == pytest.approx(brute_iou(scores.astype(np.float32), mask))


@pytest.mark.parametrize("chunk", [3, 64, 1 << 17])
def test_sort_and_count_in_two_threads_equal_one_sort(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Large categories partition the keys at the median, sort the halves and count them in two threads: the counts
    (and the AUPRO edge) equal the generic path's, also when the median score is heavily tied (its keys must not
    be counted in both halves), when one score fills most of the array, and for tiny inputs."""
    from concurrent.futures import ThreadPoolExecutor

    from anoseg.metrics import _engine as impl

    monkeypatch.setattr(impl, "_CHUNK", chunk)
    with ThreadPoolExecutor(2) as pool:
        for seed in range(30):
            rng = np.random.default_rng(700 + seed)
            n = int(rng.integers(2, 2000)) if seed else 2
            labels = rng.random(n) < rng.uniform(0.02, 0.6)
            labels[:2] = [True, False]
            scores = rng.random(n) + labels * rng.uniform(0, 1)
            if seed % 3:
                scores = np.floor(scores * (1 + seed % 7)) / (1 + seed % 7)  # long tie runs across classes
            if seed % 5 == 4:
                scores[rng.random(n) < 0.8] = 0.5  # one score holds the median and most keys
            scores = scores.astype(np.float32)
            keys = np.empty(n, np.uint32)
            assert impl._fill_keys(scores, labels, keys) is not None
            got = impl._sorted_tally(keys, int(labels.sum()), 0.3, pool)
            expected = impl._tally_split(scores, labels, 0.3)
            for field in ("values", "n_equal", "tp", "neg_below", "neg_at_or_below"):
                np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), err_msg=f"{seed} {field}")
            assert got.edge == expected.edge
            assert np.all(np.diff(keys.astype(np.int64)) >= 0)  # sorted in place, as one sort would
