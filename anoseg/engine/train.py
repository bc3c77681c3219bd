"""``anoseg train``: fit a segmenter on a manifest's train split with Lightning Fabric (CPU, one GPU, or DDP).

Reproducible and resumable by construction: the data order and dropout of epoch ``e`` depend only on ``(seed, e)``,
and ``last.pt`` is written atomically after every epoch, so ``--resume`` after an interruption (Ctrl-C included)
reaches the same weights as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anoseg import models
from anoseg.constants import ANOMALY, CHECKPOINT_FORMAT, DEFAULT_PRECISION, PRECISION_AUTO
from anoseg.data.dataset import SegmentationDataset, load_cached, normalize
from anoseg.data.manifest import prepared_mask_threshold, read_manifest, select_rows
from anoseg.engine import curves, rundir
from anoseg.engine.checkpoint import (
    LAST,
    RunSpec,
    device_kind,
    epoch_path,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    training_precision,
)
from anoseg.errors import AnosegError, Interrupted
from anoseg.io import check_output, check_removable, name_bytes, write_json
from anoseg.log import console
from anoseg.losses import build_loss
from anoseg.models.weights import weights_provenance
from anoseg.paths import data_report_path, dataset_dir, manifest_path


@dataclass(frozen=True)
class TrainJob(RunSpec):
    """One training run: a model on one category (or ``all`` = the unified model) of a (dataset, generator) pair."""

    device: str = "auto"
    devices: int = 1
    precision: str | None = None  # None: DEFAULT_PRECISION for a new run, a resumed run's own; see resolve_precision
    backbone_weights: str = "none"
    resume: bool = False
    fresh: bool = False
    resume_epochs: int | None = None  # with resume: the epoch count to extend the run to (None = the run's own)
    # the authors' numerics: contiguous (NCHW) tensors and for-loop SGD, as the step-parity trace was recorded
    # (the default uses channels-last tensors and multi-tensor SGD steps: same maths, other summation order)
    paper_numerics: bool = False
    compile: bool = False  # torch.compile the model (opt-in: compiling costs more than a short run saves)
    logger: str = "csv"  # "csv", or "tensorboard" (CSV as well); per-iteration loss, lr, images/s

    def __post_init__(self) -> None:
        """The one check of ``--resume`` with ``--fresh`` (every caller builds a job before anything is touched)."""
        if self.resume and self.fresh:
            raise AnosegError("--resume and --fresh contradict each other: --resume continues the run, --fresh "
                              "replaces it")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: a CUDA GPU with bf16, or a CPU with AMX / AVX-512 BF16 (oneDNN)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def resolve_precision(precision: str | None, device: torch.device, paper_numerics: bool = False) -> str:
    """The Lightning precision of a new run: ``None`` (not given) → ``DEFAULT_PRECISION`` (fp32, the same numbers
    on every machine); ``auto`` → ``bf16-mixed`` where the device runs bf16 natively (LFD
    trains ~1.35× faster on an AMX CPU at the same accuracy over seeds, docs/training.md), ``16-mixed`` on CUDA
    without bf16, else ``32-true``; always ``32-true`` with ``paper_numerics``. Other names are returned as given.

    ``64-true`` is also accepted with ``paper_numerics``: the authors' maths in float64, whose summation-order noise
    (~1e-12) no longer depends on the CPU's instruction set or thread count (the step-parity test, docs/parity.md).

    Raises ``AnosegError`` for a reduced precision with ``paper_numerics`` (the authors trained in fp32: the pair
    would record numerics that are neither), and for ``16-mixed`` off CUDA (Lightning would train in bf16 instead,
    and the run would record a precision it did not use).
    """
    if paper_numerics:
        if precision not in (None, PRECISION_AUTO, "32-true", "64-true"):
            raise AnosegError(f"--paper-numerics trains in fp32 as the authors did; drop --precision {precision} or "
                              "use --precision 32-true")
        return "64-true" if precision == "64-true" else "32-true"
    if precision == "16-mixed" and device.type != "cuda":
        raise AnosegError(f"--precision 16-mixed (fp16 autocast) needs a CUDA GPU, not {device.type}; use "
                          "--precision bf16-mixed or 32-true")
    if precision is None:
        return DEFAULT_PRECISION
    if precision != PRECISION_AUTO:
        return precision
    if native_bf16(device):
        return "bf16-mixed"
    return "16-mixed" if device.type == "cuda" else "32-true"


def cosine_lr(iteration: int, total: int, base_lr: float, min_lr: float) -> float:
    """LFD's per-iteration cosine decay from ``base_lr`` (first iteration) towards ``min_lr``, no warm-up."""
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * iteration / total))


