"""``anoseg eval``: score the test split with a trained checkpoint and write the paper's metrics.

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

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from anoseg.data import protocols
from anoseg.data.dataset import load_cached, normalize
from anoseg.data.manifest import prepared_mask_threshold, read_manifest, select_rows
from anoseg.engine import results
from anoseg.engine.checkpoint import RunSpec, build_model, find_checkpoint, load_checkpoint, resolve_device
from anoseg.errors import AnosegError
from anoseg.io import write_json, write_with
from anoseg.log import console, warn
from anoseg.paths import data_report_path, dataset_dir, eval_dir, manifest_path

RESOLUTIONS = ("model", "native")
METRICS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "iou")
LFD_CSV_ROWS = {"auroc_sp": "image_auroc", "f1_sp": "image_f1max", "ap_sp": "image_ap", "auroc_px": "pixel_auroc",
                "f1_px": "pixel_f1max", "ap_px": "pixel_ap", "iou_px": "iou"}


@dataclass(frozen=True)
class EvalJob(RunSpec):
    """Evaluate the run of ``model`` trained on ``category`` (or ``all``) of a (dataset, generator) pair."""

    epoch: int | None = None  # None: the recipe's eval_epoch, else the last
    protocol: str | None = None  # None: the recipe's
    device: str = "auto"
    save_scores: bool = False
    overlays: int = 4
    batch_size: int = 8
    resolution: str = "model"  # "model": the network's image size (the papers); "native": each mask's own size
    aupro: bool = False  # also pixel AUPRO (MVTec AD's per-region overlap up to FPR 0.3), off the papers' columns


def predict_maps(model: torch.nn.Module, images: np.ndarray, mean, std, device: torch.device,
                 batch_size: int = 8) -> np.ndarray:
    """Softmax probability of class 1 for uint8 images (N, H, W, 3) → float32 (N, H, W)."""
    maps = np.empty(images.shape[:3], np.float32)
    model = model.to(device).eval()
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.array(images[start:start + batch_size])).to(device)  # copy: memmap is read-only
            logits = model(normalize(batch.permute(0, 3, 1, 2), mean, std))
            maps[start:start + len(batch)] = torch.softmax(logits.float(), 1)[:, 1].cpu().numpy()
    return maps


def evaluate(job: EvalJob) -> dict:
    """Evaluate every category the run covers; write and return the metrics dict (schema ``anoseg.metrics/1``).

    Everything is written to ``<run>/eval/epoch_NNN/`` (``anoseg.paths.eval_dir``) for the checkpoint evaluated, and
    appears there only once complete (``anoseg.engine.results``). Image labels are the folder labels of the manifest
    (a defect folder = anomalous) under every protocol, whatever resizing does to the masks.
    Raises ``AnosegError`` for an unknown protocol or resolution, a missing manifest or checkpoint.
    """
    if job.resolution not in RESOLUTIONS:
        raise AnosegError(f"--resolution must be one of {', '.join(RESOLUTIONS)}, not {job.resolution!r}")
    if job.recipe.task != "anomaly":
        from anoseg.engine.evaluate_scene import evaluate_scene

        return evaluate_scene(job)
    from anoseg.metrics.anomaly import anomaly_metrics, mean_over_categories

    recipe = job.recipe
    protocol = job.protocol or recipe.protocol
    if protocol not in protocols.PROTOCOLS:
        raise AnosegError(f"--protocol must be one of {', '.join(protocols.PROTOCOLS)}, not {protocol!r}")
    checkpoint_file, checkpoint = load_run_checkpoint(job)
    model = build_model(checkpoint)
    device = resolve_device(job.device)
    size = tuple(checkpoint["meta"]["image_size"])
    manifest = read_manifest(manifest_path(job.output, recipe.name, job.generator))
    test = select_rows(manifest, "test", job.category)
    categories = order_categories(test["category"].unique(), recipe.categories)
    per_category, warnings = {}, []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                        transient=True)
    task = progress.add_task("scoring", total=len(test))
    cache = dataset_dir(job.output, recipe.name, job.generator) / "cache"
    threshold = prepared_mask_threshold(data_report_path(job.output, recipe.name, job.generator))
    target = eval_dir(job.run, checkpoint["epoch"])
    staging = results.staging_dir(target)
    try:
        with progress:
            for category in categories:
                progress.update(task, description=f"scoring {category}")
                cached = load_cached(test[test["category"] == category], size, cache, protocol, threshold)
                maps = predict_maps(model, cached.images, checkpoint["meta"]["mean"], checkpoint["meta"]["std"],
                                    device, job.batch_size)
                masks = np.asarray(cached.masks)
                labels = folder_labels(cached.rows)
                # defects without masks (folder layout) are labelled at image level only: no pixel metrics, no IoU
                image_only = labels & (cached.rows["mask"].to_numpy() == "")
                if job.resolution == "native":
                    native_maps, native_masks = native_resolution(maps, cached.rows, threshold, category)
                    result = anomaly_metrics(native_maps, native_masks, image_labels=labels,
                                             pixel_valid=~image_only, aupro=job.aupro)
                    del native_maps, native_masks
                else:
                    result = anomaly_metrics(maps, protocols.pixel_labels(masks, protocol), image_labels=labels,
                                             iou_masks=protocols.iou_mask(masks, protocol), pixel_valid=~image_only,
                                             aupro=job.aupro)
                    vanished = int((labels & ~image_only & ~protocols.image_label(masks, protocol)).sum())
                    if vanished:
                        result["warnings"].append(
                            f"{vanished} defect image(s) have no defect pixel left at {size[0]}×{size[1]}; they "
                            "count as anomalous images (folder label) but add no defect pixel")
                warnings += [f"{category}: {w}" for w in result.pop("warnings")]
                per_category[category] = result
                progress.advance(task, len(cached.rows))
                names = [f"{d}/{Path(p).stem}" for d, p in zip(cached.rows["defect"], cached.rows["image"],
                                                                 strict=True)]
                if job.save_scores:
                    _save_scores(staging / "scores" / f"{category}.npz", maps, masks, labels, cached.images, names,
                                 protocol)
                if job.overlays:
                    _save_overlays(staging / "overlays" / category, maps, masks > 0, labels, cached.images, names,
                                   job.overlays)
        mean, excluded = mean_over_categories(per_category, (*METRICS, "pixel_aupro") if job.aupro else METRICS)
        for metric, names in excluded.items():
            if names:
                warnings.append(f"{metric} undefined for {', '.join(names)}; left out of the mean")
        for message in warnings:
            warn(message)
        metrics = {
            "schema": "anoseg.metrics/1", "task": "anomaly", "dataset": recipe.name, "generator": job.generator,
            "model": job.model, "trained_on": job.category, "protocol": protocol, "resolution": job.resolution,
            "epoch": checkpoint["epoch"], "image_size": list(size),
            "created": datetime.now().isoformat(timespec="seconds"),
            **checkpoint_identity(job.run, checkpoint_file, checkpoint),
            "categories": per_category, "mean": mean, "mean_excluded": excluded, "warnings": warnings,
        }
        write_json(staging / "metrics.json", metrics)
        write_json(staging / "thresholds.json", results.thresholds_document(metrics))
        _write_lfd_csv(staging / "metrics.csv", per_category, mean)
        results.publish(staging, target)
    finally:
        results.discard(staging)
    return metrics


def checkpoint_identity(run: Path, checkpoint_file: Path, checkpoint: dict) -> dict:
    """The keys of metrics.json that name the checkpoint evaluated: its path (relative to the run when inside it),
    the SHA-256 of the file and of the weights (``anoseg.engine.results``)."""
    try:
        name = str(Path(checkpoint_file).resolve().relative_to(Path(run).resolve()))
    except ValueError:
        name = str(checkpoint_file)
    return {"checkpoint": name, "checkpoint_sha256": results.file_sha256(checkpoint_file),
            "weights_sha256": results.weights_sha256(checkpoint)}


def folder_labels(rows) -> np.ndarray:
    """Image labels (N,) bool from the manifest: a test image in a defect folder is anomalous, a ``good`` one not."""
    return rows["label"].to_numpy().astype(int) == 1


def native_resolution(maps: np.ndarray, rows, threshold: int | None, category: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Maps (N, h, w) upsampled bilinearly to the masks' original size, and the binary masks read at that size.

    ``(maps (N, H, W) float32, masks (N, H, W) bool)``; images without a mask file (``good``) get an empty mask of
    their image's size. Every image of a category must have one size (MVTec AD, VisA); else ``AnosegError``.
    """
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


