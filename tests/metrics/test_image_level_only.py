"""Anomalies labelled only at image level count for the image metrics and stay out of the pixel metrics and IoU."""

from __future__ import annotations

import numpy as np

from anoseg.metrics.anomaly import anomaly_metrics


def test_image_level_only_anomalies():
    scores = np.zeros((3, 4, 4), np.float32)
    masks = np.zeros((3, 4, 4), bool)
    masks[1, :2, :2] = True
    scores[1, :2, :2] = 0.9  # a perfectly segmented defect
    scores[2] = 0.95  # an image-level-only defect: high everywhere, its pixels have no ground truth
    labels = np.array([False, True, True])
    valid = np.array([True, True, False])
    m = anomaly_metrics(scores, masks, image_labels=labels, pixel_valid=valid)
    assert m["image_auroc"] == 1.0 and m["n_anomalous_images"] == 2
    assert m["pixel_auroc"] == 1.0 and m["pixel_ap"] == 1.0 and m["n_pixels"] == 32 and m["iou"] == 1.0
    assert m["n_iou_images"] == 1 and not any("IoU" in w for w in m["warnings"])
    # counted as all-normal pixels instead, image 2's scores would spoil the pixel metrics
    spoiled = anomaly_metrics(scores, masks, image_labels=labels)
    assert spoiled["pixel_ap"] < 1.0