def scheduled_lr(iteration: int, total: int, base_lr: float, min_lr: float, warmup: int = 0) -> float:
    """The learning rate of step ``iteration`` (0-based) of ``total``: ``warmup`` linear steps, then the cosine.

    Warm-up rises linearly to ``base_lr`` (step i gets ``base_lr·(i+1)/warmup``), as in Goyal et al. 2017,
    "Accurate, Large Minibatch SGD"; the cosine then spans the remaining ``total - warmup`` steps, so the run ends
    at the same lr with or without warm-up. ``warmup = 0`` is LFD's schedule exactly (``cosine_lr``).
    """
    if iteration < warmup:
        return base_lr * (iteration + 1) / warmup
    return cosine_lr(iteration - warmup, total - warmup, base_lr, min_lr)


def train(job: TrainJob) -> Path:
    """Train ``job.model`` and return its run directory (checkpoints, ``last.pt``, ``train_history.json``).

    Everything is checked before the run folder is touched (device, manifest, resume settings, writability); the
    folder is locked while training; ``--fresh`` keeps the old run until the new one has saved its first epoch
    (see ``anoseg.engine.rundir``). Raises ``AnosegError`` (user errors, a non-finite loss) and ``Interrupted``
    (Ctrl-C), both saying what was kept.
    """
    device = resolve_device(job.device, job.devices)  # a wrong or absent device fails before anything is touched
    precision = resolve_precision(job.precision, device, job.paper_numerics)  # refuses --paper-numerics + bf16
    if not job.resume:  # a resumed run keeps the precision it was trained with (_prepare_run_dir)
        job = dataclasses.replace(job, precision=precision)
    manifest = read_manifest(manifest_path(job.output, job.recipe.name, job.generator))
    rows = select_rows(manifest, "train", job.category)
    worker = rundir.is_worker_process()  # DDP ranks > 0 re-run the command: rank 0 alone manages the folder
    with nullcontext() if worker else rundir.run_lock(job.run):
        state = _prepare_run_dir(job, rows, manage=not worker)
        try:
            return fit(state, rows)
        except BaseException:
            state.rollback()
            raise


@dataclass
class Trainer:
    """What ``setup`` builds for a run: the Fabric, the model (plain and Fabric-wrapped), optimiser, loss and data."""

    fabric: Any
    model: torch.nn.Module
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer
    criterion: torch.nn.Module
    dataset: torch.utils.data.Dataset
    loader: torch.utils.data.DataLoader  # one for the whole run: its workers persist, its sampler is set per epoch
    batches: int  # optimiser steps per epoch
    total: int  # steps of the whole run: the cosine schedule's length
    meta: dict[str, Any]


def fit(state: RunState, rows) -> Path:
    """``setup``, then ``train_one_epoch`` and ``save_epoch`` from the run's start epoch to its last."""
    job, settings = state.job, state.job.recipe.train
    trainer = setup(state, rows)
    progress = _progress(trainer.fabric.global_rank == 0)
    task = progress.add_task("train", total=trainer.total, completed=state.start_epoch * trainer.batches, status="")
    try:
        with progress, _default_dtype(torch.float64 if job.precision == "64-true" else None):
            for epoch in range(state.start_epoch, settings.epochs):
                state.history.append(train_one_epoch(trainer, job, state, epoch,
                                                     lambda **kw: progress.update(task, advance=1, **kw)))
                if trainer.fabric.global_rank == 0:
                    save_epoch(trainer, job, epoch + 1, state.history)
                    state.saved(epoch + 1)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {state.kept()}") from None
    return job.run


