"""Backbone weights: ``--backbone-weights imagenet|none|PATH``, never downloaded from a hub at run time.

``imagenet`` uses torchvision's weights from the torch hub cache (``$TORCH_HOME/hub/checkpoints``), or downloads them
there on a machine that can; when neither works, one warning is printed and the model stays randomly initialised.
``PATH`` loads a state dict with ``weights_only=True`` and is strict about shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from anoseg.errors import AnosegError
from anoseg.log import warn_once

StateDict = dict[str, torch.Tensor]


def torchvision_state_dict(weights: Any) -> StateDict | None:
    """The state dict of a torchvision ``WeightsEnum`` member from the hub cache (downloaded if possible), else None."""
    import contextlib
    import io

    try:  # torch prints "Downloading: ..." to stderr even when the download cannot happen
        with contextlib.redirect_stderr(io.StringIO()):
            return torch.hub.load_state_dict_from_url(weights.url, progress=False, map_location="cpu",
                                                      weights_only=True)
    except Exception:  # offline: URLError, timeouts, partial files
        return None


def read_state_dict(path: str | Path) -> StateDict:
    """Read a state dict from a file (``weights_only=True``); unwraps ``{"state_dict": ...}``/``{"model": ...}``."""
    path = Path(path)
    if not path.is_file():
        raise AnosegError(f"backbone weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise AnosegError(f"cannot read weights from {path}: {exc}") from None
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
    Returns True when weights were loaded.
    """
    if source is None or str(source) == "none":
        return False
    if str(source) == "imagenet":
        if imagenet is None:
            warn_once(f"no ImageNet weights for {name} are available in torchvision; continuing from random init")
            return False
        state = torchvision_state_dict(imagenet)
        if state is None:
            file = Path(torch.hub.get_dir()) / "checkpoints" / Path(imagenet.url).name
            warn_once(f"ImageNet weights for {name} are neither in the torch cache ({file}) nor downloadable; "
                      "continuing from random init")
            return False
        label = f"torchvision {imagenet}"
    else:
        state = read_state_dict(source)
        label = str(source)
    load_into(backbone, convert(state) if convert else state, label)
    return True
