"""KITTI road metrics (devkit ``evaluateRoad.py`` / ``helper.py``, docs/protocol.md §5.1): MaxF, AP, PRE/REC/FPR/FNR.

The devkit thresholds the road probability at ``t_k = k/255`` (k = 0 … 255; road iff ``p >= t_k``), counts FN(k) and
FP(k) over the valid pixels of every image of a category, and derives from the pooled counts:

* ``recall = TP/P``, ``precision = TP/(TP + FP + 1e-10)``; thresholds where both are 0 are dropped (a tail of
  high thresholds, so indices of the rest do not move);
* ``MaxF = max_k 2·precision·recall / (precision + recall + 1e-10)``, first maximum = the working point;
* ``AP`` = Pascal-VOC 11-point interpolated precision over recall levels ``np.arange(0, 1.1, 0.1)``;
* at the working point ``PRE = TP/(TP+FP)``, ``REC = TP/P``, ``FPR = FP/N``, ``FNR = FN/P``.

Instead of one histogram per threshold we store, per image, one ``bincount`` of the *level* of each pixel — the
number of thresholds it reaches — for road and non-road pixels; all 256 FN/FP values are cumulative sums of the two
histograms. Accumulators add up, which gives the pooled ``URBAN`` row.

One deliberate difference: the devkit casts the working-point counts to float32 before dividing; we divide in float64
(the two agree to ~1e-7, far below the reported two decimals of a percentage).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

#: The devkit's 256 thresholds, ``np.array(range(0, 256)) / 255.0``.
THRESHOLDS: np.ndarray = np.arange(256) / 255.0
# The devkit's recall levels, floating-point quirks included (0.30000000000000004, 0.6000000000000001, …).
_RECALL_LEVELS = np.arange(0, 1.1, 0.1)
_N_LEVELS = THRESHOLDS.size + 1  # a pixel reaches 0 … 256 thresholds


class RoadAccumulator:
    """Pooled KITTI road counts over images; :meth:`compute` gives the devkit's metrics.

    Example:
        >>> acc = RoadAccumulator()
        >>> acc.update(np.array([[0.9, 0.2], [0.7, 0.1]]), np.array([[1, 0], [1, 0]]), np.ones((2, 2), bool))
        >>> m = acc.compute()
        >>> round(m["maxf"], 6), m["pre"], m["rec"], m["fpr"]
        (1.0, 1.0, 1.0, 0.0)
    """

    def __init__(self) -> None:
        # level_hist[j] = pixels reaching exactly j thresholds (p in [t_{j-1}, t_j)), split by ground truth
        self.road_hist = np.zeros(_N_LEVELS, np.int64)
        self.other_hist = np.zeros(_N_LEVELS, np.int64)
        self.n_images = 0

    def update(self, prob: npt.ArrayLike, road: npt.ArrayLike, valid: npt.ArrayLike | None = None) -> None:
        """Add one image.

        Args:
            prob: road probability map; float in [0, 1], or uint8 0 … 255 read as ``value/255`` like the devkit reads
                a submission PNG (pass the uint8 map to reproduce that quantisation exactly).
            road: ground truth, non-zero = road (the B plane of a KITTI gt image).
            valid: evaluation area, non-zero = counted (the R plane); default every pixel.
        """
        prob = np.asarray(prob)
        road = np.asarray(road) != 0
        valid = np.ones(prob.shape, bool) if valid is None else np.asarray(valid) != 0
        if not (prob.shape == road.shape == valid.shape):
            raise ValueError(f"prob {prob.shape}, road {road.shape} and valid {valid.shape} must have the same shape")
        p, r = prob[valid], road[valid]
        if p.dtype == np.uint8:
            # j/255 >= k/255  <=>  j >= k (correctly rounded division is monotone), so a value j reaches j + 1
            levels = p.astype(np.intp) + 1
        elif np.issubdtype(p.dtype, np.floating):
            if np.isnan(p).any():
                raise ValueError("road probability map contains NaN")
            # number of thresholds <= p, compared in float64 exactly as the devkit's histogram edges
            levels = np.searchsorted(THRESHOLDS, p, side="right")
        else:
            raise ValueError(f"road probability map must be float in [0, 1] or uint8, got dtype {p.dtype}")
        self.road_hist += np.bincount(levels[r], minlength=_N_LEVELS)
        self.other_hist += np.bincount(levels[~r], minlength=_N_LEVELS)
        self.n_images += 1

    def merge(self, other: RoadAccumulator) -> RoadAccumulator:
        """Add ``other``'s counts to this accumulator (in place) and return it; pools categories into ``URBAN``."""
        self.road_hist += other.road_hist
        self.other_hist += other.other_hist
        self.n_images += other.n_images
        return self

    def counts(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``(FN, FP, P, N)`` at the 256 thresholds, as the devkit's ``evalExp`` pooled over the images."""
        n_pos, n_neg = int(self.road_hist.sum()), int(self.other_hist.sum())
        # threshold k predicts road iff the pixel reaches more than k thresholds (level > k)
        fn = np.cumsum(self.road_hist)[: THRESHOLDS.size]
        fp = n_neg - np.cumsum(self.other_hist)[: THRESHOLDS.size]
        return fn, fp, n_pos, n_neg

    def compute(self) -> dict[str, Any]:
        """MaxF, AP, and PRE/REC/FPR/FNR at the MaxF working point, as fractions.

        Returns:
            ``maxf, ap, pre, rec, fpr, fnr, threshold, tp, fp, fn, tn, n_images, n_road, n_non_road``. With no road
            pixel every ratio is ``None`` (recall is undefined); with no non-road pixel ``fpr`` is ``None``.
        """
        fn, fp, n_pos, n_neg = self.counts()
        result: dict[str, Any] = dict.fromkeys(("maxf", "ap", "pre", "rec", "fpr", "fnr", "threshold"))
        result.update(tp=None, fp=None, fn=None, tn=None, n_images=self.n_images, n_road=n_pos, n_non_road=n_neg)
        if n_pos == 0:
            return result
        tp, tn = n_pos - fn, n_neg - fp
        recall = tp / float(n_pos)
        precision = tp / (tp + fp + 1e-10)
        # TP falls with k, so the dropped (0, 0) points are a tail and index k keeps its meaning below
        keep = ~((recall == 0) & (precision == 0))
        recall, precision = recall[keep], precision[keep]

        ap = 0.0
        for level in _RECALL_LEVELS:
            ap += float(precision[recall >= level].max())  # recall 1 is reached at k = 0, never empty
        ap /= _RECALL_LEVELS.size

        f = 2.0 * (precision * recall) / (precision + recall + 1e-10)
        k = int(f.argmax())
        wp_tp, wp_fp, wp_fn, wp_tn = (int(v[k]) for v in (tp, fp, fn, tn))
        result.update(
            maxf=float(f[k]),
            ap=ap,
            pre=wp_tp / (wp_tp + wp_fp),  # > 0: the working point has F > 0, hence TP > 0
            rec=wp_tp / n_pos,
            fpr=wp_fp / n_neg if n_neg else None,
            fnr=wp_fn / n_pos,
            threshold=float(THRESHOLDS[k]),
            tp=wp_tp,
            fp=wp_fp,
            fn=wp_fn,
            tn=wp_tn,
        )
        return result
