"""Semantic-segmentation metrics for the scene recipes (Cityscapes, CamVid; docs/protocol.md §5.2): mIoU and accuracies.

One confusion matrix is accumulated over every evaluated pixel of the split (not per image). Pixels whose target is
the ignore index — or any value outside ``[0, num_classes)`` — are dropped together with their prediction.
``IoU_c = TP/(TP + FP + FN)``; a class with an empty union (absent from target and prediction) has no IoU and is left
out of the mean (``nanmean``, the SFSegNets convention); mean class accuracy averages the classes present in the
target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


class SceneAccumulator:
    """Confusion matrix over a split (rows = target class, columns = predicted class).

    Example:
        >>> acc = SceneAccumulator(3, class_names=["road", "car", "sky"])
        >>> acc.update(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 255]))
        >>> m = acc.compute()
        >>> m["miou"], m["iou/road"], m["iou/car"], m["iou/sky"], m["pixel_acc"]
        (0.5, 1.0, 0.5, 0.0, 0.6666666666666666)
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = [str(c) for c in range(num_classes)] if class_names is None else list(class_names)
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self.n_images = 0

    def update(self, pred: npt.ArrayLike, target: npt.ArrayLike) -> None:
        """Add one image (or a batch): integer class maps of the same shape."""
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(target.dtype, np.integer)):
            raise ValueError(f"pred and target must be integer class maps, got {pred.dtype} and {target.dtype}")
        c = self.num_classes
        counted = (target >= 0) & (target < c) & (target != self.ignore_index)
        p, t = pred[counted].astype(np.int64), target[counted].astype(np.int64)
        if p.size and (p.min() < 0 or p.max() >= c):
            raise ValueError(f"predicted class ids must lie in [0, {c}), got {p.min()} … {p.max()}")
        self.confusion += np.bincount(t * c + p, minlength=c * c).reshape(c, c)
        self.n_images += 1

    def merge(self, other: SceneAccumulator) -> SceneAccumulator:
        """Add ``other``'s confusion matrix to this one (in place) and return it."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class counts into {self.num_classes} classes")
        self.confusion += other.confusion
        self.n_images += other.n_images
        return self

    def compute(self) -> dict[str, Any]:
        """``miou``, ``pixel_acc``, ``mean_class_acc``, ``n_images`` and ``iou/<class name>`` per class (fractions).

        A class's IoU is ``None`` when its union is empty; a mean is ``None`` when nothing defines it.
        """
        tp = np.diag(self.confusion)
        in_target = self.confusion.sum(axis=1)
        union = in_target + self.confusion.sum(axis=0) - tp
        ious = [float(tp[i] / union[i]) if union[i] else None for i in range(self.num_classes)]
        defined = [v for v in ious if v is not None]
        accs = [tp[i] / in_target[i] for i in range(self.num_classes) if in_target[i]]
        total = int(in_target.sum())
        result: dict[str, Any] = {
            "miou": float(np.mean(defined)) if defined else None,
            "pixel_acc": float(tp.sum() / total) if total else None,
            "mean_class_acc": float(np.mean(accs)) if accs else None,
            "n_images": self.n_images,
        }
        result.update({f"iou/{name}": iou for name, iou in zip(self.class_names, ious, strict=True)})
        return result
