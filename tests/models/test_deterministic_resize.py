"""The bilinear resize GPU training uses under deterministic algorithms equals PyTorch's, forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anoseg.models.blocks import bilinear_by_matmul, resize


@pytest.mark.parametrize(("shape", "size", "align_corners"), [
    ((8, 12), (32, 48), False),  # LFD's ×4 head upsampling
    ((8, 12), (32, 48), True),
    ((33, 20), (11, 7), False),  # downsampling, odd sizes
    ((5, 5), (5, 9), True),
    ((7, 3), (1, 1), True),  # one output sample
])
def test_matmul_bilinear_equals_interpolate_and_its_gradient(shape, size, align_corners):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *shape, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
    got = bilinear_by_matmul(x, size, align_corners)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    (grad_expected,) = torch.autograd.grad(expected, x, upstream)
    (grad_got,) = torch.autograd.grad(got, x, upstream)
    assert torch.allclose(grad_got, grad_expected, rtol=0, atol=1e-12)


def test_channels_last_stays_channels_last():
    x = torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    assert bilinear_by_matmul(x, (12, 12)).is_contiguous(memory_format=torch.channels_last)


def test_the_cpu_keeps_pytorchs_own_kernel_bit_for_bit():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        assert torch.equal(resize(x, (32, 32)), F.interpolate(x, size=(32, 32), mode="bilinear"))
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
