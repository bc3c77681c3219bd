"""Checkpoints: what a run saves, where, and how it is read back (always with ``weights_only=True``).

A checkpoint is a plain dict of tensors and JSON-like values::

    {"format": "anoseg.checkpoint/1", "model": "lfd", "num_classes": 2, "epoch": 10, "iteration": 120,
     "state_dict": ..., "optimizer": ..., "meta": {dataset, generator, trained_on, categories, image_size, mean, std,
     protocol, seed, ...}, "history": [{"epoch", "loss", "lr", "images_per_s"}, ...]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from anoseg.constants import ALL_CATEGORIES, CHECKPOINT_FORMAT, NO_GENERATOR
from anoseg.errors import AnosegError
from anoseg.io import write_with
from anoseg.paths import DEFAULT_SEED, run_dir
from anoseg.recipes import Recipe

LAST = "last.pt"


@dataclass(frozen=True)
class RunSpec:
    """Which run: ``model`` trained on ``category`` (or ``all`` = the unified model) of a (dataset, generator) pair,
    with ``seed``."""

    recipe: Recipe
    model: str
    category: str = ALL_CATEGORIES
    generator: str = NO_GENERATOR
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
    with open(path, "rb") as handle:
        magic = handle.read(4)
    # torch.save writes a zip archive; anything else (a text file, an image) gives torch errors like "…: 101"
    if magic != b"PK\x03\x04":
        raise AnosegError(f"{path} is not a checkpoint file (not written by torch.save); give a .pt file written by "
                          "`anoseg train`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
        raise AnosegError(f"cannot read checkpoint {path} (damaged or foreign file): {reason}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise AnosegError(f"{path} is not an anoseg checkpoint")
    try:
        check_checkpoint(checkpoint)
    except (ValueError, TypeError, KeyError) as exc:
        reason = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise AnosegError(f"{path} is not a complete anoseg checkpoint ({reason}); use a checkpoint written by "
                          "`anoseg train`, or train again") from None
    bad = non_finite_tensors(checkpoint.get("state_dict") or {})
    if bad:
        raise AnosegError(f"{path} holds non-finite weights ({len(bad)} tensor(s), e.g. {bad[0]}): the training "
                          "diverged; train again with a lower --lr")
    return checkpoint


def check_checkpoint(checkpoint: dict[str, Any]) -> None:
    """The keys every reader of a checkpoint uses, with their types (module docstring); ``ValueError`` naming the
    first one missing or wrong (a checkpoint without ``meta``, a hand-made or foreign dict)."""
    _need(isinstance(checkpoint.get("model"), str) and checkpoint["model"], "'model' is not a model name")
    _need(_whole(checkpoint.get("num_classes"), 1), "'num_classes' is not a positive whole number")
    _need(_whole(checkpoint.get("epoch"), 0), "'epoch' is not a whole number")
    state = checkpoint.get("state_dict")
    _need(isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()),
          "'state_dict' holds no tensors")
    _need(isinstance(checkpoint.get("meta"), dict), "no 'meta' (what the model was trained on)")
    check_preprocessing(checkpoint["meta"])
    for key in ("dataset", "generator", "trained_on"):
        _need(isinstance(checkpoint["meta"].get(key, ""), str), f"meta {key!r} is not a name")
    _need(isinstance(checkpoint.get("history", []), list), "'history' is not a list")
    _need(isinstance(checkpoint.get("optimizer", {}), dict), "'optimizer' is not a state dict")


def check_preprocessing(meta: dict[str, Any]) -> None:
    """``image_size`` (``[]`` = native resolution, or ``[H, W]``), ``mean`` and ``std`` (one number per channel, std
    > 0) of a checkpoint's ``meta`` or an export sidecar; ``ValueError`` naming the key that is missing or wrong."""
    size = meta.get("image_size")
    _need(isinstance(size, list) and len(size) in (0, 2) and all(_whole(s, 1) for s in size),
          f"'image_size' {size!r} is not [] or [H, W]")
    for key, low in (("mean", float("-inf")), ("std", 0.0)):
        values = meta.get(key)
        _need(isinstance(values, list) and len(values) == 3 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > low for v in values),
            f"{key!r} {values!r} is not three numbers" + (" above 0" if low == 0.0 else ""))


def _need(condition: Any, reason: str) -> None:
    if not condition:
        raise ValueError(reason)


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` that hold a NaN or an infinity."""
    return [name for name, value in state_dict.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]


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

    name = checkpoint["model"]
    model = create_model(name, num_classes=checkpoint["num_classes"])
    expected = model.state_dict()
    given = checkpoint["state_dict"]
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    resized = [k for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or resized:
        # a summary, not torch's message: that lists every key (kilobytes on one line)
        example = (missing or unexpected or resized)[0]
        raise AnosegError(
            f"checkpoint weights do not fit model {name!r} with {checkpoint['num_classes']} classes "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(resized)} resized tensors, e.g. {example!r}):"
            f" the file holds another model's weights than the {name!r} it names; use the checkpoint of a {name} run")
    model.load_state_dict(given)
    return model.eval()


def resolve_device(device: str, devices: int = 1) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:N`` as given. The same rule in every command.

    Raises ``AnosegError`` for another name, for CUDA on a machine without it, for an absent ``cuda:N``, and for
    more ``devices`` than there are GPUs.
    """
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise AnosegError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AnosegError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
        count = torch.cuda.device_count()
        index = int(device.partition(":")[2] or 0)
        if index >= count or (devices > count):
            raise AnosegError(f"--device {device} --devices {devices}: this machine has {count} GPU(s)")
    return torch.device(device)
