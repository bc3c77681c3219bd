"""Hand-made eval outputs (metrics.json, scores.npz, bench.json) for the report tests (imported by conftest too)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anoseg.paths import bench_path, eval_dir, run_dir

ANOMALY_KEYS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "iou")


def anomaly_metrics(base: float, **overrides: float | None) -> dict[str, float | None]:
    """A category's seven metrics: ``base`` + a fixed offset per metric (so columns differ), then overrides."""
    values = {key: round(base - 0.05 * i, 4) for i, key in enumerate(ANOMALY_KEYS)}
    values.update(overrides)
    return values | {"n_images": 10, "n_anomalous_images": 6}


def write_metrics(
    outputs: Path,
    dataset: str,
    generator: str,
    model: str,
    trained_on: str,
    categories: dict[str, dict],
    task: str = "anomaly",
    protocol: str = "clean",
    epoch: int = 100,
) -> Path:
    """Write one metrics.json the way ``anoseg eval`` does (docs/schemas.md), in ``<run>/eval/epoch_NNN/``; return its
    path."""
    names = [k for k in next(iter(categories.values())) if not k.startswith("n_")]
    mean = {}
    for name in names:
        defined = [c[name] for c in categories.values() if c.get(name) is not None]
        mean[name] = sum(defined) / len(defined) if defined else None
    doc = {
        "schema": "anoseg.metrics/1",
        "task": task,
        "dataset": dataset,
        "generator": generator,
        "model": model,
        "trained_on": trained_on,
        "protocol": protocol,
        "epoch": epoch,
        "image_size": [256, 256],
        "created": "2026-11-21T10:00:00",
        "categories": categories,
        "mean": mean,
        "mean_excluded": {},
        "warnings": [],
    }
    path = eval_dir(run_dir(outputs, dataset, generator, model, trained_on), epoch) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    return path


def write_scores(path: Path, n: int = 6, size: int = 32, seed: int = 0, quality: float = 2.0) -> None:
    """A small scores.npz: half the images anomalous with a square defect, scores = noise + quality × mask.

    Images and masks are the same for every ``seed`` (one test set); only the scores' noise changes.
    """
    data = np.random.default_rng(1234)
    labels = (np.arange(n) % 2 == 0).astype(np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in np.flatnonzero(labels):
        y, x = data.integers(0, size - 8, 2)
        masks[i, y : y + 8, x : x + 8] = 1
    images = data.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    pixel_scores = (np.random.default_rng(seed).random((n, size, size)) + quality * masks).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        image_scores=pixel_scores.max(axis=(1, 2)),
        image_labels=labels,
        pixel_scores=pixel_scores,
        gt_masks=masks,
        images=images,
        names=np.array([f"{'crack' if lab else 'good'}/{i:03d}" for i, lab in enumerate(labels)]),
    )


def write_bench(outputs: Path) -> Path:
    """A bench.json with two segmenters, given in the reverse of the report order."""
    doc = {
        "schema": "anoseg.bench/1",
        "device": "cpu",
        "size": [256, 256],
        "threads": 2,
        "created": "2026-11-21T10:00:00",
        "models": [
            {"model": "sanet_s", "params": 2_100_000, "gmacs": 3.4567, "latency_ms": 25.123, "fps": 39.8,
             "peak_mem_mb": 210.0, "fast_latency_ms": 20.0, "fast_speedup": 1.256, "onnx_latency_ms": None},
            {"model": "lfd", "params": 936067, "gmacs": 1.177, "latency_ms": 14.8, "fps": 67.5,
             "peak_mem_mb": 120.0, "fast_latency_ms": 11.0, "fast_speedup": 1.35, "onnx_latency_ms": None},
        ],
    }  # fmt: skip
    path = bench_path(outputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


# (generator, model) → category → metrics. LFD + none wins Pixel AUROC (bottle override), LFD + SeaS the rest.
GOLDEN_RUNS = {
    ("none", "lfd"): {"bottle": anomaly_metrics(0.90, pixel_auroc=0.99), "metal_nut": anomaly_metrics(0.80)},
    ("seas", "lfd"): {"bottle": anomaly_metrics(0.96), "metal_nut": anomaly_metrics(0.86)},
    ("none", "sanet_s"): {"bottle": anomaly_metrics(0.92), "metal_nut": anomaly_metrics(0.70, iou=0.123456)},
    ("seas", "sanet_s"): {"bottle": anomaly_metrics(0.99)},  # metal_nut missing: an incomplete row
}
