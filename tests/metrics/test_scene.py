"""Scene metrics: a hand-made confusion matrix with ignored pixels and an absent class, pooling, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from anoseg.metrics import SceneAccumulator


def test_hand_made_confusion_matrix() -> None:
    # 4 classes; class 3 ("sky") appears in neither target nor counted prediction.
    # The last two pixels are ignored: target 255 (ignore index) and 7 (>= num_classes); the prediction 3 on the
    # second must not make "sky" present.
    target = np.array([0, 0, 0, 1, 1, 2, 2, 2, 255, 7])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 3])
    # counted (target, pred): (0,0) (0,0) (0,1) (1,1) (1,2) (2,2) (2,2) (2,0)
    #   rows = target     pred 0  1  2  3
    #   0 road                 2  1  0  0   row 3, col 3 -> IoU 2 / (3 + 3 - 2) = 1/2, acc 2/3
    #   1 car                  0  1  1  0   row 2, col 2 -> IoU 1 / (2 + 2 - 1) = 1/3, acc 1/2
    #   2 tree                 1  0  2  0   row 3, col 3 -> IoU 2 / (3 + 3 - 2) = 1/2, acc 2/3
    #   3 sky                  0  0  0  0   empty union  -> None, left out of both means
    # mIoU = (1/2 + 1/3 + 1/2) / 3 = 4/9; pixel acc = 5/8; mean class acc = (2/3 + 1/2 + 2/3) / 3 = 11/18
    acc = SceneAccumulator(4, class_names=["road", "car", "tree", "sky"])
    acc.update(pred[:5].astype(np.uint8), target[:5].astype(np.uint8))  # two "images", different int dtypes
    acc.update(pred[5:], target[5:])
    expected = np.array([[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(acc.confusion, expected)
    m = acc.compute()
    assert m["iou/road"] == pytest.approx(1 / 2) and m["iou/tree"] == pytest.approx(1 / 2)
    assert m["iou/car"] == pytest.approx(1 / 3) and m["iou/sky"] is None
    assert m["miou"] == pytest.approx(4 / 9)
    assert m["pixel_acc"] == pytest.approx(5 / 8)
    assert m["mean_class_acc"] == pytest.approx(11 / 18)
    assert m["n_images"] == 2
    assert list(m) == ["miou", "pixel_acc", "mean_class_acc", "n_images", "iou/road", "iou/car", "iou/tree", "iou/sky"]


def test_class_only_predicted_counts_as_zero() -> None:
    # class 1 never in the target but predicted once: its union is not empty -> IoU 0 enters the mean,
    # while mean class accuracy only averages classes present in the target
    acc = SceneAccumulator(2)
    acc.update(np.array([[0, 1], [0, 0]]), np.array([[0, 0], [0, 0]]))
    m = acc.compute()
    assert (m["iou/0"], m["iou/1"]) == (0.75, 0.0)
    assert m["miou"] == pytest.approx(0.375) and m["mean_class_acc"] == 0.75 and m["pixel_acc"] == 0.75


def test_merge_equals_single_pass() -> None:
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 19, (8, 8)) for _ in range(4)]
    targets = [np.where(rng.random((8, 8)) < 0.1, 255, rng.integers(0, 19, (8, 8))) for _ in range(4)]
    single, a, b = SceneAccumulator(19), SceneAccumulator(19), SceneAccumulator(19)
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        single.update(p, t)
        (a if i % 2 else b).update(p, t)
    assert a.merge(b).compute() == single.compute()
    counted = np.concatenate([t.ravel() for t in targets]) != 255
    assert single.confusion.sum() == counted.sum()


def test_nothing_counted_and_bad_inputs() -> None:
    acc = SceneAccumulator(3)
    acc.update(np.zeros((2, 2), int), np.full((2, 2), 255))
    m = acc.compute()
    assert m["miou"] is None and m["pixel_acc"] is None and m["mean_class_acc"] is None and m["n_images"] == 1
    with pytest.raises(ValueError, match="predicted class"):
        acc.update(np.array([3]), np.array([0]))
    with pytest.raises(ValueError, match="shape"):
        acc.update(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="integer"):
        acc.update(np.zeros(3), np.zeros(3, int))
    with pytest.raises(ValueError, match="class names"):
        SceneAccumulator(3, class_names=["a", "b"])
