"""What an eval of a run reads and writes: which checkpoint it scores, and the metrics record it leaves.

* ``EvalJob``: the run (``RunSpec``) and how to evaluate it; shared by ``evaluate_anomaly`` and ``evaluate_scene``.
* Checkpoint choice: ``load_run_checkpoint`` (``--epoch``, else the recipe's eval epoch, else the last one).
* The metrics record: ``metrics_record`` builds ``metrics.json`` (schema ``anoseg.metrics/1``, docs/schemas.md)
  with the header every task shares (run, seed, variant, checkpoint identity, date), which the evaluators check and
  write as an ``anoseg.runid.EvalRecord``; ``write_percent_csv`` writes ``metrics.csv``
  (the same values in percent, in the papers' table layouts).

Result folders and the thresholds stored in them live in ``anoseg.engine.results``; checkpoint files in
``anoseg.engine.checkpoint``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from anoseg.constants import METRICS_SCHEMA, PROTOCOLS, RESOLUTIONS
from anoseg.engine import results
from anoseg.engine.checkpoint import (
    LAST,
    RunSpec,
    device_kind,
    epoch_path,
    find_checkpoint,
    load_checkpoint,
    resolve_device,
    training_precision,
)
from anoseg.errors import AnosegError
from anoseg.io import NAME_ERRORS, TEXT_ENCODING, write_with
from anoseg.paths import selection_path


@dataclass(frozen=True)
class EvalJob(RunSpec):
    """Evaluate the run of ``model`` trained on ``category`` (or ``all``) of a (dataset, generator) pair."""

    epoch: int | None = None  # None: the recipe's eval_epoch, else the last
    protocol: str | None = None  # None: the recipe's
    device: str = "auto"
    save_scores: bool = False
    overlays: int = 4
    batch_size: int = 8
    resolution: str = RESOLUTIONS[0]  # "model": the network's image size (the papers); "native": each mask's own size
    aupro: bool = False  # also pixel AUPRO (MVTec AD's per-region overlap up to FPR 0.3), off the papers' columns
    select: str | None = None  # "val:<metric>": the kept checkpoint best on the validation split (not with epoch)
    target_fpr: tuple[str, ...] = ()  # operating points "LEVEL:FRACTION" (anoseg.engine.operating.parse_points)
    target_recall: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """The one check of ``--protocol`` (the recipe checks its own ``protocol``)."""
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise AnosegError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")


def load_run_checkpoint(job: EvalJob, notes: list[str] | None = None) -> tuple[Path, dict]:
    """The checkpoint an eval job scores (``--epoch``, else the one ``train --select`` chose (``selection.json``),
    else the recipe's eval epoch, else the last), checked to hold ``job.model`` with the recipe's number of classes.
    ``(path, checkpoint)``.

    A run that stopped before the eval epoch gives its last checkpoint, with a sentence appended to ``notes``.
    Raises ``AnosegError`` when there is no such checkpoint or it holds another model.
    """
    notes = notes if notes is not None else []
    chosen = read_selection(job.run) if job.epoch is None else None
    if chosen is not None:
        path = Path(chosen["path"])
        notes.append(f"evaluating epoch {chosen['epoch']}, chosen at train time by {chosen['metric']} "
                     f"({selection_path(job.run).name})")
    else:
        epoch = job.epoch if job.epoch is not None else job.recipe.train.eval_epoch
        path = _checkpoint_for_epoch(job.run, epoch, notes)
    checkpoint = load_checkpoint(path)
    check_run_checkpoint(job, path, checkpoint)
    return path, checkpoint


def check_run_checkpoint(job: EvalJob, path: Path, checkpoint: dict) -> None:
    """A checkpoint must hold ``job.model`` with the recipe's number of classes; else ``AnosegError``."""
    if checkpoint["model"] != job.model:
        raise AnosegError(f"{path} holds a {checkpoint['model']} model, not {job.model}")
    if checkpoint["num_classes"] != job.recipe.num_classes:
        raise AnosegError(f"{path} predicts {checkpoint['num_classes']} classes; recipe {job.recipe.name} has "
                          f"{job.recipe.num_classes}")
    meta = checkpoint["meta"]
    for key, expected in (("dataset", job.recipe.name), ("generator", job.generator), ("trained_on", job.category)):
        if key in meta and meta[key] != expected:  # a checkpoint copied in from another run
            raise AnosegError(f"{path} was trained with {key} {meta[key]!r}, not {expected!r} as this run "
                              f"({job.run}); it belongs to another run: evaluate that run, or train this one again")


def write_selection(run: Path, record: dict[str, Any]) -> Path:
    """Write a checkpoint-selection record (``metric``, ``epoch``, ``checkpoint`` relative to the run, its
    ``checkpoint_sha256``, ``values`` per epoch) as ``selection.json``, atomically."""
    from anoseg.io import write_json

    path = selection_path(run)
    write_json(path, record)
    return path


def read_selection(run: Path) -> dict[str, Any] | None:
    """The selection ``train --select`` recorded, with ``path`` (the checkpoint file), or None when there is none or
    its checkpoint is gone or has changed since (a later training replaced it)."""
    import json

    try:
        record = json.loads(selection_path(run).read_text(encoding="utf-8"))
        path = Path(run) / record["checkpoint"]
        if path.is_file() and results.file_sha256(path) == record["checkpoint_sha256"]:
            return {**record, "path": str(path)}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def kept_checkpoints(run: Path) -> list[Path]:
    """Every checkpoint of a run, by epoch: the kept ``checkpoints/epoch_NNN.pt``, then ``last.pt`` unless its epoch is
    among them (it holds the same weights). What ``--select`` chooses from."""
    kept = sorted((Path(run) / "checkpoints").glob("epoch_*.pt"))
    last = Path(run) / LAST
    if last.is_file() and epoch_path(run, int(load_checkpoint(last)["epoch"])) not in kept:
        kept.append(last)
    return kept


def _checkpoint_for_epoch(run: Path, epoch: int | None, notes: list[str]) -> Path:
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
        notes.append(f"the run has only {kept} epochs (< eval epoch {epoch}); evaluating the last checkpoint")
        return last


def checkpoint_identity(run: Path, checkpoint_file: Path, checkpoint: dict) -> dict:
    """The keys of metrics.json that name the checkpoint evaluated: its path (relative to the run when inside it),
    the SHA-256 of the file and of the weights (``anoseg.engine.results``)."""
    try:
        name = str(Path(checkpoint_file).resolve().relative_to(Path(run).resolve()))
    except ValueError:
        name = str(checkpoint_file)
    return {"checkpoint": name, "checkpoint_sha256": results.file_sha256(checkpoint_file),
            "weights_sha256": results.weights_sha256(checkpoint)}


def metrics_record(job: EvalJob, checkpoint_file: Path, checkpoint: dict, *, task: str, protocol: str,
                   image_size: Sequence[int], categories: dict, mean: dict, excluded: dict | None = None,
                   warnings: list[str] | None = None, resolution: str | None = None, variant: str = ""
                   ) -> dict[str, Any]:
    """The ``metrics.json`` document of one eval (schema ``anoseg.metrics/1``): the run (with its ``seed`` and the
    evaluation settings' ``variant``, ``anoseg.paths.eval_variant``), how it was trained (the
    checkpoint's precision and device kind, ``None`` where the checkpoint predates that record) and the device this
    eval ran on, the checkpoint's identity, per-category metrics and their mean (fractions), what the mean left out,
    and the warnings."""
    meta = checkpoint.get("meta") or {}
    header: dict[str, Any] = {"schema": METRICS_SCHEMA, "task": task, "dataset": job.recipe.name,
                              "generator": job.generator, "model": job.model, "trained_on": job.category,
                              "seed": job.seed, "variant": variant, "protocol": protocol,
                              "precision": training_precision(meta),
                              "device_kind": meta.get("device_kind"),
                              "eval_device_kind": device_kind(resolve_device(job.device))}
    if resolution is not None:
        header["resolution"] = resolution
    return {**header, "epoch": checkpoint["epoch"], "image_size": list(image_size),
            "created": datetime.now().isoformat(timespec="seconds"),
            **checkpoint_identity(job.run, checkpoint_file, checkpoint),
            "categories": categories, "mean": mean, "mean_excluded": excluded or {}, "warnings": warnings or []}


def percent(value: float | None) -> float | None:
    """A fraction as a percentage rounded to 2 decimals (None stays None: an undefined metric)."""
    return None if value is None else round(100 * value, 2)


def write_percent_csv(path: Path, columns: Mapping[str, Mapping[str, float | None]], index_name: str) -> None:
    """``metrics.csv``: ``columns`` (column → row → fraction) as a table of percentages, written atomically."""
    import pandas as pd

    table = pd.DataFrame({column: {row: percent(value) for row, value in rows.items()}
                          for column, rows in columns.items()})
    table.index.name = index_name
    write_with(path, lambda tmp: table.to_csv(tmp, encoding=TEXT_ENCODING, errors=NAME_ERRORS))


def order_categories(categories: Iterable[str], recipe_order: Sequence[str]) -> list[str]:
    """Distinct categories in the recipe's order; unknown ones after, alphabetically."""
    rank = {name: i for i, name in enumerate(recipe_order)}
    return sorted(set(categories), key=lambda c: (rank.get(c, len(rank)), c))
