"""The backbone contract (see the package docstring)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from anoseg.models.build import load_pretrained
from anoseg.models.registry import backbone_spec


class Backbone(nn.Module):
    """Base class: ``forward(x) -> list[Tensor]`` (finest first), ``out_channels``, ``reductions``, ``load_weights``.

    ``registry_name`` is the backbone's key in ``anoseg.models.registry.BACKBONES`` (its weights' facts).
    """

    out_channels: tuple[int, ...]
    reductions: tuple[int, ...]
    registry_name: str

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - every backbone overrides it
        raise NotImplementedError

    def load_weights(self, source: str | Path | None) -> bool:
        """Initialise from ``"imagenet"``, ``"none"``/None or a state-dict PATH; True when weights were loaded.

        Raises ``AnosegError`` when a file does not fit (missing tensors or wrong shapes).
        """
        return load_pretrained(self, backbone_spec(self.registry_name).weights, source)
