"""``anoseg train``: fit a segmenter on a manifest's train split with Lightning Fabric (CPU, one GPU, or DDP).

Reproducible and resumable by construction: the data order and dropout of epoch ``e`` depend only on ``(seed, e)``,
and ``last.pt`` is written atomically after every epoch, so ``--resume`` after an interruption (Ctrl-C included)
reaches the same weights as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from anoseg.data.dataset import SegmentationDataset, load_cached, normalize
from anoseg.data.manifest import prepared_mask_threshold, read_manifest
from anoseg.engine.checkpoint import FORMAT, LAST, RunSpec, epoch_path, load_checkpoint, save_checkpoint
from anoseg.errors import AnosegError
from anoseg.io import write_json
from anoseg.log import console
from anoseg.paths import ALL_CATEGORIES, data_report_path, dataset_dir, manifest_path


@dataclass(frozen=True)
class TrainJob(RunSpec):
    """One training run: a model on one category (or ``all`` = the unified model) of a (dataset, generator) pair."""

    device: str = "auto"
    devices: int = 1
    precision: str = "32-true"
    backbone_weights: str = "none"
    resume: bool = False
    fresh: bool = False


def cosine_lr(iteration: int, total: int, base_lr: float, min_lr: float) -> float:
    """LFD's per-iteration cosine decay from ``base_lr`` (first iteration) towards ``min_lr``, no warm-up."""
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * iteration / total))


def select_rows(manifest, split: str, category: str):
    """The manifest rows of one split, for one category or for ``all``."""
    rows = manifest[manifest["split"] == split]
    if category != ALL_CATEGORIES:
        known = sorted(manifest["category"].unique())
        if category not in known:
            raise AnosegError(f"category {category!r} is not in the manifest; it has: {', '.join(known)}")
        rows = rows[rows["category"] == category]
    if rows.empty:
        raise AnosegError(f"the manifest has no {split} images for category {category!r}")
    return rows


def train(job: TrainJob) -> Path:
    """Train ``job.model`` and return its run directory (checkpoints, ``last.pt``, ``train_history.json``)."""
    from lightning.fabric import Fabric

    from anoseg.losses import build_loss
    from anoseg.models import create_model
    from anoseg.models.weights import weights_provenance

    recipe, settings = job.recipe, job.recipe.train
    start_epoch, history, previous = _prepare_run_dir(job)
    manifest = read_manifest(manifest_path(job.output, recipe.name, job.generator))
    rows = select_rows(manifest, "train", job.category)
    dataset = _train_dataset(rows, job)

    accelerator = "cpu" if job.device == "cpu" else ("cuda" if job.device.startswith("cuda") else "auto")
    fabric = Fabric(accelerator=accelerator, devices=job.devices, precision=job.precision)
    fabric.launch()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(job.seed)
    model = create_model(job.model, num_classes=recipe.num_classes, backbone_weights=job.backbone_weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    if previous is not None:
        model.load_state_dict(previous["state_dict"])
        optimizer.load_state_dict(previous["optimizer"])
    criterion = build_loss(job.model, thresh=settings.ohem_thresh, min_kept=settings.ohem_min_kept,
                           class_weights=settings.class_weights, ignore_index=recipe.ignore_index)
    wrapped, optimizer = fabric.setup(model, optimizer)
    criterion = criterion.to(fabric.device)
    batches = _batches_per_epoch(len(dataset), settings.batch_size, fabric.world_size,
                                 keeps_partial_batch(job.model, fabric.world_size))
    total = batches * settings.epochs
    meta = _meta(job, rows)
    # what the backbone really holds (a resumed run keeps its first start's record: its weights came from there)
    meta["backbone_weights"] = (previous["meta"].get("backbone_weights", meta["backbone_weights"]) if previous
                                else weights_provenance(model, job.backbone_weights))

    progress = _progress(fabric.global_rank == 0)
    task = progress.add_task("train", total=total, completed=start_epoch * batches, status="")
    try:
        with progress:
            for epoch in range(start_epoch, settings.epochs):
                loader = fabric.setup_dataloaders(_loader(dataset, job, epoch, fabric), use_distributed_sampler=False)
                torch.manual_seed(job.seed * 1000 + epoch)  # dropout of epoch e depends only on (seed, e)
                wrapped.train()
                started, loss_sum, seen = time.perf_counter(), 0.0, 0
                for step, (images, targets) in enumerate(loader):
                    lr = cosine_lr(epoch * batches + step, total, settings.lr, settings.min_lr)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss = criterion(wrapped(normalize(images, recipe.mean, recipe.std)), targets)
                    optimizer.zero_grad(set_to_none=True)
                    fabric.backward(loss)
                    optimizer.step()
                    loss_sum, seen = loss_sum + loss.item() * len(images), seen + len(images)
                    rate = seen / (time.perf_counter() - started)
                    progress.update(task, advance=1, description=f"epoch {epoch + 1}/{settings.epochs}",
                                    status=f"loss {loss_sum / seen:.4f}  lr {lr:.5f}  {rate:.1f} img/s")
                history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "lr": lr,
                                "images_per_s": seen / (time.perf_counter() - started)})
                if fabric.global_rank == 0:
                    _save(job, model, optimizer, epoch + 1, batches, history, meta)
    except KeyboardInterrupt:
        done = history[-1]["epoch"] if history else 0
        raise AnosegError(f"interrupted; epoch {done} is saved in {job.run / LAST} — continue with --resume") from None
    return job.run