def load_run_checkpoint(job: EvalJob) -> tuple[Path, dict]:
    """The checkpoint an eval job scores (``--epoch``, else the recipe's eval epoch, else the last), checked to hold
    ``job.model`` with the recipe's number of classes."""
    epoch = job.epoch if job.epoch is not None else job.recipe.train.eval_epoch
    path = checkpoint_for_epoch(job.run, epoch)
    checkpoint = load_checkpoint(path)
    if checkpoint["model"] != job.model:
        raise AnosegError(f"{path} holds a {checkpoint['model']} model, not {job.model}")
    if checkpoint["num_classes"] != job.recipe.num_classes:
        raise AnosegError(f"{path} predicts {checkpoint['num_classes']} classes; recipe {job.recipe.name} has "
                          f"{job.recipe.num_classes}")
    return path, checkpoint


def checkpoint_for_epoch(run: Path, epoch: int | None) -> Path:
    """The checkpoint to evaluate: ``epoch``'s, or the last one when the run stopped before ``epoch``."""
    try:
        return find_checkpoint(run, epoch)
    except AnosegError:
        if epoch is None:
            raise
        last = find_checkpoint(run, None)
        kept = load_checkpoint(last)["epoch"]
        if kept == epoch:  # the last epoch is always in last.pt, kept as epoch_NNN.pt or not
            return last
        if kept > epoch:
            raise
        warn(f"the run has only {kept} epochs (< eval epoch {epoch}); evaluating the last checkpoint")
        return last


def order_categories(categories, recipe_order) -> list[str]:
    """Distinct categories in the recipe's order; unknown ones after, alphabetically."""
    rank = {name: i for i, name in enumerate(recipe_order)}
    return sorted(set(categories), key=lambda c: (rank.get(c, len(rank)), c))


def _write_lfd_csv(path: Path, per_category: dict, mean: dict) -> None:
    import pandas as pd

    columns = {**per_category, "mean": mean}
    table = pd.DataFrame({name: {row: _round(values.get(metric)) for row, metric in LFD_CSV_ROWS.items()}
                          for name, values in columns.items()})
    table.index.name = "class_name"
    write_with(path, lambda tmp: table.to_csv(tmp))


def _round(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


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
