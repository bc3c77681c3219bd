"""``anoseg eval`` of an anomaly run: score the test split with a trained checkpoint and write the paper's metrics.

Anomaly map = softmax probability of the defect class at the recipe's image size; image score = its max. The
metric definitions live in ``anoseg.metrics``; which mask counts as which label lives in ``anoseg.data.protocols``.
Writes, under ``<run>/eval/epoch_NNN/`` (the checkpoint evaluated; see ``anoseg.engine.results``), ``metrics.json``
(fractions + counts + the checkpoint's hashes), ``thresholds.json`` (per-category pixel F1-max thresholds, what
``predict`` and ``export`` use), ``metrics.csv`` (the LFD layout: metrics as rows, categories as columns,
percentages), optional ``scores/<category>.npz`` and ``overlays/<category>/*.png``.

Image labels are the folder labels (a defect folder = anomalous) under every protocol. ``resolution="native"``
upsamples every map bilinearly to its mask's original size and scores it against the mask read at that size (what
MVTec AD's own evaluation does); the default scores at the network's image size, as the papers do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anoseg.constants import (
    ANOMALY,
    METRICS,
    METRICS_CSV_FILE,
    METRICS_FILE,
    NATIVE_RESOLUTION,
    PIXEL_AUPRO,
    THRESHOLDS_FILE,
)
from anoseg.data import protocols
from anoseg.data.dataset import load_cached
from anoseg.data.manifest import prepared_mask_threshold, read_manifest, select_rows
from anoseg.engine import results
from anoseg.engine.checkpoint import build_model, resolve_device
from anoseg.engine.inference import Runner, probability_maps, torch_runner
from anoseg.engine.runs import EvalJob, load_run_checkpoint, metrics_record, order_categories, write_percent_csv
from anoseg.errors import AnosegError
from anoseg.io import write_json, write_with
from anoseg.paths import data_report_path, dataset_dir, eval_dir, eval_variant, manifest_path

LFD_CSV_ROWS = {"auroc_sp": "image_auroc", "f1_sp": "image_f1max", "ap_sp": "image_ap", "auroc_px": "pixel_auroc",
                "f1_px": "pixel_f1max", "ap_px": "pixel_ap", "iou_px": "iou"}
#: ``progress(description, images done, images in all)``, called as scoring goes (the stage draws the bar).
Progress = Callable[[str, int, int], None]


@dataclass
class Scoring:
    """What ``setup`` prepares for an anomaly eval: the checkpoint, the model's runner and the test images."""

    checkpoint_file: Path
    checkpoint: dict
    run: Runner
    protocol: str
    size: tuple[int, int]
    test: pd.DataFrame
    categories: list[str]
    cache: Path
    mask_threshold: int | None
    warnings: list[str]


@dataclass
class CategoryScores:
    """One category's test images scored: maps (N, H, W) float32, masks (N, H, W), folder labels (N,) bool."""

    rows: pd.DataFrame
    images: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    names: list[str]


def evaluate_anomaly(job: EvalJob, progress: Progress | None = None) -> dict:
    """Evaluate every category the run covers; write and return the metrics dict (schema ``anoseg.metrics/1``).

    Everything is written to ``<run>/eval/epoch_NNN[-variant]/`` (``anoseg.paths.eval_dir``: keyed by checkpoint and by
    protocol and resolution, so other settings never replace the default result), and
    appears there only once complete (``anoseg.engine.results``). Image labels are the folder labels of the manifest
    (a defect folder = anomalous) under every protocol, whatever resizing does to the masks. Warnings are returned in
    ``metrics["warnings"]``, not printed.
    Raises ``AnosegError`` for an unknown protocol, a missing manifest or checkpoint.
    """
    scoring = setup(job)
    target = eval_dir(job.run, scoring.checkpoint["epoch"],
                      eval_variant(scoring.protocol, job.recipe.protocol, job.resolution))
    staging = results.staging_dir(target)
    per_category: dict[str, dict] = {}
    done = 0
    try:
        for category in scoring.categories:
            if progress:
                progress(f"scoring {category}", done, len(scoring.test))
            scores = score_category(scoring, job, category)
            per_category[category] = category_metrics(scores, scoring, job, category)
            save_category_outputs(staging, scores, job, scoring.protocol, category)
            done += len(scores.rows)
            if progress:
                progress(f"scoring {category}", done, len(scoring.test))
        metrics = summarise(job, scoring, per_category)
        write_json(staging / METRICS_FILE, metrics)
        write_json(staging / THRESHOLDS_FILE, results.thresholds_document(metrics))
        write_percent_csv(staging / METRICS_CSV_FILE,
                          {name: {row: values.get(metric) for row, metric in LFD_CSV_ROWS.items()}
                           for name, values in {**per_category, "mean": metrics["mean"]}.items()}, "class_name")
        results.publish(staging, target)
    finally:
        results.discard(staging)
    return metrics


