"""Pixel-level AUROC + AP + F1-max: anoseg.metrics.binary_metrics against scikit-learn on the same arrays.

Builds a realistic pixel test set (float32 scores correlated with the labels, ~2% positives, a quarter of the pixels
quantised to 1/255 steps and a saturated background of exact zeros, so there are many ties), times both
implementations in the same run, checks that they agree to 1e-6, and prints both times, the ratio and the extra
memory each one allocates.

Memory is measured with ``tracemalloc`` (numpy reports its array buffers to it): the peak of memory allocated during
the call above what was allocated before it, i.e. without the input arrays. The process-wide peak RSS from
``resource.getrusage`` (inputs and both runs included) is printed as a cross-check.

    python bench/metrics.py                      # 80M pixels, ~2 min (scikit-learn dominates)
    python bench/metrics.py --pixels 1000000     # smoke run, seconds
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from anoseg.metrics import binary_metrics

TOLERANCE = 1e-6


def make_pixels(n: int, positive_rate: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores (float32) and labels (bool) of ``n`` pixels, generated in chunks so the temporaries stay small."""
    rng = np.random.default_rng(seed)
    scores = np.empty(n, np.float32)
    labels = np.empty(n, bool)
    chunk = 1 << 22
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        lab = rng.random(stop - start, dtype=np.float32) < positive_rate
        logit = rng.standard_normal(stop - start, dtype=np.float32) * np.float32(1.5)
        logit += np.where(lab, np.float32(1.0), np.float32(-4.0))
        s = (1 / (1 + np.exp(-logit))).astype(np.float32)
        quantised = rng.random(stop - start, dtype=np.float32) < 0.25  # like maps stored as 8-bit images
        s[quantised] = np.round(s[quantised] * 255) / 255
        s[s < 2e-3] = 0  # saturated background: one large tie
        scores[start:stop], labels[start:stop] = s, lab
    return scores, labels


def sklearn_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The reference definitions (protocol.md §3.1) computed with scikit-learn."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    auroc = roc_auc_score(labels, scores)
    ap = average_precision_score(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    return {"auroc": float(auroc), "ap": float(ap), "f1max": float(f1[np.isfinite(f1)].max())}


def measure(fn: Callable[[], Any], repeat: int, trace: bool) -> tuple[Any, float, float | None]:
    """``(result, best time in s, extra peak memory in MB of the first call)``."""
    times, peak = [], None
    for i in range(repeat):
        gc.collect()
        if trace:
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        if trace:
            if i == 0:
                peak = (tracemalloc.get_traced_memory()[1] - before) / 2**20
            tracemalloc.stop()
    return result, min(times), peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=80_000_000, help="number of pixels (default 80M)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each implementation; the best time is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-trace", action="store_true", help="skip tracemalloc (pure timing)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    scores, labels = make_pixels(args.pixels, seed=args.seed)
    print(
        f"data: {scores.size:,} pixels, {np.count_nonzero(labels):,} positive ({labels.mean():.2%}), "
        f"{scores.nbytes / 2**20:.0f} MB float32 scores + {labels.nbytes / 2**20:.0f} MB bool labels, "
        f"built in {time.perf_counter() - start:.1f} s"
    )
    ours, t_ours, m_ours = measure(lambda: binary_metrics(scores, labels), args.repeat, not args.no_trace)
    ref, t_ref, m_ref = measure(lambda: sklearn_metrics(scores, labels), args.repeat, not args.no_trace)

    worst = 0.0
    for key in ("auroc", "ap", "f1max"):
        diff = abs(ours[key] - ref[key])
        worst = max(worst, diff)
        print(f"{key:>6}: anoseg {ours[key]:.9f}   scikit-learn {ref[key]:.9f}   |diff| {diff:.1e}")
    memory = "extra peak memory (tracemalloc)"
    print(f"anoseg        {t_ours:8.2f} s   {memory}: " + (f"{m_ours:,.0f} MB" if m_ours is not None else "-"))
    print(f"scikit-learn  {t_ref:8.2f} s   {memory}: " + (f"{m_ref:,.0f} MB" if m_ref is not None else "-"))
    print(f"speed-up      {t_ref / t_ours:8.1f} x   (best of {args.repeat} run(s) each, same arrays, same process)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
    print(f"process peak RSS (getrusage, inputs and both runs): {rss:,.0f} MB")
    if worst > TOLERANCE:
        print(f"MISMATCH: largest difference {worst:.1e} > {TOLERANCE:g}", file=sys.stderr)
        return 1
    print(f"agreement: all three metrics within {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
