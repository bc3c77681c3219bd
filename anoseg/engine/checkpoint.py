"""Checkpoints: what a run saves, where, and how it is read back (always with ``weights_only=True``).

A checkpoint is a plain dict of tensors and JSON-like values::

    {"format": "anoseg.checkpoint/1", "model": "lfd", "num_classes": 2, "epoch": 10, "iteration": 120,
     "state_dict": ..., "optimizer": ..., "meta": {dataset, generator, trained_on, categories, image_size, mean, std,
     protocol, seed, ...}, "history": [{"epoch", "loss", "lr", "images_per_s"}, ...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from anoseg.errors import AnosegError
from anoseg.io import write_with
from anoseg.paths import ALL_CATEGORIES, DEFAULT_SEED, run_dir
from anoseg.recipes import Recipe

FORMAT = "anoseg.checkpoint/1"
LAST = "last.pt"


@dataclass(frozen=True)
class RunSpec:
    """Which run: ``model`` trained on ``category`` (or ``all`` = the unified model) of a (dataset, generator) pair,
    with ``seed``."""

    recipe: Recipe
    model: str
    category: str = ALL_CATEGORIES
    generator: str = "none"
    output: Path = Path("outputs")
    seed: int = DEFAULT_SEED

    @property
    def run(self) -> Path:
        """The run directory (checkpoints, metrics, scores, overlays)."""
        return run_dir(self.output, self.recipe.name, self.generator, self.model, self.category, self.seed)


def epoch_path(run: Path, epoch: int) -> Path:
    """The kept checkpoint of one epoch."""
    return run / "checkpoints" / f"epoch_{epoch:03d}.pt"


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically: an interruption leaves the previous file intact."""
    write_with(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint written by ``anoseg train``."""
    path = Path(path)
    if not path.is_file():
        raise AnosegError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise AnosegError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise AnosegError(f"{path} is not an anoseg checkpoint")
    return checkpoint


def find_checkpoint(run: Path, epoch: int | None = None) -> Path:
    """The checkpoint of ``epoch`` in a run directory, or the last one when ``epoch`` is None."""
    path = run / LAST if epoch is None else epoch_path(run, epoch)
    if path.is_file():
        return path
    kept = sorted(p.stem.removeprefix("epoch_") for p in (run / "checkpoints").glob("epoch_*.pt"))
    if not kept and not (run / LAST).is_file():
        raise AnosegError(f"no checkpoint in {run}; run `anoseg train` first")
    raise AnosegError(f"no checkpoint for epoch {epoch} in {run}; kept epochs: {', '.join(kept) or 'none'}")


def build_model(checkpoint: dict[str, Any]) -> nn.Module:
    """The model a checkpoint describes, with its weights loaded (eval mode, on the CPU)."""
    from anoseg.models import create_model

    model = create_model(checkpoint["model"], num_classes=checkpoint["num_classes"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise AnosegError(
            f"checkpoint weights do not fit model {checkpoint['model']!r}: {str(exc).splitlines()[1].strip()}"
        ) from None
    return model.eval()


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:N`` as given (CUDA must exist)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AnosegError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise AnosegError(f"--device {device!r} is not a device; use auto, cpu or cuda") from None
