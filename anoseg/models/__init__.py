"""Segmenters. ``create_model(name, num_classes=2, **options)`` builds one; ``list_models()`` names them all.

Every model is a plain ``nn.Module``. In eval mode ``forward(x)`` returns logits ``(N, num_classes, H, W)`` at the
input resolution. In training mode a model whose paper trains with auxiliary outputs returns a ``dict`` with
``"out"`` (main logits) plus ``"aux"`` (list of logits) and/or ``"boundary"`` (1-channel logits), each at any
resolution; ``anoseg.losses`` upsamples them to the label size.
"""

from anoseg.models import bisenetv2, lednet, lfd, liteseg, sanet, sfnet_lite, upernet  # noqa: F401  (registration)
from anoseg.models.registry import create_model, list_models, model_builder, register_model

__all__ = ["create_model", "list_models", "model_builder", "register_model"]