def _prepare_run_dir(job: TrainJob):
    """Refuse to clobber an earlier run; load it for ``--resume``."""
    last = job.run / LAST
    if job.resume:
        if not last.is_file():
            raise AnosegError(f"--resume: no interrupted run in {job.run}")
        previous = load_checkpoint(last)
        if previous["model"] != job.model or previous["num_classes"] != job.recipe.num_classes:
            raise AnosegError(f"--resume: {last} holds a {previous['model']} model, not {job.model}")
        if previous["epoch"] >= job.recipe.train.epochs:
            raise AnosegError(f"--resume: {job.run} already finished {previous['epoch']} epochs")
        return previous["epoch"], list(previous["history"]), previous
    if last.is_file():
        if not job.fresh:
            raise AnosegError(f"{job.run} already holds a trained model; pass --resume to continue it or --fresh "
                              "to replace it")
        shutil.rmtree(job.run)
    return 0, [], None


def _train_dataset(rows, job: TrainJob) -> torch.utils.data.Dataset:
    """Anomaly recipes: resized arrays from the cache. Road/scene recipes: native-size images with scale/crop."""
    if job.recipe.task != "anomaly":
        from anoseg.data.scenes import scene_train_dataset

        return scene_train_dataset(rows, job.recipe)
    return SegmentationDataset(_load_with_progress(rows, job), job.recipe.protocol, job.recipe.train.augment)


def _load_with_progress(rows, job: TrainJob):
    from rich.progress import Progress

    folder = dataset_dir(job.output, job.recipe.name, job.generator)
    threshold = prepared_mask_threshold(data_report_path(job.output, job.recipe.name, job.generator))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("decoding images (once)", total=len(rows))
        return load_cached(rows, job.recipe.image_size, folder / "cache", job.recipe.protocol, threshold,
                           progress=lambda done, n: progress.update(task, completed=done))


# Models trained on every image of an epoch, the last partial batch included, as their authors' loaders do
# (LFD: DataLoader(shuffle=True), drop_last left False). They have no BatchNorm behind a global pooling, so even a
# last batch of one image is safe. The other models' reference code drops the partial batch (drop_last=True) and
# anoseg does the same for them: a batch of one breaks BatchNorm behind global pooling.
KEEP_PARTIAL_BATCH = frozenset({"lfd"})


def keeps_partial_batch(model: str, world_size: int = 1) -> bool:
    """Whether training ``model`` keeps the last partial batch of each epoch (single process only; DDP drops it)."""
    return model in KEEP_PARTIAL_BATCH and world_size == 1


def _batches_per_epoch(n: int, batch_size: int, world_size: int, keep_partial: bool = False) -> int:
    """Optimiser steps per epoch (this is also what the cosine schedule's length counts: steps × epochs)."""
    per_rank = n // world_size
    if per_rank < 2:
        raise AnosegError(f"only {n} training images: need at least 2 per device")
    if keep_partial:
        return math.ceil(per_rank / batch_size)
    return max(per_rank // batch_size, 1)


def _loader(dataset, job: TrainJob, epoch: int, fabric) -> torch.utils.data.DataLoader:
    settings = job.recipe.train
    batch_size = min(settings.batch_size, len(dataset) // fabric.world_size)
    workers = settings.workers
    if fabric.world_size > 1:
        sampler = torch.utils.data.DistributedSampler(dataset, fabric.world_size, fabric.global_rank,
                                                      shuffle=True, seed=job.seed, drop_last=True)
        sampler.set_epoch(epoch)
        return torch.utils.data.DataLoader(dataset, batch_size, sampler=sampler, num_workers=workers, drop_last=True)
    generator = torch.Generator().manual_seed(job.seed * 1000 + epoch)  # data order of epoch e = f(seed, e)
    return torch.utils.data.DataLoader(dataset, batch_size, shuffle=True, generator=generator, num_workers=workers,
                                       drop_last=not keeps_partial_batch(job.model),
                                       pin_memory=fabric.device.type == "cuda")


def _meta(job: TrainJob, rows) -> dict:
    recipe = job.recipe
    return {
        "dataset": recipe.name, "task": recipe.task, "generator": job.generator, "trained_on": job.category,
        "categories": sorted(rows["category"].unique()), "image_size": list(recipe.image_size or []),
        "mean": list(recipe.mean), "std": list(recipe.std), "protocol": recipe.protocol, "seed": job.seed,
        "class_names": list(recipe.class_names), "backbone_weights": str(job.backbone_weights),
        "n_train_images": len(rows), "train": {k: (list(v) if isinstance(v, tuple) else v)
                                               for k, v in dataclasses.asdict(recipe.train).items()},
    }


def _save(job: TrainJob, model, optimizer, epoch: int, batches: int, history: list, meta: dict) -> None:
    checkpoint = {"format": FORMAT, "model": job.model, "num_classes": job.recipe.num_classes, "epoch": epoch,
                  "iteration": epoch * batches, "state_dict": model.state_dict(),
                  "optimizer": optimizer.state_dict(), "meta": meta, "history": history}
    settings = job.recipe.train
    if epoch % settings.checkpoint_every == 0 or epoch == settings.epochs or epoch == settings.eval_epoch:
        save_checkpoint(epoch_path(job.run, epoch), {**checkpoint, "optimizer": {}})
    save_checkpoint(job.run / LAST, checkpoint)
    write_json(job.run / "train_history.json", history)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}"), console=console, disable=not enabled)
