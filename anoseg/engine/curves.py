"""Training curves through Lightning Fabric's loggers: what ``train`` logs per iteration and ``eval`` per checkpoint.

Layout inside a run folder (``<run>/logs/``):

- ``csv/metrics.csv``: one row per optimiser step, columns ``step`` (global iteration, from 1), ``epoch``, ``loss``
  (the batch's loss), ``lr``, ``images_per_s`` (the epoch's running mean). Always written.
- ``tensorboard/``: the same scalars as event files, with ``--logger tensorboard`` (needs ``tensorboard`` or
  ``tensorboardX`` installed).
- ``eval/metrics.csv``: one row per evaluated checkpoint, ``step`` = its epoch, the mean of every metric.

A resumed run appends to the same files; rows of an epoch that was interrupted before it was saved are logged twice,
and readers keep the last row of each step (``read_loss_curve``).
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any

LOGGERS = ("csv", "tensorboard")
LOG_DIR = "logs"
TRAIN_LOG, EVAL_LOG = "csv", "eval"  # <run>/logs/<version>/metrics.csv


def log_file(run: Path, version: str) -> Path:
    """``<run>/logs/<version>/metrics.csv``: the training log (``TRAIN_LOG``) or the eval curve (``EVAL_LOG``)."""
    return run / LOG_DIR / version / "metrics.csv"


def check_log(path: Path) -> None:
    """Refuse a log that a resumed ``train`` or another ``eval`` would append to, before their work starts: an
    ``AnosegError`` naming it when it cannot be written (``anoseg.io.check_output``) or is no CSV log (a header with
    ``step``, no row longer than the header: truncated or edited by hand)."""
    from anoseg.io import check_output, damaged

    check_output(path)
    if not path.is_file():
        return
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = csv.reader(file)
            header = next(rows, [])
            fits = "step" in header and all(len(row) <= len(header) for row in rows)
    except (OSError, UnicodeDecodeError, csv.Error):
        fits = False
    if not fits:
        raise damaged(path, "not a CSV log with a step column", "move it away or delete it (a curve log only: the "
                      "checkpoints and results do not depend on it), then run the command again")


def train_loggers(run: Path, logger: str = "csv") -> list[Any]:
    """Fabric loggers for a training run: CSV always, TensorBoard too when ``logger == "tensorboard"``.

    Raises ``AnosegError`` when TensorBoard is asked for and neither ``tensorboard`` nor ``tensorboardX`` is installed.
    """
    from anoseg.errors import AnosegError

    if logger not in LOGGERS:
        raise AnosegError(f"unknown logger {logger!r}; choose from {', '.join(LOGGERS)}")
    loggers: list[Any] = [_appending_csv_logger(run, TRAIN_LOG, flush_logs_every_n_steps=50)]
    if logger == "tensorboard":
        from lightning.fabric.loggers import TensorBoardLogger

        try:
            loggers.append(TensorBoardLogger(root_dir=str(run), name=LOG_DIR, version="tensorboard",
                                             default_hp_metric=False))
        except ModuleNotFoundError:
            raise AnosegError("--logger tensorboard needs the tensorboard package: pip install tensorboard") from None
    return loggers


def flush(fabric) -> None:
    """Write buffered rows to disk (at each epoch's end, so an interrupted run keeps the curves of its saved epochs)."""
    for logger in fabric.loggers:
        logger.save()


def log_eval_metrics(run: Path, epoch: int, metrics: dict[str, float]) -> None:
    """Append one evaluated checkpoint's mean metrics (fractions) to ``<run>/logs/eval/metrics.csv`` (step = epoch)."""
    values = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(float(v))}
    logger = _appending_csv_logger(run, EVAL_LOG)
    logger.log_metrics({**values, "epoch": epoch}, step=epoch)
    logger.finalize("success")


def _appending_csv_logger(run: Path, version: str, **kwargs):
    """Fabric's ``CSVLogger`` writing ``<run>/logs/<version>/metrics.csv``, appending to an existing file.

    Lightning deletes a metrics file it finds when its writer starts (with a warning); a resumed run or a second
    evaluated checkpoint must add rows instead, so the file is put back and its columns are handed to the writer.
    """
    from lightning.fabric.loggers import CSVLogger
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    logger = CSVLogger(root_dir=str(run), name=LOG_DIR, version=version, **kwargs)
    if getattr(rank_zero_only, "rank", 0) != 0:
        return logger  # other DDP ranks write nothing
    path = log_file(run, version)
    kept = path.read_bytes() if path.is_file() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "... will be deleted": handled here
        writer = logger.experiment
    if kept:
        path.write_bytes(kept)
        with open(path, newline="") as file:
            writer.metrics_keys = sorted(next(csv.reader(file), []))
    return logger


def read_loss_curve(run: Path) -> tuple[list[int], list[float]]:
    """The per-iteration training loss of a run as (steps, losses), last row per step wins; empty lists if none."""
    path = log_file(run, TRAIN_LOG)
    if not path.is_file():
        return [], []
    by_step: dict[int, float] = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            try:
                by_step[int(float(row["step"]))] = float(row["loss"])
            except (KeyError, TypeError, ValueError):
                continue  # a row without a loss (another metric logged alone)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]
