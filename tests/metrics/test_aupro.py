"""Pixel AUPRO against anomalib's AUPRO and a direct float64 transcription of the MVTec AD curve + trapezoid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from anoseg.metrics import METRICS, anomaly_metrics, aupro
from anoseg.metrics import _engine as impl


def curve_aupro(scores: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """MVTec AD's evaluation: PRO/FPR at every distinct threshold (descending), trapezoid up to ``limit``, / limit."""
    masks = masks != 0
    regions = np.zeros(masks.shape, np.int64)
    n_regions = 0
    for i, mask in enumerate(masks):  # 8-connected components per image, numbered across images
        lab, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions[i] = np.where(lab > 0, lab + n_regions, 0)
        n_regions += count
    sizes = np.bincount(regions.ravel())
    flat = regions.ravel()
    pro_step = np.where(flat > 0, 1.0 / sizes[flat], 0.0) / n_regions
    fpr_step = (flat == 0) / np.count_nonzero(flat == 0)
    order = np.argsort(-scores.ravel().astype(np.float64), kind="stable")
    s = scores.ravel()[order]
    fpr, pro = np.cumsum(fpr_step[order]), np.cumsum(pro_step[order])
    last = np.r_[s[1:] != s[:-1], True]  # the curve's points: after every pixel of a threshold is counted
    fpr, pro = np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]
    i = int(np.searchsorted(fpr, limit, "right")) - 1  # last point with FPR <= limit
    x, y = list(fpr[: i + 1]), list(pro[: i + 1])
    if fpr[i] < limit and i + 1 < fpr.size:
        x.append(limit)
        y.append(pro[i] + (pro[i + 1] - pro[i]) * (limit - fpr[i]) / (fpr[i + 1] - fpr[i]))
    return float(np.trapezoid(y, x)) / limit


def anomalib_aupro(scores: np.ndarray, masks: np.ndarray) -> float:
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("anomalib.metrics")
    from types import SimpleNamespace

    metric = metrics.AUPRO(fields=["anomaly_map", "gt_mask"])
    batch = SimpleNamespace(anomaly_map=torch.from_numpy(scores), gt_mask=torch.from_numpy(masks.astype(np.int64)))
    metric.update(batch)
    return float(metric.compute())


def random_maps(seed: int, levels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A few maps with 1-4 blobs each (some touching only diagonally), scores correlated with the masks."""
    rng = np.random.default_rng(seed)
    n, h, w = int(rng.integers(2, 6)), int(rng.integers(8, 28)), int(rng.integers(8, 28))
    masks = ndimage.binary_dilation(rng.random((n, h, w)) < 0.02, iterations=int(rng.integers(1, 3)))
    masks[0] = False  # a normal image
    masks[1, 1, 1] = masks[1, 2, 2] = True  # diagonal neighbours: one region under 8-connectivity
    scores = rng.random((n, h, w)) + masks * rng.uniform(0, 1.2)
    if levels:
        scores = np.round(scores * levels) / levels  # ties within and across regions and background
    return scores.astype(np.float32), masks


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("levels", [0, 4])
def test_aupro_matches_anomalib(seed: int, levels: int) -> None:
    scores, masks = random_maps(seed, levels)
    ours = aupro(scores, masks)
    assert ours == pytest.approx(anomalib_aupro(scores, masks), abs=1e-6)  # anomalib sums in float32
    assert ours == pytest.approx(curve_aupro(scores, masks), abs=1e-12)


@pytest.mark.parametrize("limit", [0.3, 0.05, 0.5, 1.0])
def test_aupro_integration_limits(limit: float) -> None:
    for seed in range(4):
        scores, masks = random_maps(100 + seed, levels=3 if seed % 2 else 0)
        assert aupro(scores, masks, fpr_limit=limit) == pytest.approx(curve_aupro(scores, masks, limit), abs=1e-12)


def test_aupro_fast_and_generic_paths_agree() -> None:
    """float32 >= 0 takes the sorted-keys path; float64 and negative scores the generic one: same value."""
    scores, masks = random_maps(7, levels=5)
    fast = aupro(scores, masks)
    assert aupro(scores.astype(np.float64), masks) == pytest.approx(fast, abs=1e-12)
    assert aupro(scores - np.float32(2), masks) == pytest.approx(fast, abs=1e-12)  # shifted below 0: same ranks


def test_aupro_hand_values_and_undefined() -> None:
    masks = np.zeros((2, 4, 4), bool)
    masks[1, 0, :2] = True
    masks[1, 3, 3] = True  # two regions, sizes 2 and 1
    scores = np.zeros((2, 4, 4), np.float32)
    scores[1, 0, :2] = 0.9
    # region A above every normal pixel (PRO 1/2 at FPR 0); region B tied with the 29 normal pixels, so the curve
    # rises linearly to (1, 1): PRO(0.3) = 0.65, area 0.3 · (0.5 + 0.65) / 2, normalised by 0.3
    assert aupro(scores, masks) == pytest.approx(0.575, abs=1e-15)
    scores[1, 3, 3] = 0.8
    assert aupro(scores, masks) == 1.0
    assert aupro(-scores, masks) == 0.0  # every defect pixel scores lowest... up to FPR 0.3 nothing is found
    assert aupro(scores, np.zeros_like(masks)) is None  # no region
    assert aupro(scores, np.ones_like(masks)) is None  # no normal pixel
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(scores, masks, fpr_limit=0)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro(scores[0], masks[0])
    with pytest.raises(ValueError, match="NaN"):
        aupro(np.where(masks, np.nan, scores).astype(np.float32), masks)


def test_anomaly_metrics_with_aupro() -> None:
    scores, masks = random_maps(3)
    m = anomaly_metrics(scores, masks, aupro=True)
    assert list(m)[: len(METRICS) + 1] == [*METRICS, "pixel_aupro"]
    assert m["pixel_aupro"] == pytest.approx(curve_aupro(scores, masks), abs=1e-12)
    assert "pixel_aupro" not in anomaly_metrics(scores, masks)  # off by default
    normal = anomaly_metrics(scores[:1], masks[:1], aupro=True)
    assert normal["pixel_aupro"] is None and "pixel AUPRO undefined: no anomalous region" in normal["warnings"]


def test_tally_edge_across_chunks() -> None:
    """The negative where the FPR reaches the limit, found from the keys, for chunk sizes that split tie groups."""
    rng = np.random.default_rng(5)
    labels = rng.random(3000) < 0.2
    scores = (np.floor(rng.random(3000) * 7) / 7 + labels * 0.3).astype(np.float32)
    keys = impl._sorted_keys(scores, labels)
    expected = impl._tally_split(scores, labels, 0.3)
    for chunk in (1, 5, 64, 4096):
        assert impl._tally_keys(keys, int(labels.sum()), 0.3, chunk=chunk).edge == expected.edge