@contextmanager
def _default_dtype(dtype: torch.dtype | None):
    """Train under this default dtype (None: leave it). Fabric's ``64-true`` casts the model's outputs back to the
    default dtype: under float32 the loss of a float64 run would see rounded logits."""
    if dtype is None:
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def setup(state: RunState, rows) -> Trainer:
    """Launch Fabric and build the dataset, model (resumed weights loaded), SGD optimiser and the model's loss."""
    from lightning.fabric import Fabric

    job, previous = state.job, state.previous
    recipe, settings = job.recipe, job.recipe.train
    dataset = _train_dataset(rows, job)
    accelerator = "cpu" if job.device == "cpu" else ("cuda" if job.device.startswith("cuda") else "auto")
    fabric = Fabric(accelerator=accelerator, devices=job.devices, precision=job.precision,
                    loggers=curves.train_loggers(job.run, job.logger))
    fabric.launch()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(job.seed)
    model = models.create_model(job.model, num_classes=recipe.num_classes, backbone_weights=job.backbone_weights)
    fast = not job.paper_numerics
    if fast:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay, **_sgd_implementation(fast, fabric.device))
    if previous is not None:
        model.load_state_dict(previous["state_dict"])
    criterion = build_loss(job.model, thresh=settings.ohem_thresh, min_kept=settings.ohem_min_kept,
                           class_weights=settings.class_weights, ignore_index=recipe.ignore_index)
    wrapped, optimizer = fabric.setup(model, optimizer)
    if previous is not None:
        # after setup: load_state_dict puts the momentum buffers on the parameters' device, now the GPU's (loaded
        # before, they stayed on the CPU, where a CUDA step cannot use them)
        optimizer.load_state_dict(previous["optimizer"])
    if job.compile:
        wrapped = torch.compile(wrapped)
    loader = _loader(dataset, job, state.start_epoch, fabric)
    batches = _batches_per_epoch(len(dataset), settings.batch_size, fabric.world_size,
                                 keeps_partial_batch(job.model, fabric.world_size))
    if settings.warmup_iters >= batches * settings.epochs:
        raise AnosegError(f"train.warmup_iters {settings.warmup_iters} must be below the run's "
                          f"{batches * settings.epochs} steps ({batches} per epoch × {settings.epochs} epochs)")
    meta = {**_meta(job, rows), **state.meta_extra}
    # what the backbone really holds (a resumed run keeps its first start's record: its weights came from there)
    meta["backbone_weights"] = (previous["meta"].get("backbone_weights", meta["backbone_weights"]) if previous
                                else weights_provenance(model, job.backbone_weights))
    meta["device_kind"] = _device_history(previous["meta"] if previous else None, device_kind(fabric.device))
    return Trainer(fabric, model, wrapped, optimizer, criterion.to(fabric.device), dataset, loader, batches,
                   batches * settings.epochs, meta)


