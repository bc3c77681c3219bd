"""``anoseg eval`` of an anomaly run: score the test split with a trained checkpoint and write the paper's metrics.

Anomaly map = softmax probability of the defect class at the recipe's image size; image score = its max. The
metric definitions live in ``anoseg.metrics``; which mask counts as which label lives in ``anoseg.data.protocols``.
Writes, under ``<run>/eval/epoch_NNN/`` (the checkpoint evaluated; see ``anoseg.engine.results``), ``metrics.json``
(fractions + counts + the checkpoint's hashes + the operating points: test results at thresholds fixed on the
validation split, ``anoseg.engine.operating``), ``thresholds.json`` (per-category thresholds of each operating point,
what ``predict`` and ``export`` use), ``metrics.csv`` (the LFD layout: metrics as rows, categories as columns,
percentages), optional ``scores/<category>.npz`` and ``overlays/<category>/*.png``.

Image labels are the folder labels (a defect folder = anomalous) under every protocol. ``resolution="native"``
upsamples every map bilinearly to its mask's original size and scores it against the mask read at that size (what
MVTec AD's own evaluation does); the default scores at the network's image size, as the papers do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anoseg.constants import (
    ALL_CATEGORIES,
    ANOMALY,
    DEFECT_METRICS,
    F1MAX,
    METRICS,
    METRICS_CSV_FILE,
    NATIVE_RESOLUTION,
    PIXEL_AUPRO,
    PIXEL_LEVEL,
    SPLIT_VAL,
    THRESHOLDS_FILE,
)
from anoseg.data import protocols
from anoseg.data.dataset import load_cached
from anoseg.data.manifest import prepared_mask_threshold, prepared_split, read_manifest, select_rows
from anoseg.engine import results
from anoseg.engine.checkpoint import build_model, load_checkpoint, resolve_device
from anoseg.engine.inference import Runner, probability_maps, torch_runner
from anoseg.engine.operating import (
    PointSpec,
    SplitScores,
    category_points,
    deployed_point,
    mean_points,
    parse_points,
    parse_select,
)
from anoseg.engine.runs import (
    EvalJob,
    check_run_checkpoint,
    kept_checkpoints,
    load_run_checkpoint,
    metrics_record,
    order_categories,
    read_selection,
    write_percent_csv,
)
from anoseg.errors import AnosegError
from anoseg.io import write_json, write_with
from anoseg.paths import data_report_path, dataset_dir, eval_dir, eval_variant, manifest_path
from anoseg.runid import EvalRecord

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
    val: pd.DataFrame  # the validation rows of the run's categories (empty: thresholds are chosen on test)
    selection: dict | None = None  # --select: how the checkpoint was chosen (metrics.json "checkpoint_selection")
    split: dict | None = None  # the split prepare used (data_report.json), recorded in metrics.json
    by_defect: dict[str, dict] = field(default_factory=dict)  # category → defect type → DEFECT_METRICS and counts


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
    specs = parse_points(job.target_fpr, job.target_recall)
    scoring = setup(job, progress)
    variant = eval_variant(scoring.protocol, job.recipe.protocol, job.resolution)
    target = eval_dir(job.run, scoring.checkpoint["epoch"], variant)
    staging = results.staging_dir(target)
    per_category: dict[str, dict] = {}
    points: list[dict] = []
    done = 0
    try:
        for category in scoring.categories:
            if progress:
                progress(f"scoring {category}", done, len(scoring.test))
            scores = score_category(scoring, job, category)
            per_category[category] = category_metrics(scores, scoring, job, category)
            if job.resolution != NATIVE_RESOLUTION:
                points += operating_points(scoring, job, specs, category, scores, per_category[category])
            save_category_outputs(staging, scores, job, scoring.protocol, category)
            done += len(scores.rows)
            if progress:
                progress(f"scoring {category}", done, len(scoring.test))
        if job.resolution == NATIVE_RESOLUTION:
            scoring.warnings.append("operating points are fixed at model resolution (the default eval, whose "
                                    "thresholds predict uses); none at native resolution")
        metrics = summarise(job, scoring, per_category, variant)
        metrics["validation"] = {"images": len(scoring.val), "categories": sorted(set(scoring.val["category"]))}
        if scoring.selection is not None:
            metrics["checkpoint_selection"] = scoring.selection
        if points:
            metrics["operating_points"] = points + mean_points(points)
            metrics["deployed_point"] = deployed_point(specs).name
        record = EvalRecord.from_document(metrics)  # checked against the schema before it is written
        record.write(staging)
        metrics = record.document()
        write_json(staging / THRESHOLDS_FILE, results.thresholds_document(metrics))
        write_percent_csv(staging / METRICS_CSV_FILE,
                          {name: {row: values.get(metric) for row, metric in LFD_CSV_ROWS.items()}
                           for name, values in {**per_category, "mean": metrics["mean"]}.items()}, "class_name")
        results.publish(staging, target)
    finally:
        results.discard(staging)
    return metrics


def setup(job: EvalJob, progress: Progress | None = None) -> Scoring:
    """Check the protocol and options, select the test and validation rows of the run's categories, and load the
    checkpoint (``--select``: the kept one best on validation, ``select_checkpoint``) and its model."""
    recipe = job.recipe
    protocol = job.protocol or recipe.protocol
    metric = parse_select(job.select)
    if metric is not None and job.epoch is not None:
        raise AnosegError("--select and --epoch contradict each other: --epoch names the checkpoint, --select "
                          "chooses it on the validation split")
    warnings: list[str] = []
    if metric is None:  # a missing checkpoint is named before a missing manifest, as it always was
        checkpoint_file, checkpoint = load_run_checkpoint(job, warnings)
    manifest = read_manifest(manifest_path(job.output, recipe.name, job.generator))
    test = select_rows(manifest, "test", job.category)
    val = validation_rows(manifest, job.category)
    cache = dataset_dir(job.output, recipe.name, job.generator) / "cache"
    mask_threshold = prepared_mask_threshold(data_report_path(job.output, recipe.name, job.generator))
    selection = None
    if metric is None and job.epoch is None:  # the checkpoint train --select chose, if that is the one loaded
        chosen = read_selection(job.run)
        if chosen is not None and Path(chosen.pop("path")) == checkpoint_file:
            selection = {**chosen, "chosen_by": "train"}
    if metric is not None:
        checkpoint_file, checkpoint, selection = select_checkpoint(job, metric, val, protocol, cache, mask_threshold,
                                                                   progress)
    run = torch_runner(build_model(checkpoint), resolve_device(job.device))
    return Scoring(checkpoint_file, checkpoint, run, protocol, tuple(checkpoint["meta"]["image_size"]), test,
                   order_categories(test["category"].unique(), recipe.categories), cache, mask_threshold, warnings,
                   val, selection, prepared_split(data_report_path(job.output, recipe.name, job.generator)))


def validation_rows(manifest: pd.DataFrame, category: str) -> pd.DataFrame:
    """The manifest's validation rows (``split == "val"``) of one category or of every one (``all``); may be empty."""
    rows = manifest[manifest["split"] == SPLIT_VAL]
    return rows if category == ALL_CATEGORIES else rows[rows["category"] == category]


