"""Model cost: parameters that take part in the forward pass, and multiply-accumulates (thop-style)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def _run_with_hooks(model: nn.Module, x: torch.Tensor, hook) -> None:
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def count_used_parameters(model: nn.Module, x: torch.Tensor) -> int:
    """Number of parameters owned by modules that run in an eval-mode forward pass on ``x``.

    Dead modules that a model registers but never calls (an ImageNet classifier, an unused head) do not count.
    """
    called: list[nn.Module] = []
    _run_with_hooks(model, x, lambda m, i, o: called.append(m))
    seen: set[int] = set()
    total = 0
    for module in called:
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of an eval-mode forward pass on ``x``, counted per call (thop conventions).

    Conv: ``N·Cout·Hout·Wout·Cin/groups·kh·kw``; Linear: ``in·out`` per row; norm layers: 2 per element, doubled when
    affine — thop's convention, which produced the reference table.
    """
    total = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd) and isinstance(output, torch.Tensor):
            per_out = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += output.numel() * per_out
        elif isinstance(module, nn.Linear) and isinstance(output, torch.Tensor):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and isinstance(output, torch.Tensor):
            total += 4 * output.numel() if module.affine else 2 * output.numel()

    _run_with_hooks(model, x, hook)
    return total