def setup(job: EvalJob) -> Scoring:
    """Check the protocol, load the checkpoint and its model, and select the test rows of the run's categories."""
    recipe = job.recipe
    protocol = job.protocol or recipe.protocol  # both checked: by EvalJob and by the recipe
    warnings: list[str] = []
    checkpoint_file, checkpoint = load_run_checkpoint(job, warnings)
    run = torch_runner(build_model(checkpoint), resolve_device(job.device))
    test = select_rows(read_manifest(manifest_path(job.output, recipe.name, job.generator)), "test", job.category)
    return Scoring(checkpoint_file, checkpoint, run, protocol, tuple(checkpoint["meta"]["image_size"]), test,
                   order_categories(test["category"].unique(), recipe.categories),
                   dataset_dir(job.output, recipe.name, job.generator) / "cache",
                   prepared_mask_threshold(data_report_path(job.output, recipe.name, job.generator)), warnings)


def score_category(scoring: Scoring, job: EvalJob, category: str) -> CategoryScores:
    """The anomaly maps of one category's test images (decoded once into the dataset cache)."""
    meta = scoring.checkpoint["meta"]
    cached = load_cached(scoring.test[scoring.test["category"] == category], scoring.size, scoring.cache,
                         scoring.protocol, scoring.mask_threshold)
    maps = probability_maps(scoring.run, cached.images, meta["mean"], meta["std"], job.batch_size)
    names = [f"{d}/{Path(p).stem}" for d, p in zip(cached.rows["defect"], cached.rows["image"], strict=True)]
    return CategoryScores(cached.rows, cached.images, maps, np.asarray(cached.masks), folder_labels(cached.rows),
                          names)


def category_metrics(scores: CategoryScores, scoring: Scoring, job: EvalJob, category: str) -> dict:
    """The paper's metrics of one category (``anoseg.metrics.anomaly_metrics``); its warnings go to
    ``scoring.warnings``, prefixed with the category."""
    from anoseg.metrics.anomaly import anomaly_metrics

    maps, masks, labels, protocol = scores.maps, scores.masks, scores.labels, scoring.protocol
    # defects without masks (folder layout) are labelled at image level only: no pixel metrics, no IoU
    image_only = labels & (scores.rows["mask"].to_numpy() == "")
    if job.resolution == NATIVE_RESOLUTION:
        native_maps, native_masks = native_resolution(maps, scores.rows, scoring.mask_threshold, category)
        result = anomaly_metrics(native_maps, native_masks, image_labels=labels, pixel_valid=~image_only,
                                 aupro=job.aupro)
        del native_maps, native_masks
    else:
        result = anomaly_metrics(maps, protocols.pixel_labels(masks, protocol), image_labels=labels,
                                 iou_masks=protocols.iou_mask(masks, protocol), pixel_valid=~image_only,
                                 aupro=job.aupro)
        vanished = int((labels & ~image_only & ~protocols.image_label(masks, protocol)).sum())
        if vanished:
            height, width = scoring.size
            result["warnings"].append(
                f"{vanished} defect image(s) have no defect pixel left at {height}×{width}; they "
                "count as anomalous images (folder label) but add no defect pixel")
    scoring.warnings.extend(f"{category}: {w}" for w in result.pop("warnings"))
    return result


