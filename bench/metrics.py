"""Anomaly metrics of one category at the sort floor: ``anomaly_metrics`` vs scikit-learn and vs a bare ``np.sort``.

Builds a realistic test set of (N, H, W) float32 anomaly maps (default 1220 maps of 256² = 80M pixels, half of them
with 1-3 elliptic defects covering ~4% of the image, so ~2% positive pixels; scores correlated with the masks, a
quarter of them quantised to 1/255 steps and a saturated background of exact zeros, so there are many ties). Then,
in the same process on the same arrays, interleaved (A, B, A, B, …):

* ``anoseg``: :func:`anoseg.metrics.anomaly_metrics` — image AUROC/AP/F1-max, pixel AUROC/AP/F1-max and the
  per-image oracle IoU, everything ``anoseg eval`` computes for a category;
* ``np.sort``: a bare ``np.sort`` of the same pixel scores — the floor of any exact sort-based method;
* ``scikit-learn``: the reference definitions (``roc_auc_score``, ``average_precision_score``,
  ``precision_recall_curve`` on the pooled pixels and on the image scores, IoU from ``precision_recall_curve`` per
  image), run ``--ref-runs`` times (slow: ~1–2 min each at 80M pixels).

Prints each one's min and median time, the ratios (speed-up over scikit-learn, anoseg / ``np.sort``), the extra peak
memory of the first call of each with ``tracemalloc`` (numpy reports its buffers to it; the inputs are excluded) as
a ratio to one copy of the scores, and checks that anoseg equals scikit-learn to 1e-6.

    python bench/metrics.py                            # 80M pixels, 5 rounds, scikit-learn once (~3 min)
    python bench/metrics.py --images 60 --ref-runs 1   # smoke run, seconds
    python bench/metrics.py --ref-runs 0               # anoseg vs np.sort only
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from anoseg.metrics import anomaly_metrics

TOLERANCE = 1e-6
COMPARED = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "iou")


def make_maps(n_images: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) float32 scores and bool masks: odd images get 1-3 ellipses (~4% of the image in all)."""
    rng = np.random.default_rng(seed)
    scores = np.empty((n_images, size, size), np.float32)
    masks = np.zeros((n_images, size, size), bool)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    for i in range(n_images):
        mask = masks[i]
        if i % 2:
            k = int(rng.integers(1, 4))
            for _ in range(k):
                r = np.sqrt(0.04 * size * size / k / np.pi)
                a, b = r * rng.uniform(0.6, 1.6), r * rng.uniform(0.6, 1.6)
                cy, cx = rng.uniform(0, size, 2)
                mask |= ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1
        logit = rng.standard_normal((size, size), dtype=np.float32) * np.float32(1.5)
        logit += np.where(mask, np.float32(1.0), np.float32(-4.0))
        s = (1 / (1 + np.exp(-logit))).astype(np.float32)
        quantised = rng.random((size, size), dtype=np.float32) < 0.25  # like maps stored as 8-bit images
        s[quantised] = np.round(s[quantised] * 255) / 255
        s[s < 2e-3] = 0  # saturated background: one large tie
        scores[i] = s
    return scores, masks