def score_rows(run: Runner, meta: dict, rows: pd.DataFrame, size: tuple[int, int], cache: Path, protocol: str,
               mask_threshold: int | None, batch_size: int) -> CategoryScores:
    """The anomaly maps of some manifest rows (decoded once into the dataset cache)."""
    cached = load_cached(rows, size, cache, protocol, mask_threshold)
    maps = probability_maps(run, cached.images, meta["mean"], meta["std"], batch_size)
    names = [f"{d}/{Path(p).stem}" for d, p in zip(cached.rows["defect"], cached.rows["image"], strict=True)]
    return CategoryScores(cached.rows, cached.images, maps, np.asarray(cached.masks), folder_labels(cached.rows),
                          names)


def score_category(scoring: Scoring, job: EvalJob, category: str, split: str = "test") -> CategoryScores:
    """The anomaly maps of one category's test (or ``val``) images."""
    rows = scoring.test if split == "test" else scoring.val
    return score_rows(scoring.run, scoring.checkpoint["meta"], rows[rows["category"] == category], scoring.size,
                      scoring.cache, scoring.protocol, scoring.mask_threshold, job.batch_size)


def split_scores(scores: CategoryScores, protocol: str) -> SplitScores:
    """What the operating points read of scored images: image scores (max of each map) and folder labels; the maps,
    pixel labels and IoU masks of the images with pixel ground truth (defects without a mask file are left out of
    the pixel level, as in ``category_metrics``)."""
    valid = ~(scores.labels & (scores.rows["mask"].to_numpy() == ""))
    maps, masks = (scores.maps, scores.masks) if valid.all() else (scores.maps[valid], scores.masks[valid])
    image_scores = scores.maps.reshape(len(scores.maps), -1).max(axis=1) if len(scores.maps) else \
        np.zeros(0, np.float32)
    return SplitScores(image_scores, scores.labels, maps, protocols.pixel_labels(masks, protocol),
                       protocols.iou_mask(masks, protocol))