def save_category_outputs(staging: Path, scores: CategoryScores, job: EvalJob, protocol: str, category: str) -> None:
    """``scores/<category>.npz`` (with ``--save-scores``) and the first ``job.overlays`` overlays, anomalous first."""
    if job.save_scores:
        _save_scores(staging / "scores" / f"{category}.npz", scores.maps, scores.masks, scores.labels, scores.images,
                     scores.names, protocol)
    if job.overlays:
        _save_overlays(staging / "overlays" / category, scores.maps, scores.masks > 0, scores.labels, scores.images,
                       scores.names, job.overlays)


def summarise(job: EvalJob, scoring: Scoring, per_category: dict[str, dict]) -> dict:
    """The metrics record: per-category results, their mean (undefined metrics left out, and said so)."""
    from anoseg.metrics.anomaly import mean_over_categories

    mean, excluded = mean_over_categories(per_category, (*METRICS, PIXEL_AUPRO) if job.aupro else METRICS)
    warnings = list(scoring.warnings)
    for metric, names in excluded.items():
        if names:
            warnings.append(f"{metric} undefined for {', '.join(names)}; left out of the mean")
    return metrics_record(job, scoring.checkpoint_file, scoring.checkpoint, task=ANOMALY,
                          protocol=scoring.protocol, resolution=job.resolution, image_size=scoring.size,
                          categories=per_category, mean=mean, excluded=excluded, warnings=warnings)


def folder_labels(rows) -> np.ndarray:
    """Image labels (N,) bool from the manifest: a test image in a defect folder is anomalous, a ``good`` one not."""
    return rows["label"].to_numpy().astype(int) == 1


def native_resolution(maps: np.ndarray, rows, threshold: int | None, category: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Maps (N, h, w) upsampled bilinearly to the masks' original size, and the binary masks read at that size.

    ``(maps (N, H, W) float32, masks (N, H, W) bool)``; images without a mask file (``good``) get an empty mask of
    their image's size. Every image of a category must have one size (MVTec AD, VisA); else ``AnosegError``.
    """
    import torch
    import torch.nn.functional as F

    from anoseg.data.images import open_image
    from anoseg.data.masks import read_mask

    # read upright (EXIF applied), as every other stage reads them; an image without a mask gives its own size
    read = [read_mask(mask, threshold=threshold) if mask else open_image(image).size[::-1]
            for image, mask in zip(rows["image"], rows["mask"], strict=True)]
    sizes = [r.shape if isinstance(r, np.ndarray) else tuple(r) for r in read]
    if len(set(sizes)) > 1:
        raise AnosegError(f"--resolution native: category {category} has masks of {len(set(sizes))} sizes "
                          f"({', '.join(f'{h}×{w}' for h, w in sorted(set(sizes))[:3])}); use the default resolution")
    height, width = sizes[0] if sizes else maps.shape[1:]
    upsampled = F.interpolate(torch.from_numpy(np.ascontiguousarray(maps))[:, None], size=(height, width),
                              mode="bilinear", align_corners=False)[:, 0].numpy()
    masks = np.zeros((len(rows), height, width), bool)
    for i, mask in enumerate(read):
        if isinstance(mask, np.ndarray):
            masks[i] = mask
    return upsampled, masks


def _save_scores(path: Path, maps, masks, labels, images, names, protocol: str) -> None:
    payload = {
        "image_scores": maps.reshape(len(maps), -1).max(axis=1).astype(np.float32),
        "image_labels": labels.astype(np.uint8),  # the folder labels the image metrics used
        "pixel_scores": maps, "gt_masks": protocols.pixel_labels(masks, protocol).astype(np.uint8),
        "images": np.asarray(images), "names": np.array(names),
    }
    write_with(path, lambda tmp: np.savez_compressed(tmp, **payload))


def _save_overlays(folder: Path, maps, masks, labels, images, names, count: int) -> None:
    from PIL import Image

    from anoseg.engine.visual import overlay_strip

    anomalous_first = sorted(range(len(maps)), key=lambda i: (not labels[i], i))[:count]
    for i in anomalous_first:
        picture = Image.fromarray(overlay_strip(np.asarray(images[i]), maps[i], masks[i]))
        write_with(folder / f"{names[i].replace('/', '_')}.png", picture.save)
