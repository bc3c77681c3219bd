"""OHEM cross-entropy against a literal re-statement of LFD's algorithm, and the per-model auxiliary terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anoseg.losses import OhemCrossEntropy, boundary_target, build_loss


def reference_ohem(logits, target, thresh, min_kept, weights):
    """The spec's steps 1–6, one by one, in numpy."""
    prob = torch.softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1).numpy().ravel()
    ce = F.cross_entropy(logits, target, weight=torch.tensor(weights), reduction="none").numpy().ravel()
    ordered = np.sort(prob)
    threshold = max(ordered[min(min_kept, prob.size - 1)], thresh)
    kept = prob < threshold
    return ce[kept].mean() if kept.any() else 0.0


@pytest.mark.parametrize("min_kept", [1, 50, 500, 10_000])
def test_ohem_matches_the_reference_algorithm(min_kept):
    torch.manual_seed(min_kept)
    logits = torch.randn(2, 2, 16, 16) * 3
    target = torch.randint(0, 2, (2, 16, 16))
    ours = OhemCrossEntropy(0.7, min_kept, (1.0, 4.0))(logits, target).item()
    assert ours == pytest.approx(reference_ohem(logits, target, 0.7, min_kept, [1.0, 4.0]), rel=1e-5)


def test_ohem_is_a_plain_mean_of_weighted_pixels_not_pytorchs_weighted_mean():
    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere: every pixel kept
    target = torch.tensor([[[0, 1]]])
    loss = OhemCrossEntropy(0.7, 1, (1.0, 4.0))(logits, target)
    assert loss.item() == pytest.approx((1 + 4) * np.log(2) / 2)  # not (1+4)·log2 / (1+4)


def test_ohem_drops_ties_at_the_threshold_and_keeps_the_hard_pixels():
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0] = 3.0  # background confident: p(bg) = 0.953 everywhere
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, :2] = 1  # two foreground pixels with p = 0.047
    loss = OhemCrossEntropy(0.7, 10, (1.0, 4.0))(logits, target)
    hard = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 4.0]), reduction="none")[target == 1]
    assert loss.item() == pytest.approx(hard.mean().item())


def test_ohem_ignores_ignore_index_and_returns_zero_with_gradient_when_nothing_is_kept():
    logits = torch.full((1, 2, 2, 2), 0.0, requires_grad=True)
    target = torch.full((1, 2, 2), 255, dtype=torch.long)
    loss = OhemCrossEntropy(0.7, 10, (1.0, 4.0))(logits, target)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_boundary_target_marks_both_sides_of_a_label_change():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 3:5, 3:5] = 1
    edges = boundary_target(target, width=0)[0]
    assert edges[3:5, 3:5].all() and edges[2, 2] == 1 and edges[0, 0] == 0 and edges[7, 7] == 0


def test_sanet_and_bisenet_losses_add_their_auxiliary_terms():
    torch.manual_seed(0)
    target = torch.randint(0, 2, (2, 32, 32))
    main = torch.randn(2, 2, 4, 4)
    plain = build_loss("lfd", min_kept=100)(main, target)
    sanet = build_loss("sanet_s", min_kept=100)(
        {"out": main, "aux": [torch.randn(2, 2, 2, 2)], "boundary": torch.randn(2, 1, 4, 4)}, target)
    bisenet = build_loss("bisenetv2", min_kept=100)({"out": main, "aux": [torch.randn(2, 2, 32, 32)]}, target)
    assert torch.isfinite(sanet) and sanet > plain
    assert torch.isfinite(bisenet) and bisenet > plain
