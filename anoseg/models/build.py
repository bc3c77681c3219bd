"""The one build path: a registry record → checked options → the network → ``--backbone-weights`` loaded.

Like timm's ``build_model_with_cfg``: the architecture modules only construct networks; which options a model
accepts, which part of it ``--backbone-weights`` initialises, where its ImageNet weights come from and how a file's
keys map onto it are facts of its record (``anoseg.models.registry``), applied here, for every model the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn
import torchvision

from anoseg.errors import AnosegError
from anoseg.models import weights as _weights
from anoseg.models.registry import WeightSpec, backbone_spec, model_spec
from anoseg.models.weights import StateDict

__all__ = ["build_model", "create_backbone", "load_matching", "load_pretrained"]


def _resolve(ref: str) -> Any:
    """``"package.module:attribute"`` → the attribute (imports the module on first use)."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def build_model(name: str, num_classes: int = 2, backbone_weights: str | Path | None = "none",
                **options: object) -> nn.Module:
    """Build the registered segmenter ``name`` and initialise it from ``backbone_weights``.

    ``backbone_weights``: ``"none"`` (random init), ``"imagenet"`` (torchvision's weights when they exist and are
    cached or downloadable; otherwise one warning and random init) or a state-dict PATH. ``options`` are the model's
    own (its record's ``options``). Raises ``AnosegError`` for an unknown name or option and for an unusable file.

    Example:
        >>> import torch
        >>> build_model("lfd", num_classes=2).eval()(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """
    spec = model_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepts = ", ".join(spec.options) or "none"
        raise AnosegError(f"model {name}: unknown option(s) {', '.join(unknown)}; it accepts: {accepts}")
    kwargs: dict[str, Any] = {**dict(spec.kwargs), **options}
    if spec.backbone is not None:
        kwargs["backbone"] = create_backbone(spec.backbone)
    model = _resolve(spec.arch)(num_classes=num_classes, **kwargs)
    load_pretrained(model, spec.weight_spec, backbone_weights)
    return model


def create_backbone(name: str, weights: str | Path | None = "none") -> nn.Module:
    """Build the registered backbone ``name`` (``anoseg.models.backbones`` contract) and load ``weights`` into it.

    Example:
        >>> create_backbone("stdc1").out_channels
        (64, 256, 512, 1024)
    """
    spec = backbone_spec(name)
    backbone = _resolve(spec.arch)(**dict(spec.kwargs))
    load_pretrained(backbone, spec.weights, weights)
    return backbone


def load_pretrained(model: nn.Module, spec: WeightSpec, source: str | Path | None) -> bool:
    """Load ``source`` (``"imagenet"`` | ``"none"``/None | PATH) into the part of ``model`` that ``spec`` names.

    Returns True when weights were loaded. Raises ``AnosegError`` when a file does not fit (see ``WeightSpec``).
    """
    if source is None or str(source) == "none":
        return False
    target = model.get_submodule(spec.target) if spec.target else model
    key_map = _resolve(spec.key_map) if spec.key_map else None
    convert: Callable[[StateDict], StateDict] | None = (lambda s: key_map(s, target)) if key_map else None
    imagenet = _torchvision_weights(spec.imagenet) if spec.imagenet else None
    if str(source) == "imagenet":
        parts = spec.imagenet_parts or spec.parts
        label = f"{spec.label} ({', '.join(spec.imagenet_parts)})" if spec.imagenet_parts else spec.label
        loaded = _weights.load_backbone_weights(_view(target, parts, spec.exclude), source, imagenet=imagenet,
                                                convert=convert, name=label)
        if loaded and spec.imagenet_parts:
            _weights.warn_once(f"{spec.label}: torchvision's ImageNet weights cover {', '.join(spec.imagenet_parts)} "
                               "only; the rest stays randomly initialised")
        return loaded
    if spec.by_name:
        return load_matching(target, source, convert=convert, label=spec.label,
                             class_dependent=spec.class_dependent) > 0
    return _weights.load_backbone_weights(_view(target, spec.parts, spec.exclude), source, convert=convert,
                                          name=spec.label)


def load_matching(model: nn.Module, path: str | Path, *, convert: Callable[[StateDict], StateDict] | None = None,
                  label: str = "the model", class_dependent: Sequence[str] = ()) -> int:
    """Load a weight file into ``model`` by name and shape match; return the number of tensors loaded.

    Tensors missing from the file keep their initial values and file tensors the model lacks are ignored (the
    authors' ``get_seg_model`` policy). Keys starting with a ``class_dependent`` prefix are skipped when their shape
    differs (e.g. a 19-class file into a 2-class model); any other wrong shape is an ``AnosegError``, as is a file
    sharing no tensor with the model.
    """
    state = _weights.read_state_dict(path)
    if convert is not None:
        state = convert(state)
    own = model.state_dict()
    matched: StateDict = {}
    skipped: list[str] = []
    wrong: list[str] = []
    for key, target in own.items():
        if key not in state:
            continue
        if state[key].shape == target.shape:
            matched[key] = state[key]
        elif key.startswith(tuple(class_dependent)):
            skipped.append(key)
        else:
            wrong.append(f"{key} {tuple(state[key].shape)} != {tuple(target.shape)}")
    if wrong:
        raise AnosegError(f"weights from {path} do not fit {label}: wrong shapes for {len(wrong)} tensors, "
                          f"e.g. {'; '.join(wrong[:3])}")
    if not matched:
        raise AnosegError(f"weights from {path} share no tensor (by name and shape) with {label}")
    model.load_state_dict(matched, strict=False)
    # Recorded, not printed (only the stages print): the checkpoint's weights provenance carries the partial load.
    note = f"; class-dependent head layers kept random ({len(skipped)} tensors)" if skipped else ""
    _weights._record(model, f"{_weights._file_record(path)} ({len(matched)} of {len(own)} tensors{note})")
    return len(matched)


def _torchvision_weights(name: str) -> Any:
    """``"ResNet18_Weights.IMAGENET1K_V1"`` → the torchvision ``WeightsEnum`` member."""
    enum, _, member = name.partition(".")
    return getattr(getattr(torchvision.models, enum), member)


def _view(module: nn.Module, parts: Sequence[str] = (), exclude: Sequence[str] = ()) -> nn.Module:
    """A module sharing ``module``'s tensors under the same state-dict names, limited to the children ``parts``
    (all when empty) and without the submodules ``exclude`` (dotted paths). Nothing is copied."""
    if not parts and not exclude:
        return module
    view = nn.Module()
    if not parts:  # the module's own tensors belong to the view unless it is limited to some children
        for name, tensor in module.named_parameters(recurse=False):
            view.register_parameter(name, tensor)
        for name, tensor in module.named_buffers(recurse=False):
            view.register_buffer(name, tensor)
    for name in parts or [n for n, _ in module.named_children()]:
        if name in exclude:
            continue
        inner = [e.removeprefix(f"{name}.") for e in exclude if e.startswith(f"{name}.")]
        child = module.get_submodule(name)
        view.add_module(name, _view(child, (), inner) if inner else child)
    return view
