"""The model registry: ``register_model`` decorates a builder, ``create_model`` calls it by name."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from anoseg.errors import AnosegError

ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(num_classes=2, backbone_weights="none", **options) -> nn.Module`` under ``name``."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def model_builder(name: str) -> ModelBuilder:
    """The builder registered under ``name``; an unknown name is an ``AnosegError`` listing the valid ones."""
    if name not in _REGISTRY:
        raise AnosegError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 2, **options: object) -> nn.Module:
    """Build a registered segmenter.

    Example:
        >>> model = create_model("lfd", num_classes=2, backbone_weights="none")
        >>> model.eval()(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 2, 256, 256])
    """
    return model_builder(name)(num_classes=num_classes, **options)
