"""The counting engine (``anoseg.metrics._engine``) against a short reference written straight from the definitions.

The reference brute-forces every threshold: at each distinct score ``t`` ("positive where score >= t") it counts TP
and FP, builds the curves the definitions name and reads the metric off them, in exact fractions. It is slow and
obviously right; the engine (one sort, counts at the distinct positive scores, optional two threads) must agree to
1e-12 on random small categories with ties, on its three paths: float32 sorted keys, the generic path (float64 or
negative scores) and the large-category two-thread path.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from fractions import Fraction

import numpy as np
import pytest

from anoseg.metrics import _engine, anomaly_metrics, aupro, best_iou, binary_metrics

TOL = 1e-12
LIMIT = Fraction(3, 10)  # AUPRO's FPR limit (MVTec AD)


# ---------------------------------------------------------------------------------------------------------- reference


def ref_binary(scores: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    """AUROC (trapezoid under the ROC points), AP (Σ ΔR·P) and F1-max (max 2PR/(P+R), lowest threshold on ties)."""
    scores, labels = scores.ravel(), labels.ravel().astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    roc = [(Fraction(0), Fraction(0))]
    pr = []  # (recall, precision, threshold), thresholds descending
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        tp, fp = int((predicted & labels).sum()), int((predicted & ~labels).sum())
        roc.append((Fraction(fp, n_neg), Fraction(tp, n_pos)))
        pr.append((Fraction(tp, n_pos), Fraction(tp, tp + fp), t))
    auroc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(roc))
    ap = sum((r - r_prev) * p for (r, p, _), r_prev in zip(pr, [Fraction(0)] + [r for r, _, _ in pr], strict=False))
    f1max, threshold = Fraction(0), None
    for r, p, t in pr:  # descending thresholds: ">=" keeps the lowest threshold among equal maxima
        if p + r and 2 * p * r / (p + r) >= f1max:
            f1max, threshold = 2 * p * r / (p + r), float(t)
    return {"auroc": float(auroc), "ap": float(ap), "f1max": float(f1max), "threshold": threshold}


def ref_iou(scores: np.ndarray, mask: np.ndarray) -> float:
    """Max over thresholds (and "predict nothing", IoU 0) of |pred ∩ mask| / |pred ∪ mask|."""
    return max([0.0] + [float(Fraction(int((p & mask).sum()), int((p | mask).sum())))
                        for p in (scores >= t for t in np.unique(scores))])


def ref_regions(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """8-connected components of a 2-D mask, by flood fill."""
    seen = np.zeros_like(mask, bool)
    regions = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start], stack, region = True, [start], []
        while stack:
            y, x = stack.pop()
            region.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    q = (y + dy, x + dx)
                    if 0 <= q[0] < mask.shape[0] and 0 <= q[1] < mask.shape[1] and mask[q] and not seen[q]:
                        seen[q] = True
                        stack.append(q)
        regions.append(region)
    return regions


def ref_aupro(maps: np.ndarray, masks: np.ndarray) -> float:
    """Area under (FPR, mean per-region overlap) from (0, 0) through every distinct threshold, trapezoids, cut at
    FPR = 0.3 by linear interpolation, divided by 0.3."""
    regions = [maps[i][tuple(np.array(r).T)] for i in range(len(maps)) for r in ref_regions(masks[i])]
    negatives = maps[~masks]
    curve = [(Fraction(0), Fraction(0))]
    for t in np.unique(maps)[::-1]:
        pro = sum(Fraction(int((r >= t).sum()), r.size) for r in regions) / len(regions)
        curve.append((Fraction(int((negatives >= t).sum()), negatives.size), pro))
    area = Fraction(0)
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if x1 >= LIMIT:
            y_limit = y0 + (y1 - y0) * (LIMIT - x0) / (x1 - x0)
            area += (LIMIT - x0) * (y0 + y_limit) / 2
            break
        area += (x1 - x0) * (y0 + y1) / 2
    return float(area / LIMIT)


def ref_category(maps: np.ndarray, masks: np.ndarray) -> dict[str, object]:
    image = ref_binary(maps.max(axis=(1, 2)), masks.any(axis=(1, 2)))
    pixel = ref_binary(maps, masks)
    return {"image_auroc": image["auroc"], "image_ap": image["ap"], "image_f1max": image["f1max"],
            "pixel_auroc": pixel["auroc"], "pixel_ap": pixel["ap"], "pixel_f1max": pixel["f1max"],
            "iou": float(np.mean([ref_iou(s, m) for s, m in zip(maps, masks, strict=True) if m.any()])),
            "pixel_aupro": ref_aupro(maps, masks), "pixel_threshold": pixel["threshold"]}


# --------------------------------------------------------------------------------------------------------------- data


def random_category(seed: int, dtype: type = np.float32, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """2-6 small maps, at least one normal and one defective; defects are random blobs; ties in most seeds."""
    rng = np.random.default_rng(seed)
    n, h, w = int(rng.integers(2, 7)), int(rng.integers(3, 11)), int(rng.integers(3, 11))
    masks = np.zeros((n, h, w), bool)
    for i in range(1, n):
        if i == 1 or rng.random() < 0.6:
            masks[i] = rng.random((h, w)) < rng.uniform(0.05, 0.5)
            masks[i, rng.integers(h), rng.integers(w)] = True
    maps = rng.random((n, h, w)) + masks * rng.uniform(-0.2, 0.8)
    levels = (0, 3, 8, 25)[seed % 4]
    if levels:
        maps = np.floor(maps * levels) / levels  # tie runs inside and across classes
    return (maps + shift).astype(dtype), masks


def assert_engine_matches(maps: np.ndarray, masks: np.ndarray) -> None:
    expected = ref_category(maps, masks)
    got = anomaly_metrics(maps, masks, aupro=True)
    for key, value in expected.items():
        if key == "pixel_threshold":
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, abs=TOL), key
    pixel = binary_metrics(maps, masks)  # the flat entry point: sorted keys without the per-image scan
    assert [pixel["auroc"], pixel["ap"], pixel["f1max"]] == pytest.approx(
        [expected["pixel_auroc"], expected["pixel_ap"], expected["pixel_f1max"]], abs=TOL)
    assert aupro(maps, masks) == pytest.approx(expected["pixel_aupro"], abs=TOL)
    defective = [i for i in range(len(maps)) if masks[i].any()]
    assert np.mean([best_iou(maps[i], masks[i]) for i in defective]) == pytest.approx(expected["iou"], abs=TOL)


# -------------------------------------------------------------------------------------------------------------- tests


def test_reference_is_itself_right_on_a_hand_case() -> None:
    """The reference on binary_metrics' documented example, worked by hand: AUROC 3/4, AP 5/6, F1-max 4/5 at 0.35."""
    ref = ref_binary(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert ref == {"auroc": 0.75, "ap": float(Fraction(5, 6)), "f1max": 0.8, "threshold": 0.35}
    assert ref_iou(np.array([[0.9, 0.2], [0.6, 0.1]]), np.array([[1, 0], [1, 1]], bool)) == 0.75
    assert len(ref_regions(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], bool))) == 2  # diagonal joins


