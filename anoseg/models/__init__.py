"""Segmenters. ``create_model(name, num_classes=2, backbone_weights="none", **options)`` builds one;
``list_models()`` names them all, ``model_spec(name)`` gives a model's record (``anoseg.models.registry``).

Importing this package is cheap (no torch): the records are plain data, and ``create_model`` imports the architecture
modules on first use (``anoseg.models.build``).

Every model is a plain ``nn.Module``. In eval mode ``forward(x)`` returns logits ``(N, num_classes, H, W)`` at the
input resolution. In training mode a model whose paper trains with auxiliary outputs returns a ``dict`` with
``"out"`` (main logits) plus ``"aux"`` (list of logits) and/or ``"boundary"`` (1-channel logits), each at any
resolution; ``anoseg.losses`` upsamples them to the label size and weighs them as the model's record says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from anoseg.models.registry import MODELS, ModelSpec, list_models, model_spec

if TYPE_CHECKING:
    from anoseg.models.build import build_model as create_model

__all__ = ["MODELS", "ModelSpec", "create_model", "list_models", "model_builder", "model_spec"]


def model_builder(name: str) -> Callable[..., Any]:
    """``builder(num_classes=2, backbone_weights="none", **options)`` for model ``name``; checks the name now
    (``AnosegError`` listing the valid ones) without importing torch. Prefer ``model_spec`` / ``create_model``."""
    model_spec(name)

    def builder(**kwargs: Any) -> Any:
        from anoseg.models.build import build_model

        return build_model(name, **kwargs)

    return builder


def __getattr__(name: str) -> Any:
    # PEP 562: resolve ``create_model`` (torch and the architectures) only when it is asked for.
    if name == "create_model":
        from anoseg.models.build import build_model

        return build_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
