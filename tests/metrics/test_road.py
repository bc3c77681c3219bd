"""KITTI road metrics: a hand-computed toy, the devkit's own histogram formulation, quantisation paths and pooling."""

from __future__ import annotations

import numpy as np
import pytest

from anoseg.metrics import RoadAccumulator


def toy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ten valid pixels whose scores take three values, so the 256 thresholds collapse to three operating points.

    valid road     p: 0.8 0.8 0.4 0.0          (P = 4)
    valid non-road p: 0.8 0.4 0.4 0.0 0.0 0.0  (N = 6)
    two invalid pixels (p = 1.0 road, p = 1.0 non-road) that must not count.
    """
    prob = np.array([[0.8, 0.8, 0.4, 0.0, 1.0, 1.0], [0.8, 0.4, 0.4, 0.0, 0.0, 0.0]])
    road = np.array([[1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]], bool)
    valid = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    return prob, road, valid


def test_toy_by_hand() -> None:
    # t = 0 (k = 0):         everything is road:  TP 4, FP 6 -> R 1,   P 0.4, F = 2·0.4/1.4 = 4/7
    # 0 < t <= 0.4 (k 1-102): p in {0.4, 0.8}:     TP 3, FP 3 -> R 0.75, P 0.5, F = 0.75/1.25 = 0.6   <- MaxF, k = 1
    # 0.4 < t <= 0.8 (k -204): p = 0.8:            TP 2, FP 1 -> R 0.5,  P 2/3, F = (2/3)/(7/6) = 4/7
    # t > 0.8:               nothing:              TP 0, FP 0 -> (R, P) = (0, 0), dropped
    # AP: recall levels 0, .1, .2, .3+, .4, .5 -> max P over all points = 2/3 (6 levels);
    #     .6+, .7+ -> points with R >= 0.75: max(0.5, 0.4) = 0.5 (2); .8, .9, 1.0 -> R = 1 only: 0.4 (3)
    #     AP = (6·2/3 + 2·0.5 + 3·0.4) / 11 = 6.2/11
    # working point k = 1: PRE 0.5, REC 0.75, FPR 3/6, FNR 1/4, threshold 1/255
    acc = RoadAccumulator()
    acc.update(*toy())
    m = acc.compute()
    assert m["maxf"] == pytest.approx(0.6, abs=1e-9)
    assert m["ap"] == pytest.approx(6.2 / 11, abs=1e-9)
    assert (m["pre"], m["rec"], m["fpr"], m["fnr"]) == (0.5, 0.75, 0.5, 0.25)
    assert m["threshold"] == 1 / 255
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 3, 1, 3)
    assert (m["n_road"], m["n_non_road"], m["n_images"]) == (4, 6, 1)


def test_uint8_map_is_read_as_value_over_255() -> None:
    prob, road, valid = toy()
    float_acc, uint8_acc = RoadAccumulator(), RoadAccumulator()
    float_acc.update(prob.astype(np.float32), road, valid)
    uint8_acc.update(np.round(prob * 255).astype(np.uint8), road.astype(np.uint8) * 255, valid.astype(np.uint8))
    assert float_acc.compute() == uint8_acc.compute()


def devkit_reference(images: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The devkit's formulation (evalExp + pxEval_maximizeFMeasure), from docs/protocol.md §5.1, as an oracle."""
    thresh = np.array(range(256)) / 255.0
    edges = np.concatenate(([-np.inf], thresh, [np.inf]))
    total_fn, total_fp, total_pos, total_neg = np.zeros(256), np.zeros(256), 0, 0
    for prob, road, valid in images:
        fn_hist = np.histogram(prob[road & valid], bins=edges)[0]
        fp_hist = np.histogram(prob[~road & valid], bins=edges)[0]
        total_fn += np.cumsum(fn_hist)[:256]
        total_fp += np.flipud(np.cumsum(np.flipud(fp_hist)))[1:257]
        total_pos += np.sum(road & valid)
        total_neg += np.sum(~road & valid)
    tp, fp = total_pos - total_fn, total_fp
    recall = tp / float(total_pos)
    precision = tp / (tp + fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    recall, precision = recall[keep], precision[keep]
    ap = sum(max(precision[np.where(recall >= r)]) for r in np.arange(0, 1.1, 0.1)) / 11
    f = 2 * (precision * recall) / (precision + recall + 1e-10)
    k = f.argmax()
    return {
        "maxf": f[k],
        "ap": ap,
        "pre": tp[k] / (tp[k] + fp[k]),
        "rec": tp[k] / total_pos,
        "fpr": fp[k] / total_neg,
        "fnr": total_fn[k] / total_pos,
        "threshold": thresh[k],
    }


def random_images(seed: int, n: int = 3) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        road = rng.random((20, 30)) < 0.4
        valid = rng.random((20, 30)) < 0.8
        prob = np.clip(rng.normal(0.35 + 0.3 * road, 0.25), 0, 1)
        prob[rng.random((20, 30)) < 0.2] = rng.integers(0, 256) / 255  # exactly on a threshold
        images.append((prob, road, valid))
    return images


@pytest.mark.parametrize("seed", range(4))
def test_matches_devkit_histograms(seed: int) -> None:
    images = random_images(seed)
    acc = RoadAccumulator()
    for image in images:
        acc.update(*image)
    m, ref = acc.compute(), devkit_reference(images)
    for key, value in ref.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key


def test_merge_pools_categories() -> None:
    images = random_images(9, n=4)
    um, uu, pooled = RoadAccumulator(), RoadAccumulator(), RoadAccumulator()
    for i, image in enumerate(images):
        (um if i < 2 else uu).update(*image)
        pooled.update(*image)
    urban = RoadAccumulator().merge(um).merge(uu)
    assert urban.compute() == pooled.compute()
    assert urban.n_images == 4 and um.n_images == 2
    assert urban.compute()["maxf"] == pytest.approx(devkit_reference(images)["maxf"], abs=1e-12)


def test_degenerate_inputs() -> None:
    acc = RoadAccumulator()
    acc.update(np.full((3, 3), 0.5), np.zeros((3, 3), bool))  # no road at all
    m = acc.compute()
    assert m["maxf"] is None and m["ap"] is None and m["n_non_road"] == 9 and m["n_images"] == 1
    acc = RoadAccumulator()
    acc.update(np.array([[0.2, 0.9]]), np.array([[1, 1]]))  # no non-road: FPR undefined, the rest is fine
    m = acc.compute()
    # every threshold up to 0.2 keeps recall 1 and precision ~1; the first maximum is k = 0
    assert m["fpr"] is None and (m["rec"], m["pre"], m["threshold"]) == (1.0, 1.0, 0.0)
    assert m["maxf"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN"):
        acc.update(np.array([[np.nan]]), np.array([[1]]))
    with pytest.raises(ValueError, match="shape"):
        acc.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dtype"):
        acc.update(np.zeros((2, 2), np.int32), np.zeros((2, 2)))
