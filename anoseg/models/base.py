"""The segmenter output contract, written once: :class:`Segmenter`.

Every architecture computes its logits at some stride of the input (``forward_logits``); the base class resizes them
bilinearly to the input's ``H × W`` with the ``align_corners`` of the model's authors. That resize was the last line
of eight ``forward`` methods; here it is one line, and each model states its authors' choice as a class attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn as nn

from anoseg.constants import SIZE_MULTIPLE
from anoseg.errors import AnosegError
from anoseg.models.blocks import resize

__all__ = ["Segmenter", "SegmenterOutput"]

#: One logits tensor, or in training mode ``{"out": main, "aux": [...], "boundary": ...}`` (anoseg.models).
SegmenterOutput = torch.Tensor | dict[str, torch.Tensor | list[torch.Tensor]]


class Segmenter(nn.Module):
    """Base of every segmenter: ``forward(x)`` = ``forward_logits(x)`` resized to the input size.

    A subclass implements ``forward_logits(x)`` and returns either

    * one logits tensor ``(N, num_classes, h, w)`` at any resolution: ``forward`` resizes it (bilinear,
      ``align_corners``) to ``x``'s ``(H, W)`` — in eval mode always, in training mode for models trained on their
      main output only; or
    * a training-mode ``dict`` (``"out"``, ``"aux"``, ``"boundary"``): returned as it is, at the resolutions the
      subclass chose (``anoseg.losses`` upsamples each term to the label size). :meth:`to_input` is the resize a
      subclass uses for the terms it wants at the input size.

    Class attributes: ``align_corners`` (the authors' bilinear convention for the final upsampling; default False)
    and ``size_multiple`` (input sides must be multiples of it for the contract to hold: every segmenter's deepest
    stride; ``constants.SIZE_MULTIPLE``), checked by :meth:`check_size`. The base adds no parameters, buffers or
    submodules, so state-dict keys, parameter counts and MACs are the architecture's own.

    Example:
        >>> class Tiny(Segmenter):
        ...     align_corners = True
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.conv = nn.Conv2d(3, 2, 4, stride=4)
        ...     def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        ...         return self.conv(x)
        >>> Tiny().eval()(torch.zeros(1, 3, 64, 96)).shape
        torch.Size([1, 2, 64, 96])
    """

    align_corners: ClassVar[bool] = False
    size_multiple: ClassVar[int] = SIZE_MULTIPLE

    def forward_logits(self, x: torch.Tensor) -> SegmenterOutput:  # pragma: no cover - every segmenter overrides it
        """Logits of the ``(N, 3, H, W)`` batch ``x`` at the model's own output stride (see the class docstring)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> SegmenterOutput:
        """``(N, 3, H, W)`` → logits ``(N, num_classes, H, W)``, or the training ``dict`` of ``forward_logits``."""
        out = self.forward_logits(x)
        if isinstance(out, dict):
            return out
        return self.to_input(out, x.shape[-2:])

    def to_input(self, logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Bilinear resize of ``(N, C, h, w)`` logits to ``size = (H, W)`` with this model's ``align_corners``."""
        return resize(logits, size, align_corners=self.align_corners)

    @classmethod
    def check_size(cls, size: Sequence[int]) -> None:
        """Raise ``AnosegError`` unless both sides of ``size = (H, W)`` are positive multiples of ``size_multiple``.

        Example:
            >>> Segmenter.check_size((64, 96))
            >>> Segmenter.check_size((64, 90))
            Traceback (most recent call last):
            ...
            anoseg.errors.AnosegError: input size 64×90: both sides must be positive multiples of 32
        """
        if len(size) != 2 or any(int(side) != side or side < cls.size_multiple or side % cls.size_multiple
                                 for side in size):
            shown = "×".join(str(side) for side in size)
            raise AnosegError(f"input size {shown}: both sides must be positive multiples of {cls.size_multiple}")