def operating_points(scoring: Scoring, job: EvalJob, specs: list[PointSpec], category: str,
                     test: CategoryScores, metrics: dict) -> list[dict]:
    """One category's operating points (``anoseg.engine.operating.category_points``): thresholds chosen on its
    validation images when it has any, test results at them; ``metrics`` are the category's (its pixel F1-max
    threshold is reused); warnings go to ``scoring.warnings``."""
    has_val = bool((scoring.val["category"] == category).any())
    val = split_scores(score_category(scoring, job, category, SPLIT_VAL), scoring.protocol) if has_val else None
    known = {PointSpec(PIXEL_LEVEL, F1MAX).name: metrics.get("pixel_threshold")}  # the same maps, already sorted
    entries, warnings = category_points(specs, category, val, split_scores(test, scoring.protocol), known)
    if not has_val:
        warnings.insert(0, "no validation images: every threshold is chosen on test (oracle)")
    scoring.warnings.extend(f"{category}: {w}" for w in warnings)
    return entries


def select_checkpoint(job: EvalJob, metric: str, val: pd.DataFrame, protocol: str, cache: Path,
                      mask_threshold: int | None, progress: Progress | None = None) -> tuple[Path, dict, dict]:
    """``--select val:<metric>``: score the validation rows with every kept checkpoint of the run
    (``kept_checkpoints``) and return the one with the highest mean of ``metric`` over the categories (ties: the
    earliest epoch). ``(path, checkpoint, record)``; the record (metrics.json ``checkpoint_selection``,
    ``selection.json``) holds the metric, the epoch chosen, its checkpoint (relative to the run) and hash, and each
    epoch's value (None: undefined on validation).

    Raises ``AnosegError`` when the manifest has no validation rows, the run no checkpoint, or the metric is
    undefined for every checkpoint.
    """
    from anoseg.engine.results import file_sha256
    from anoseg.metrics.anomaly import anomaly_metrics, mean_over_categories

    if val.empty:
        raise AnosegError(f"--select {job.select}: the manifest has no validation images (split {SPLIT_VAL!r}); "
                          "prepare the data with a validation split first")
    candidates = kept_checkpoints(job.run)
    if not candidates:
        raise AnosegError(f"no checkpoint in {job.run}; run `anoseg train` first")
    categories = order_categories(val["category"].unique(), job.recipe.categories)
    device = resolve_device(job.device)
    values: dict[int, float | None] = {}
    best = None
    for n, path in enumerate(candidates):
        if progress:
            progress(f"selecting by {job.select}", n, len(candidates))
        checkpoint = load_checkpoint(path)
        check_run_checkpoint(job, path, checkpoint)
        run = torch_runner(build_model(checkpoint), device)
        meta = checkpoint["meta"]
        per_category = {}
        for category in categories:
            scores = score_rows(run, meta, val[val["category"] == category], tuple(meta["image_size"]), cache,
                                protocol, mask_threshold, job.batch_size)
            image_only = scores.labels & (scores.rows["mask"].to_numpy() == "")
            per_category[category] = anomaly_metrics(
                scores.maps, protocols.pixel_labels(scores.masks, protocol), image_labels=scores.labels,
                iou_masks=protocols.iou_mask(scores.masks, protocol), pixel_valid=~image_only)
        value = mean_over_categories(per_category, (metric,))[0][metric]
        values[int(checkpoint["epoch"])] = value
        if value is not None and (best is None or value > best[0]):
            best = (value, path, checkpoint)
    if best is None:
        raise AnosegError(f"--select {job.select}: {metric} is undefined on the validation images for every "
                          "checkpoint (one class only)")
    value, path, checkpoint = best
    try:
        name = str(path.resolve().relative_to(job.run.resolve()))
    except ValueError:
        name = str(path)
    record = {"metric": job.select, "epoch": int(checkpoint["epoch"]), "value": value, "checkpoint": name,
              "checkpoint_sha256": file_sha256(path), "values": {str(k): v for k, v in sorted(values.items())}}
    return path, checkpoint, record


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
        scoring.by_defect[category] = defect_type_metrics(native_maps, native_masks, native_masks, labels,
                                                          ~image_only, scores.rows["defect"].to_numpy(), result)
        del native_maps, native_masks
    else:
        pixel, iou = protocols.pixel_labels(masks, protocol), protocols.iou_mask(masks, protocol)
        result = anomaly_metrics(maps, pixel, image_labels=labels, iou_masks=iou, pixel_valid=~image_only,
                                 aupro=job.aupro)
        scoring.by_defect[category] = defect_type_metrics(maps, pixel, iou, labels, ~image_only,
                                                          scores.rows["defect"].to_numpy(), result)
        vanished = int((labels & ~image_only & ~protocols.image_label(masks, protocol)).sum())
        if vanished:
            height, width = scoring.size
            result["warnings"].append(
                f"{vanished} defect image(s) have no defect pixel left at {height}×{width}; they "
                "count as anomalous images (folder label) but add no defect pixel")
    scoring.warnings.extend(f"{category}: {w}" for w in result.pop("warnings"))
    return result