def sklearn_metrics(scores: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """The reference definitions (docs/metrics.md) computed with scikit-learn."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    def three(labels: np.ndarray, values: np.ndarray) -> tuple[float, float, float]:
        precision, recall, _ = precision_recall_curve(labels, values)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2 * precision * recall / (precision + recall)
        f1max = float(f1[np.isfinite(f1)].max())
        return float(roc_auc_score(labels, values)), float(average_precision_score(labels, values)), f1max

    image_labels = masks.reshape(len(masks), -1).any(axis=1)
    image = three(image_labels, scores.reshape(len(scores), -1).max(axis=1))
    pixel = three(masks.ravel(), scores.ravel())
    ious = []
    for i in np.flatnonzero(image_labels):
        precision, recall, _ = precision_recall_curve(masks[i].ravel(), scores[i].ravel())
        n_pos = np.count_nonzero(masks[i])
        tp = recall * n_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            fp = np.where(precision > 0, tp / precision - tp, 0)
        ious.append(float(np.max(tp / (fp + n_pos))))
    return dict(zip(COMPARED, (*image, *pixel, float(np.mean(ious))), strict=True))


def timed(fn: Callable[[], Any], trace: bool) -> tuple[Any, float, float, float | None]:
    """``(result, wall s, CPU s, extra peak MB or None)`` of one call; the trace excludes existing arrays.

    CPU time (``time.process_time``, this process only) is printed beside wall time: on a shared machine the wall
    clock also counts the time other processes hold the cores.
    """
    gc.collect()
    if trace:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = None
    if trace:
        peak = (tracemalloc.get_traced_memory()[1] - before) / 2**20
        tracemalloc.stop()
    return result, seconds, cpu, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1220, help="number of maps (default 1220: 80M pixels at 256²)")
    parser.add_argument("--size", type=int, default=256, help="map height and width (default 256)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of anoseg and np.sort (default 5)")
    parser.add_argument("--ref-runs", type=int, default=1, help="scikit-learn runs, interleaved in the first rounds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    scores, masks = make_maps(args.images, args.size, args.seed)
    copy_mb = scores.nbytes / 2**20
    print(
        f"data: {args.images} maps of {args.size}², {scores.size:,} pixels, {np.count_nonzero(masks):,} positive "
        f"({masks.mean():.2%}), {copy_mb:.0f} MB float32 scores, built in {time.perf_counter() - start:.1f} s"
    )
    import sklearn.metrics  # noqa: F401  (imported before timing: its import is not part of the reference's time)

    runs: dict[str, dict[str, list]] = {
        name: {"t": [], "cpu": [], "mb": []} for name in ("anoseg", "np.sort", "scikit-learn")
    }
    calls = {
        "anoseg": lambda: anomaly_metrics(scores, masks),
        "np.sort": lambda: np.sort(scores.ravel()),
        "scikit-learn": lambda: sklearn_metrics(scores, masks),
    }
    results: dict[str, Any] = {}
    for r in range(max(args.rounds, args.ref_runs)):
        order = ["anoseg", "np.sort"] if r < args.rounds else []
        if r < args.ref_runs:
            order.append("scikit-learn")
        for name in order:
            result, seconds, cpu, mb = timed(calls[name], trace=not runs[name]["t"])
            runs[name]["t"].append(seconds)
            runs[name]["cpu"].append(cpu)
            if mb is not None:
                runs[name]["mb"].append(mb)
            results[name] = result
            del result

    med = statistics.median
    print(f"{'':14}{'wall min':>9}{'median':>8}{'CPU min':>9}{'median':>8}{'runs':>5}   extra peak memory "
          "(tracemalloc, first call)")
    for name, run in runs.items():
        if run["t"]:
            mb = run["mb"][0]
            print(f"{name:14}{min(run['t']):9.3f}{med(run['t']):8.3f}{min(run['cpu']):9.3f}{med(run['cpu']):8.3f}"
                  f"{len(run['t']):5d}   {mb:8,.0f} MB = {mb / copy_mb:.2f} × one copy of the scores")

    def ratio(a: str, b: str, key: str) -> str:
        return f"min {min(runs[a][key]) / min(runs[b][key]):6.2f}  median {med(runs[a][key]) / med(runs[b][key]):6.2f}"

    print(f"anoseg / np.sort        wall: {ratio('anoseg', 'np.sort', 't')}   CPU: {ratio('anoseg', 'np.sort', 'cpu')}"
          "   (aim <= 1.5)")
    if not runs["scikit-learn"]["t"]:
        return 0
    print(f"scikit-learn / anoseg   wall: {ratio('scikit-learn', 'anoseg', 't')}   "
          f"CPU: {ratio('scikit-learn', 'anoseg', 'cpu')}   (aim >= 30)")
    worst = 0.0
    for key in COMPARED:
        diff = abs(results["anoseg"][key] - results["scikit-learn"][key])
        worst = max(worst, diff)
        print(f"{key:>12}: anoseg {results['anoseg'][key]:.9f}   scikit-learn {results['scikit-learn'][key]:.9f}"
              f"   |diff| {diff:.1e}")
    if worst > TOLERANCE:
        print(f"MISMATCH: largest difference {worst:.1e} > {TOLERANCE:g}", file=sys.stderr)
        return 1
    print(f"agreement: all {len(COMPARED)} metrics within {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
