"""Training losses: OHEM cross-entropy (the LFD protocol) and each model's auxiliary terms where its paper uses them.

A model returns logits in eval mode and, in training mode, either logits or a dict ``{"out", "aux", "boundary"}``
(see ``anoseg.models``). ``SegmentationLoss`` takes either and upsamples every output to the label size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from anoseg.models.registry import model_spec


class OhemCrossEntropy(nn.Module):
    """Online hard example mining cross-entropy, as LFD's ``FSOhemCELoss``.

    Keep the pixels whose probability of the true class is below ``max(thresh, p_(min_kept))`` (strictly),
    and return the *plain* mean of their class-weighted CE (anomaly pixels count ``weight`` times; nothing is divided
    by the sum of weights). Pixels equal to ``ignore_index`` never count. With nothing kept the loss is 0.

    Example:
        >>> loss = OhemCrossEntropy(class_weights=(1.0, 4.0))(torch.randn(2, 2, 8, 8), torch.randint(0, 2, (2, 8, 8)))
    """

    def __init__(
        self,
        thresh: float = 0.7,
        min_kept: int = 100_000,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.thresh = thresh
        self.min_kept = min_kept
        self.ignore_index = ignore_index
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _at_least_float32(logits)
        valid = target != self.ignore_index
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        pixel_loss = F.cross_entropy(logits, safe_target, weight=_like(self.class_weights, logits), reduction="none")
        with torch.no_grad():
            prob = torch.softmax(logits, 1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
            valid_prob = prob[valid]
            threshold = torch.tensor(self.thresh, dtype=prob.dtype, device=prob.device)
            if valid_prob.numel() > 0:
                kth = min(self.min_kept, valid_prob.numel() - 1)
                threshold = torch.maximum(threshold, valid_prob.kthvalue(kth + 1).values)
            kept = valid & (prob < threshold)
        if not kept.any():
            return pixel_loss.sum() * 0.0
        return pixel_loss[kept].mean()


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Logits of a bf16/fp16 autocast upcast to float32 for the loss; float32 and float64 (the parity test) kept."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _like(weights: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    """The class weights in the logits' dtype (cross-entropy needs both alike)."""
    return None if weights is None else weights.to(logits.dtype)


def boundary_target(target: torch.Tensor, ignore_index: int = 255, width: int = 2) -> torch.Tensor:
    """Edges of a label map, dilated: 1 where a pixel's 3×3 neighbourhood holds two labels (SANet's edge GT).

    The authors run Canny on the label and dilate with a 4×4 kernel; a label change in a 3×3 window followed by a
    ``width``-pixel dilation is the same thing for piecewise-constant label maps, computed on the device.
    """
    labels = target.unsqueeze(1).float()
    labels = torch.where(labels == ignore_index, torch.zeros_like(labels), labels)
    local_max = F.max_pool2d(labels, 3, 1, 1)
    local_min = -F.max_pool2d(-labels, 3, 1, 1)
    edges = (local_max != local_min).float()
    if width > 0:
        edges = F.max_pool2d(edges, 2 * width + 1, 1, width)
    return edges.squeeze(1)


def balanced_bce(logits: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE with logits: positives weigh #neg/#all, negatives #pos/#all (SANet's boundary loss)."""
    total = edges.numel()
    pos = edges.sum()
    weight = torch.where(edges > 0, (total - pos) / total, pos / total)
    return F.binary_cross_entropy_with_logits(logits.float(), edges, weight=weight)


class SegmentationLoss(nn.Module):
    """The training loss of one model: OHEM CE on the main output plus the auxiliary terms of its registry record
    (``anoseg.models.registry.LossSpec``):

    - ``sanet_*``: ``0.4·CE(aux) + OHEM(main) + 20·BCE(boundary) + OHEM(main, labels kept where σ(boundary) > 0.8)``
    - ``bisenetv2``: ``OHEM(main) + Σ OHEM(aux_i)``
    - every other model: ``OHEM(main)``
    """

    def __init__(self, model_name: str, ohem: OhemCrossEntropy) -> None:
        super().__init__()
        self.model_name = model_name
        self.spec = model_spec(model_name).loss
        self.ohem = ohem

    def forward(self, outputs: torch.Tensor | dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = {"out": outputs}
        size = target.shape[-2:]
        main = _to_size(outputs["out"], size)
        loss = self.ohem(main, target)
        spec, ignore = self.spec, self.ohem.ignore_index
        aux = [_to_size(a, size) for a in outputs.get("aux", [])]
        if (aux and spec.aux is None) or ("boundary" in outputs and not spec.boundary_weight):
            raise ValueError(f"{self.model_name} returned auxiliary outputs its registry record has no loss for")
        for a in aux:
            if spec.aux == "ce":
                a = _at_least_float32(a)
                term = F.cross_entropy(a, target, weight=_like(self.ohem.class_weights, a), ignore_index=ignore)
            else:
                term = self.ohem(a, target)
            loss = loss + spec.aux_weight * term
        if "boundary" in outputs:
            boundary = _to_size(outputs["boundary"], size).squeeze(1)
            loss = loss + spec.boundary_weight * balanced_bce(boundary, boundary_target(target, ignore))
            if spec.boundary_confidence is not None:
                confident = torch.sigmoid(boundary) > spec.boundary_confidence
                loss = loss + self.ohem(main, torch.where(confident, target, torch.full_like(target, ignore)))
        return loss


def build_loss(
    model_name: str,
    *,
    thresh: float = 0.7,
    min_kept: int = 100_000,
    class_weights: Sequence[float] | None = (1.0, 4.0),
    ignore_index: int = 255,
) -> SegmentationLoss:
    """The loss for ``model_name`` with the recipe's OHEM settings."""
    return SegmentationLoss(model_name, OhemCrossEntropy(thresh, min_kept, class_weights, ignore_index))


def _to_size(logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if logits.shape[-2:] == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
