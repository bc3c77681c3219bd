"""The output contract lives in one place: ``anoseg.models.base.Segmenter``."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn as nn

from anoseg.constants import SIZE_MULTIPLE
from anoseg.errors import AnosegError
from anoseg.models import create_model, list_models, model_spec
from anoseg.models.base import Segmenter

#: The bilinear convention of each family's authors for the final upsampling (docs/architectures/*.md).
AUTHORS_ALIGN_CORNERS = {"lfd": False, "sanet": True, "liteseg": True, "lednet": True, "sfnet": True,
                         "bisenetv2": False, "upernet": False}


@pytest.mark.parametrize("name", list_models())
def test_every_model_is_a_segmenter_with_its_authors_align_corners(name: str) -> None:
    """Every registered architecture subclasses Segmenter, leaves ``forward`` to it (one resize for all) and states
    the align_corners of its authors."""
    module, _, attribute = model_spec(name).arch.partition(":")
    arch = getattr(importlib.import_module(module), attribute)
    assert issubclass(arch, Segmenter) and issubclass(arch, nn.Module)
    assert arch.forward is Segmenter.forward, f"{name} overrides the contract's forward"
    assert arch.forward_logits is not Segmenter.forward_logits
    family = next(f for f in AUTHORS_ALIGN_CORNERS if name.startswith(f))
    assert arch.align_corners is AUTHORS_ALIGN_CORNERS[family], name
    assert arch.size_multiple == SIZE_MULTIPLE


def test_forward_resizes_with_the_class_align_corners_and_passes_training_dicts() -> None:
    class Strided(Segmenter):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 8, stride=8)

        def forward_logits(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
            logits = self.conv(x)
            return {"out": logits} if self.training else logits

    class Aligned(Strided):
        align_corners = True

    x = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    outs = {}
    for cls in (Strided, Aligned):
        torch.manual_seed(0)
        model = cls().eval()
        logits = model.conv(x)
        out = model(x)
        assert out.shape == (1, 2, 32, 64)
        expected = nn.functional.interpolate(logits, size=(32, 64), mode="bilinear", align_corners=cls.align_corners)
        assert torch.equal(out, expected)
        outs[cls] = out
        train = model.train()(x)
        assert set(train) == {"out"} and train["out"].shape == (1, 2, 4, 8)  # dicts pass at the subclass's stride
    assert not torch.equal(outs[Strided], outs[Aligned])
    assert list(Strided().state_dict()) == ["conv.weight", "conv.bias"]  # the base adds no tensor


@pytest.mark.parametrize("size", [(SIZE_MULTIPLE, 2 * SIZE_MULTIPLE), (256, 512)])
def test_check_size_accepts_multiples(size: tuple[int, int]) -> None:
    Segmenter.check_size(size)
    create_model("lfd").check_size(size)


@pytest.mark.parametrize("size", [(64, 90), (0, 64), (-32, 64), (64,), (64, 64, 64), (48.5, 64)])
def test_check_size_names_the_size_and_the_multiple(size: tuple) -> None:
    with pytest.raises(AnosegError, match=f"input size .*multiples of {SIZE_MULTIPLE}"):
        Segmenter.check_size(size)
