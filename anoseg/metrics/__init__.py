"""Evaluation metrics, each defined exactly once: anomaly (image/pixel AUROC, AP, F1-max, IoU, AUPRO), road (KITTI),
scene. Definitions and sources: docs/metrics.md.

numpy-only at import (AUPRO imports scipy to label regions), so importing this package is cheap; scikit-learn and
anomalib serve as test oracles only.
"""

from anoseg.metrics.anomaly import (
    AUPRO_FPR_LIMIT,
    METRICS,
    anomaly_metrics,
    aupro,
    best_iou,
    binary_metrics,
    mean_over_categories,
    pr_curve,
)
from anoseg.metrics.road import RoadAccumulator
from anoseg.metrics.scene import SceneAccumulator

__all__ = [
    "AUPRO_FPR_LIMIT",
    "METRICS",
    "RoadAccumulator",
    "SceneAccumulator",
    "anomaly_metrics",
    "aupro",
    "best_iou",
    "binary_metrics",
    "mean_over_categories",
    "pr_curve",
]