@pytest.mark.parametrize("seeds", [range(0, 60), range(60, 120)])
def test_sorted_key_path_equals_reference(seeds: range) -> None:
    for seed in seeds:
        assert_engine_matches(*random_category(seed))


def test_generic_path_equals_reference() -> None:
    """float64 maps and negative scores do not take the sorted keys: same numbers."""
    for seed in range(30):
        assert_engine_matches(*random_category(seed, dtype=np.float64))
        assert_engine_matches(*random_category(seed, shift=-0.5))


class _SpyPool(concurrent.futures.ThreadPoolExecutor):
    made = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        type(self).made += 1
        super().__init__(*args, **kwargs)


def test_two_thread_path_equals_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the large-category threshold lowered to 1 pixel every category takes the two-thread path (halves of
    the images' keys, the IoUs, the median-split sort and count): the reference's numbers all the same."""
    monkeypatch.setattr(_engine, "_THREAD_MIN", 1)
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", _SpyPool)
    for seed in range(40):
        before = _SpyPool.made
        assert_engine_matches(*random_category(1000 + seed))
        assert _SpyPool.made > before, "the two-thread path did not run"


def test_two_thread_path_at_its_real_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """One category of ``_THREAD_MIN`` pixels (no patched threshold), scores on 12 levels so that the reference's
    per-threshold loop stays short."""
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", _SpyPool)
    rng = np.random.default_rng(7)
    n, side = -(-_engine._THREAD_MIN // 256**2), 256
    masks = np.zeros((n, side, side), bool)
    for i in range(1, n, 3):  # a few rectangles per third image
        for _ in range(int(rng.integers(1, 4))):
            y, x, hh, ww = rng.integers(0, side - 20, 2).tolist() + rng.integers(2, 20, 2).tolist()
            masks[i, y : y + hh, x : x + ww] = True
    maps = (np.floor((rng.random(masks.shape) + masks * 0.4) * 12) / 12).astype(np.float32)
    assert maps.size >= _engine._THREAD_MIN
    before = _SpyPool.made
    assert_engine_matches(maps, masks)
    assert _SpyPool.made > before, "the two-thread path did not run"
