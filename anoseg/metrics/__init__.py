"""Evaluation metrics, each defined exactly once: anomaly (image/pixel AUROC, AP, F1-max, IoU), road (KITTI), scene.

numpy-only, so importing this package is cheap; scikit-learn and anomalib serve as test oracles only.
"""

from anoseg.metrics.anomaly import METRICS, anomaly_metrics, best_iou, binary_metrics, mean_over_categories, pr_curve
from anoseg.metrics.road import RoadAccumulator
from anoseg.metrics.scene import SceneAccumulator

__all__ = [
    "METRICS",
    "RoadAccumulator",
    "SceneAccumulator",
    "anomaly_metrics",
    "best_iou",
    "binary_metrics",
    "mean_over_categories",
    "pr_curve",
]