def train_one_epoch(trainer: Trainer, job: TrainJob, state: RunState, epoch: int,
                    report: Callable[..., None]) -> dict[str, Any]:
    """One pass over the epoch's batches (order and dropout = f(seed, epoch)); returns its ``train_history`` entry.

    ``report(description=..., status=...)`` is called after every step (the progress bar).
    """
    settings, fabric, optimizer = job.recipe.train, trainer.fabric, trainer.optimizer
    _set_epoch(trainer.loader, epoch)
    loader = fabric.setup_dataloaders(trainer.loader, use_distributed_sampler=False, move_to_device=True)
    torch.manual_seed(job.seed * 1000 + epoch)  # dropout (and augmentation seeds) of epoch e depend only on (seed, e)
    trainer.wrapped.train()
    memory_format = torch.contiguous_format if job.paper_numerics else torch.channels_last
    started, loss_sum, seen, lr = time.perf_counter(), 0.0, 0, settings.lr
    for step, (images, targets) in enumerate(loader):
        lr = scheduled_lr(epoch * trainer.batches + step, trainer.total, settings.lr, settings.min_lr,
                          settings.warmup_iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs = normalize(images, job.recipe.mean, job.recipe.std).contiguous(memory_format=memory_format)
        loss = trainer.criterion(trainer.wrapped(inputs), targets)
        _stop_if_not_finite(loss, fabric, state, epoch, step, lr)
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(loss)
        optimizer.step()
        value, elapsed = loss.item(), time.perf_counter() - started
        loss_sum, seen = loss_sum + value * len(images), seen + len(images)
        fabric.log_dict({"loss": value, "lr": lr, "images_per_s": seen / elapsed, "epoch": epoch + 1},
                        step=epoch * trainer.batches + step + 1)
        report(description=f"epoch {epoch + 1}/{settings.epochs}",
               status=f"loss {loss_sum / seen:.4f}  lr {lr:.5f}  {seen / elapsed:.1f} img/s")
    curves.flush(fabric)
    return {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "lr": lr,
            "images_per_s": seen / (time.perf_counter() - started)}


@dataclass
class RunState:
    """A run folder ready for training: where to start, and what to undo if the new run fails before saving."""

    job: TrainJob
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    previous: dict[str, Any] | None = None
    meta_extra: dict[str, Any] = field(default_factory=dict)
    swap: rundir.FreshSwap | None = None
    created: bool = False  # the run folder did not exist before this command
    last_saved: int | None = None

    def saved(self, epoch: int) -> None:
        """An epoch's checkpoint is on disk: the new run now replaces the old one."""
        self.last_saved = epoch
        if self.swap is not None:
            self.swap.commit()

    def rollback(self) -> None:
        """Nothing saved yet: put back the run that --fresh moved aside, or remove the folder this command made."""
        if self.last_saved is not None:
            return
        if self.swap is not None and self.swap.rollback():
            return
        if self.created:
            import shutil

            shutil.rmtree(self.job.run, ignore_errors=True)

    def kept(self) -> str:
        """What the run folder holds after a failure, for the one-line message."""
        last = self.job.run / LAST
        if self.last_saved is not None or self.start_epoch:
            return f"epoch {self.last_saved or self.start_epoch} is saved in {last}; continue with --resume"
        if self.swap is not None and self.swap.active:
            return f"the previous run in {self.job.run} is kept unchanged"
        return "no epoch was completed, nothing was saved"


def _prepare_run_dir(job: TrainJob, rows, manage: bool = True) -> RunState:
    """Refuse to clobber an earlier run, check ``--resume`` against the run's settings, and make the folder ready.

    With ``manage`` (the lock holder): repair a crashed ``--fresh``, delete stale temp files, check that the output
    is writable and, for ``--fresh``, move the old run aside. Nothing is changed before every check has passed.
    """
    import os

    last = job.run / LAST
    if manage:
        note = rundir.recover_replaced_run(job.run, LAST)
        if note:
            console.print(note)
        rundir.remove_stale_temp_files(job.run)
    if job.resume:
        if not last.is_file():
            raise AnosegError(f"--resume: no interrupted run in {job.run}")
        previous = load_checkpoint(last)
        if not previous.get("optimizer"):  # an epoch checkpoint copied over last.pt, or a hand-made file
            raise AnosegError(f"--resume: {last} holds no optimiser state (only last.pt written by `anoseg train` "
                              "does); start a new run with --fresh")
        if job.precision in (None, PRECISION_AUTO):  # not given, or auto: the run keeps the precision it started in
            job = dataclasses.replace(job, precision=training_precision(previous["meta"]))
        if previous["model"] != job.model or previous["num_classes"] != job.recipe.num_classes:
            raise AnosegError(f"--resume: {last} holds a {previous['model']} model, not {job.model}")
        plan = rundir.plan_resume(previous, _meta(job, rows), job.resume_epochs, last)
        job = dataclasses.replace(job, recipe=job.recipe.override(train__epochs=plan.epochs))
        extended = list(previous["meta"].get("epochs_extended", []))
        if plan.extended_from is not None:
            extended.append({"at_epoch": plan.start_epoch, "from": plan.extended_from, "to": plan.epochs})
            plan.history[-1] = {**plan.history[-1], "epochs_extended_to": plan.epochs}
        state = RunState(job, plan.start_epoch, plan.history, previous,
                         {"epochs_extended": extended} if extended else {})
    else:
        if last.is_file() and not job.fresh:
            raise AnosegError(f"{job.run} already holds a trained model; pass --resume to continue it or --fresh "
                              "to replace it")
        state = RunState(job, created=not job.run.exists())
    if not manage:
        return state
    checkpoints = job.run / "checkpoints"
    for folder in (job.run.parent, job.run, checkpoints):
        if folder.exists():
            if not folder.is_dir():
                raise AnosegError(f"cannot write the run: {folder} is a file, not a folder")
            rundir.check_writable(folder)
    if job.resume:  # the files a resumed run replaces or appends to (a fresh one writes into a new folder)
        for written in (last, job.run / "train_history.json"):
            check_output(written)
        curves.check_log(curves.log_file(job.run, curves.TRAIN_LOG))
    if job.fresh and job.run.is_dir():
        check_removable(job.run)  # the old run is deleted after the new one's first epoch
    if job.fresh:
        state.swap = rundir.FreshSwap(job.run)
        state.swap.begin()
    try:
        os.makedirs(checkpoints, exist_ok=True)
    except OSError as exc:
        state.rollback()
        raise AnosegError(f"cannot create {checkpoints}: {exc.strerror}; choose a writable --output") from None
    return state


def _device_history(previous: dict[str, Any] | None, kind: str) -> str:
    """``meta.device_kind`` of a run continuing on a device of ``kind``: ``kind``, or the earlier kinds and this one
    joined with `` + `` when a resumed run moved machines (``unrecorded`` for a start older than the field)."""
    if previous is None:
        return kind
    kinds = str(previous.get("device_kind") or "unrecorded").split(" + ")
    return " + ".join(kinds if kind in kinds else [*kinds, kind])


def _stop_if_not_finite(loss: torch.Tensor, fabric, state: RunState, epoch: int, step: int, lr: float) -> None:
    """Stop at the first NaN/inf loss (every rank agrees under DDP): training on would only save broken weights."""
    bad = not bool(torch.isfinite(loss.detach()).all())
    if fabric.world_size > 1:
        bad = bool(fabric.all_reduce(torch.tensor(float(bad), device=fabric.device), reduce_op="sum") > 0)
    if bad:
        raise AnosegError(f"training stopped: the loss is {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                          f"(lr {lr:.3g}); {state.kept()}; try a lower --lr")


def _train_dataset(rows, job: TrainJob) -> torch.utils.data.Dataset:
    """Anomaly recipes: resized arrays from the cache. Road/scene recipes: native-size images with scale/crop."""
    if job.recipe.task != ANOMALY:
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


class EpochSampler(torch.utils.data.Sampler[int]):
    """A random permutation per epoch drawn from ``torch.Generator().manual_seed(seed · 1000 + epoch)``.

    The same order as ``DataLoader(shuffle=True)`` with that generator, but one sampler (and loader, and worker
    pool) serves the whole run: ``set_epoch(e)`` before iterating, as ``DistributedSampler``.
    """

    def __init__(self, n: int, seed: int, epoch: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)  # data order of epoch e = f(seed, e)
        # DataLoader(shuffle=True, generator=g) first drew its workers' base seed from g: the same draw keeps the
        # order (and so the weights) of runs trained before this sampler existed
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        yield from torch.randperm(self.n, generator=generator).tolist()


def _loader(dataset, job: TrainJob, epoch: int, fabric) -> torch.utils.data.DataLoader:
    """The run's data loader, its sampler set to ``epoch``; later epochs call ``_set_epoch`` on the same loader.

    Its workers persist across epochs (no respawn) unless the recipe augments: augmentations draw from each worker's
    RNG, which is seeded when the workers start, so they restart every epoch from the (seed, epoch)-seeded global RNG.
    """
    settings = job.recipe.train
    batch_size = min(settings.batch_size, len(dataset) // fabric.world_size)
    workers = settings.workers
    persistent = workers > 0 and not settings.augment
    if fabric.world_size > 1:
        sampler = torch.utils.data.DistributedSampler(dataset, fabric.world_size, fabric.global_rank,
                                                      shuffle=True, seed=job.seed, drop_last=True)
        drop_last = True
    else:
        sampler, drop_last = EpochSampler(len(dataset), job.seed), not keeps_partial_batch(job.model)
    sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(dataset, batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                                       persistent_workers=persistent, pin_memory=fabric.device.type == "cuda")


def _set_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    for sampler in (loader.batch_sampler, loader.sampler):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
            return


def _sgd_implementation(fast: bool, device: torch.device) -> dict[str, bool]:
    """SGD's step kernel: the authors' per-parameter loop for the paper numerics; otherwise the fused kernel on
    CUDA and the multi-tensor (foreach) one elsewhere."""
    if not fast:
        return {"foreach": False}
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def _rows_digest(rows) -> str:
    """SHA-256 of the train rows (category, defect, label, image and mask paths relative to the data root): a
    resumed run refuses data that changed since it started (``anoseg.engine.rundir.plan_resume``). Relative paths
    keep a moved or copied project resumable."""
    import hashlib

    lines = []
    for row in rows.itertuples(index=False):
        image = os.path.relpath(row.image, row.root) if row.root else row.image
        mask = os.path.relpath(row.mask, row.root) if row.root and row.mask else row.mask
        lines.append(f"{row.category}\t{row.defect}\t{row.label}\t{image}\t{mask}")
    return hashlib.sha256(name_bytes("\n".join(sorted(lines)))).hexdigest()


def _meta(job: TrainJob, rows) -> dict:
    recipe = job.recipe
    return {
        "dataset": recipe.name, "task": recipe.task, "generator": job.generator, "trained_on": job.category,
        "categories": sorted(rows["category"].unique()), "image_size": list(recipe.image_size or []),
        "mean": list(recipe.mean), "std": list(recipe.std), "protocol": recipe.protocol, "seed": job.seed,
        "class_names": list(recipe.class_names), "backbone_weights": str(job.backbone_weights),
        "precision": job.precision, "devices": job.devices, "paper_numerics": job.paper_numerics,
        "train_data_sha256": _rows_digest(rows),
        "n_train_images": len(rows), "train": {k: (list(v) if isinstance(v, tuple) else v)
                                               for k, v in dataclasses.asdict(recipe.train).items()},
    }


def save_epoch(trainer: Trainer, job: TrainJob, epoch: int, history: list) -> None:
    """Write ``last.pt`` (with the optimiser state), the kept ``checkpoints/epoch_NNN.pt`` when due, and
    ``train_history.json``; each atomically."""
    _save(job, trainer.model, trainer.optimizer, epoch, trainer.batches, history, trainer.meta)


def _save(job: TrainJob, model, optimizer, epoch: int, batches: int, history: list, meta: dict) -> None:
    checkpoint = {"format": CHECKPOINT_FORMAT, "model": job.model, "num_classes": job.recipe.num_classes,
                  "epoch": epoch, "iteration": epoch * batches, "state_dict": model.state_dict(),
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
