"""Backbone weights: ``--backbone-weights imagenet|none|PATH``, and a true record of what was loaded.

``imagenet`` uses torchvision's weights from the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and nothing else:
no download is attempted (nor printed) unless the user asks for one (``anoseg train --download-weights``, i.e.
``ANOSEG_DOWNLOAD_WEIGHTS=1``). When the weights are not there, one warning is printed and the model stays randomly
initialised. ``PATH`` loads a state dict with ``weights_only=True`` and is strict about shapes.

``weights_provenance(model, requested)`` says what a built model actually holds — ``imagenet``,
``random (imagenet unavailable)``, ``file <path> sha256:<hex>`` or ``none`` — for the checkpoint and the export
sidecar (docs/protocol.md, "Backbone weights").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn as nn

from anoseg.errors import AnosegError
from anoseg.log import warn_once

StateDict = dict[str, torch.Tensor]

#: Environment variable that allows ``imagenet`` to download missing weights (set by ``train --download-weights``;
#: an environment variable so that DDP worker processes see it too).
DOWNLOAD_ENV = "ANOSEG_DOWNLOAD_WEIGHTS"
IMAGENET = "imagenet"
RANDOM_IMAGENET_UNAVAILABLE = "random (imagenet unavailable)"
_PROVENANCE = "_anoseg_weights"  # attribute set on every submodule that received loaded weights


def downloads_allowed() -> bool:
    """True when the user asked for missing ImageNet weights to be downloaded (``ANOSEG_DOWNLOAD_WEIGHTS=1``)."""
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cached_weights_file(weights: Any) -> Path:
    """Where torch's hub cache keeps a torchvision ``WeightsEnum`` member's file (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def torchvision_state_dict(weights: Any) -> StateDict | None:
    """The state dict of a torchvision ``WeightsEnum`` member from the torch hub cache, else None.

    Only with ``downloads_allowed()`` is a missing file downloaded (into the cache, hash-checked); otherwise nothing
    touches the network, so an offline machine prints no download attempt.
    """
    file = cached_weights_file(weights)
    if file.is_file():
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a truncated or foreign file
            warn_once(f"cannot read cached ImageNet weights {file}: {exc}")
            return None
    if not downloads_allowed():
        return None
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=True, map_location="cpu", weights_only=True,
                                                  check_hash=True)
    except Exception as exc:  # offline: URLError, timeouts, partial files, hash mismatch
        warn_once(f"download of {weights.url} failed: {exc}")
        return None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def weights_provenance(model: nn.Module, requested: str | Path | None) -> str:
    """What ``model``'s backbone weights actually are, after ``create_model(..., backbone_weights=requested)``.

    Returns ``"imagenet"`` (torchvision's ImageNet weights were loaded), ``"file <abs path> sha256:<hex>"`` (a
    state-dict file was loaded), ``"none"`` (random init was asked for) or ``"random (imagenet unavailable)"``
    (``imagenet`` was asked for but neither the cache nor an allowed download had it, or torchvision has none for
    this backbone). Several distinct sources are joined with ``"; "``.

    Example:
        >>> weights_provenance(create_model("lfd", backbone_weights="imagenet"), "imagenet")  # offline, empty cache
        ... # doctest: +SKIP
        'random (imagenet unavailable)'
    """
    tags = sorted({module.__dict__[_PROVENANCE] for module in model.modules() if _PROVENANCE in module.__dict__})
    if tags:
        return "; ".join(tags)
    requested = "none" if requested is None else str(requested)
    if requested == "none":
        return "none"
    if requested == IMAGENET:
        return RANDOM_IMAGENET_UNAVAILABLE
    # a file that a model-specific loader read itself (building fails when a file cannot be loaded)
    return _file_record(requested)


def _file_record(path: str | Path) -> str:
    resolved = Path(path).resolve()
    return f"file {resolved} sha256:{file_sha256(resolved)}"


def _record(module: nn.Module, label: str) -> None:
    # Weight loaders often pass a temporary view (a ModuleDict of the real submodules), so the label goes on every
    # submodule: the model that owns them finds it whatever view was used.
    for sub in module.modules():
        sub.__dict__[_PROVENANCE] = label


def read_state_dict(path: str | Path) -> StateDict:
    """Read a state dict from a file (``weights_only=True``); unwraps ``{"state_dict": ...}``/``{"model": ...}``."""
    path = Path(path)
    if not path.is_file():
        raise AnosegError(f"backbone weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file, often with a bare byte value ("...: 101")
        with open(path, "rb") as handle:
            magic = handle.read(4)
        # torch.save writes a zip archive (older versions: a pickle, starting 0x80); anything else is no weights file
        if magic != b"PK\x03\x04" and not magic.startswith(b"\x80"):
            raise AnosegError(f"{path} is not a PyTorch state-dict file (not written by torch.save); give a .pt/.pth "
                              "file of backbone weights") from None
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
        raise AnosegError(f"cannot read weights from {path} (damaged or foreign file): {reason}") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AnosegError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(module: nn.Module, state: StateDict, source: str) -> None:
    """Copy ``state`` into ``module``: every parameter/buffer of the module must be present with the same shape.

    Extra keys in ``state`` (e.g. an ImageNet classifier) are ignored, and so are missing BN ``num_batches_tracked``
    counters (torchvision's older ImageNet files predate them).
    """
    own = module.state_dict()
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    missing = [k for k in own if k not in state]
    if missing:
        raise AnosegError(f"weights from {source} lack {len(missing)} tensors, e.g. {', '.join(missing[:3])}")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if wrong:
        raise AnosegError(f"weights from {source} have wrong shapes: {'; '.join(wrong[:3])}")
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def load_backbone_weights(
    backbone: nn.Module,
    source: str | Path | None,
    *,
    imagenet: Any = None,
    convert: Callable[[StateDict], StateDict] | None = None,
    name: str = "backbone",
) -> bool:
    """Initialise ``backbone`` from ``source`` (``"imagenet"``, ``"none"``/None, or a file path).

    ``imagenet`` is the torchvision ``WeightsEnum`` member for this backbone, or None when torchvision has none.
    ``convert`` maps the loaded state dict's keys onto ``backbone``'s own names.
    Returns True when weights were loaded; ``weights_provenance`` then reports them for the model owning
    ``backbone``'s submodules.
    """
    if source is None or str(source) == "none":
        return False
    if str(source) == IMAGENET:
        if imagenet is None:
            warn_once(f"no ImageNet weights for {name} are available in torchvision; continuing from random init")
            return False
        state = torchvision_state_dict(imagenet)
        if state is None:
            hint = "the download failed" if downloads_allowed() else \
                "to download them, run `anoseg train` with --download-weights"
            warn_once(f"ImageNet weights for {name} are not in the torch cache ({cached_weights_file(imagenet)}); "
                      f"continuing from random init ({hint})")
            return False
        source_label, record = f"torchvision {imagenet}", IMAGENET
    else:
        state = read_state_dict(source)
        source_label, record = str(source), _file_record(source)
    load_into(backbone, convert(state) if convert else state, source_label)
    _record(backbone, record)
    return True