def defect_type_metrics(maps: np.ndarray, pixel_labels: np.ndarray, iou_masks: np.ndarray, labels: np.ndarray,
                        pixel_valid: np.ndarray, defects: np.ndarray, whole: dict) -> dict[str, dict]:
    """Per defect type of one category: ``DEFECT_METRICS`` (image AUROC/AP, pixel AP, IoU) of that type's test images
    together with the category's good test images, by ``anoseg.metrics.anomaly.anomaly_metrics`` on that subset.

    Args:
        maps: (N, H, W) anomaly maps; pixel_labels, iou_masks: (N, H, W) bool, as the category's metrics used them.
        labels: (N,) bool image labels; pixel_valid: (N,) images with pixel ground truth; defects: (N,) defect type.
        whole: the category's own metrics, reused when the category has one defect type (the subset is all of it).

    Returns:
        defect type (sorted) → ``{metric: fraction or None, "n_images", "n_anomalous_images"}``; ``{}`` without
        anomalous test images. A metric undefined on the subset (no good test image) is ``None``.
    """
    from anoseg.metrics.anomaly import anomaly_metrics

    out: dict[str, dict] = {}
    for defect in sorted(set(defects[labels].tolist())):
        of_type = labels & (defects == defect)
        chosen = ~labels | of_type
        if chosen.all():
            values = whole
        else:
            values = anomaly_metrics(maps[chosen], pixel_labels[chosen], image_labels=labels[chosen],
                                     iou_masks=iou_masks[chosen], pixel_valid=pixel_valid[chosen])
        out[defect] = {**{metric: values[metric] for metric in DEFECT_METRICS},
                       "n_images": int(chosen.sum()), "n_anomalous_images": int(of_type.sum())}
    return out


def save_category_outputs(staging: Path, scores: CategoryScores, job: EvalJob, protocol: str, category: str) -> None:
    """``scores/<category>.npz`` (with ``--save-scores``) and the first ``job.overlays`` overlays, anomalous first."""
    if job.save_scores:
        _save_scores(staging / "scores" / f"{category}.npz", scores.maps, scores.masks, scores.labels, scores.images,
                     scores.names, protocol)
    if job.overlays:
        _save_overlays(staging / "overlays" / category, scores.maps, scores.masks > 0, scores.labels, scores.images,
                       scores.names, job.overlays)


def summarise(job: EvalJob, scoring: Scoring, per_category: dict[str, dict], variant: str = "") -> dict:
    """The metrics record: per-category results, their mean (undefined metrics left out, and said so), the
    per-defect-type results (``by_defect``) and the split prepare used (``split``); ``variant`` names the evaluation
    settings (``anoseg.paths.eval_variant``)."""
    from anoseg.metrics.anomaly import mean_over_categories

    mean, excluded = mean_over_categories(per_category, (*METRICS, PIXEL_AUPRO) if job.aupro else METRICS)
    warnings = list(scoring.warnings)
    for metric, names in excluded.items():
        if names:
            warnings.append(f"{metric} undefined for {', '.join(names)}; left out of the mean")
    record = metrics_record(job, scoring.checkpoint_file, scoring.checkpoint, task=ANOMALY,
                            protocol=scoring.protocol, resolution=job.resolution, image_size=scoring.size,
                            categories=per_category, mean=mean, excluded=excluded, warnings=warnings,
                            variant=variant)
    record["by_defect"] = {category: scoring.by_defect[category] for category in per_category
                           if category in scoring.by_defect}
    record["split"] = scoring.split
    return record


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


def record_selection(job: EvalJob, progress: Progress | None = None) -> dict:
    """``train --select``: choose the run's checkpoint on the validation split (``select_checkpoint``) and write
    ``<run>/selection.json``, which a later eval without ``--epoch`` reads; the record.

    Raises ``AnosegError`` as ``select_checkpoint`` does, and for a malformed ``job.select``.
    """
    from anoseg.engine.runs import write_selection

    metric = parse_select(job.select)
    recipe = job.recipe
    protocol = job.protocol or recipe.protocol
    manifest = read_manifest(manifest_path(job.output, recipe.name, job.generator))
    _, _, record = select_checkpoint(job, metric, validation_rows(manifest, job.category), protocol,
                                     dataset_dir(job.output, recipe.name, job.generator) / "cache",
                                     prepared_mask_threshold(data_report_path(job.output, recipe.name,
                                                                              job.generator)), progress)
    write_selection(job.run, record)
    return record
