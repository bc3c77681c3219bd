"""Checkpoints: what a run saves, where, and how it is read back (always with ``weights_only=True``).

A checkpoint is a plain dict of tensors and JSON-like values::

    {"format": "anoseg.checkpoint/1", "model": "lfd", "num_classes": 2, "epoch": 10, "iteration": 120,
     "state_dict": ..., "optimizer": ..., "meta": {dataset, generator, trained_on, categories, image_size, mean, std,
     protocol, seed, ...}, "history": [{"epoch", "loss", "lr", "images_per_s"}, ...]}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from anoseg.constants import ALL_CATEGORIES, CHECKPOINT_FORMAT, DEVICE_PATTERN, NO_GENERATOR
from anoseg.errors import AnosegError
from anoseg.io import write_with
from anoseg.paths import DEFAULT_SEED, run_dir, run_dirs
from anoseg.recipes import Recipe
from anoseg.runid import RunId

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
        from anoseg.paths import run_of_checkpoint

        hint = None if path.exists() else other_runs(run_of_checkpoint(path), path)
        raise AnosegError(f"checkpoint not found: {path}" + (f" ({hint})" if hint else ""))
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
        raise AnosegError(other_runs(run) or f"no checkpoint in {run}; run `anoseg train` first")
    raise AnosegError(f"no checkpoint for epoch {epoch} in {run}; kept epochs: {', '.join(kept) or 'none'}")


#: The identity of a run, in the order a mismatch is reported, with the option that chooses it.
_IDENTITY_OPTIONS = (("seed", "--seed"), ("category", "--category"), ("generator", "--generator"),
                     ("model", "--model"))


def has_checkpoint(run: Path) -> bool:
    """Whether a run folder holds ``last.pt`` or a kept epoch checkpoint."""
    return (run / LAST).is_file() or any((run / "checkpoints").glob("epoch_*.pt"))


def _identity(run: Path) -> dict[str, Any] | None:
    """A run folder's identity (``anoseg.runid.RunId``) and ``output`` root as a dict; None for a path too short."""
    try:
        identity, output, _ = RunId.locate(run)
    except ValueError:
        return None
    return {**asdict(identity), "output": str(output)}


def other_runs(run: Path, checkpoint: Path | None = None) -> str | None:
    """One sentence for a run folder without a checkpoint that names the runs of the same dataset that do exist,
    when one differs from it in a single identity (seed, category, generator or model): "no run for seed 42 in
    <run>; runs exist for seeds 0 — pass --seed 0, or run `anoseg train` for this one first". ``checkpoint`` (a
    missing ``--checkpoint`` file) makes the hint the existing checkpoint files instead of the option. None when no
    other run of the dataset exists.
    """
    wanted = _identity(run)
    if wanted is None:
        return None
    runs = [(p, _identity(p)) for p in run_dirs(wanted["output"], str(wanted["dataset"]))
            if p != Path(run) and has_checkpoint(p)]
    if not runs:
        return None
    for key, option in _IDENTITY_OPTIONS:
        same = [(p, ident) for p, ident in runs
                if ident is not None and all(ident[k] == wanted[k] for k, _ in _IDENTITY_OPTIONS if k != key)]
        if not same:
            continue
        values = sorted({ident[key] for _, ident in same}, key=lambda v: (str(type(v)), v))
        plural = {"category": "categories"}.get(key, key + "s")
        head = f"no run for {key} {wanted[key]} in {run}; runs exist for {plural} {', '.join(map(str, values))}"
        if checkpoint is not None:
            files = [str(p / checkpoint.relative_to(run)) if _inside(checkpoint, run)
                     and (p / checkpoint.relative_to(run)).is_file() else str(p / LAST) for p, _ in same[:3]]
            return f"{head}: {', '.join(files)}"
        return f"{head} — pass {option} {values[0]}, or run `anoseg train` for this one first"
    listed = ", ".join(str(p) for p, _ in runs[:3]) + (" …" if len(runs) > 3 else "")
    return (f"no checkpoint in {run}; run `anoseg train` first (the runs of {wanted['dataset']} under "
            f"{wanted['output']} are: {listed})")


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).relative_to(folder)
    except ValueError:
        return False
    return True


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

    if not isinstance(device, str) or not re.fullmatch(DEVICE_PATTERN, device):
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


#: ``meta.precision`` of a checkpoint written before the precision was recorded: those runs trained in fp32.
UNRECORDED_PRECISION = "32-true"


def training_precision(meta: dict[str, Any]) -> str:
    """The Lightning precision a checkpoint's run trained in (``meta.precision``; ``32-true`` for checkpoints older
    than the field, which always trained in fp32)."""
    return str(meta.get("precision") or UNRECORDED_PRECISION)


def device_kind(device: torch.device | str) -> str:
    """A short description of the device numbers were computed on, for provenance (checkpoint ``meta.device_kind``,
    ``metrics.json``, ``bench.json``): the kind and the instruction set that decides the numerics, then the model.

    * CUDA: ``"cuda sm_90 · NVIDIA H100 80GB HBM3"`` (compute capability, ``torch.cuda.get_device_name``).
    * x86 CPU: ``"cpu avx512_bf16+amx · <model name>"``: ATen's kernel level (``torch.backends.cpu
      .get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY`` can lower: ``avx2``, ``avx512``, ``default``), joined
      with the native bf16 units ``/proc/cpuinfo`` lists (``avx512_bf16``, ``amx``; ``avx512`` + ``avx512_bf16`` is
      written ``avx512_bf16``). E.g. ``cpu avx2`` (AVX2 only), ``cpu avx512_bf16`` (Zen 5), ``cpu
      avx512_bf16+amx`` (Sapphire Rapids).
    * ARM CPU: ``"cpu arm64[+sve256][+bf16] · <model>"``.

    Two runs with the same kind string ran the same kernels; ``--precision auto`` picks bf16 exactly where the
    string shows a bf16 unit (CPU) or the GPU supports it. Never raises: what cannot be read is left out.
    """
    import platform

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda sm_{major}{minor} · {torch.cuda.get_device_name(index)}"
    if device.type != "cpu":
        return device.type
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    level = str(torch.backends.cpu.get_cpu_capability()).lower()
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        tokens = ["arm64"] + ([level] if level not in ("default", "") else []) + (["bf16"] if "bf16" in flags else [])
    else:
        tokens = [level]
        if "avx512_bf16" in flags:
            tokens = ["avx512_bf16"] if level == "avx512" else [*tokens, "avx512_bf16"]
        if "amx_bf16" in flags:
            tokens.append("amx")
    model = info.get("model name") or platform.processor() or ""
    kind = "cpu " + "+".join(tokens)
    return f"{kind} · {' '.join(model.split())}" if model else kind


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (lower-case names); empty where there is no such file."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    if fields:
                        break
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name.strip().lower(), value.strip())
    except OSError:
        pass
    return fields
