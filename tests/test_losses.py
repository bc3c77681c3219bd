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


def up(logits, size=(32, 32)):
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def balanced_bce_by_hand(logits, edges):
    """SANet's boundary loss written out: positives weigh #neg/#all, negatives #pos/#all, mean over pixels."""
    pos = edges.sum() / edges.numel()
    weight = torch.where(edges > 0, 1 - pos, pos)
    per_pixel = -(edges * F.logsigmoid(logits) + (1 - edges) * F.logsigmoid(-logits))
    return (weight * per_pixel).mean()


@pytest.fixture
def outputs():
    torch.manual_seed(0)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[0, 8:20, 5:15] = 1
    target[1, 20:30, 18:31] = 1
    main = torch.randn(2, 2, 4, 4) * 2
    return target, main, torch.randn(2, 2, 2, 2) * 2, torch.randn(2, 1, 4, 4) * 3


def test_a_main_only_model_gets_exactly_the_ohem_of_its_upsampled_output(outputs):
    target, main, _, _ = outputs
    ohem = OhemCrossEntropy(0.7, 100, (1.0, 4.0))
    assert build_loss("lfd", min_kept=100)(main, target).item() == pytest.approx(ohem(up(main), target).item(),
                                                                                  rel=1e-6)


def test_sanet_loss_is_the_exact_sum_of_its_four_terms(outputs):
    target, main, aux, boundary = outputs
    ohem = OhemCrossEntropy(0.7, 100, (1.0, 4.0))
    main_up, boundary_up = up(main), up(boundary).squeeze(1)
    terms = {
        "ohem": ohem(main_up, target),
        "aux": F.cross_entropy(up(aux), target, weight=torch.tensor([1.0, 4.0])),
        "boundary": balanced_bce_by_hand(boundary_up, boundary_target(target)),
        "boundary_ohem": ohem(main_up, torch.where(torch.sigmoid(boundary_up) > 0.8, target, 255)),
    }
    assert all(t.item() > 0.01 for t in terms.values())  # every term contributes
    expected = terms["ohem"] + 0.4 * terms["aux"] + 20 * terms["boundary"] + terms["boundary_ohem"]
    loss = build_loss("sanet_s", min_kept=100)({"out": main, "aux": [aux], "boundary": boundary}, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_bisenet_loss_adds_the_ohem_of_every_aux_head_with_weight_one(outputs):
    target, main, aux, _ = outputs
    ohem = OhemCrossEntropy(0.7, 100, (1.0, 4.0))
    aux_heads = [aux, torch.randn(2, 2, 32, 32), torch.randn(2, 2, 8, 8)]
    expected = ohem(up(main), target) + sum(ohem(up(a), target) for a in aux_heads)
    loss = build_loss("bisenetv2", min_kept=100)({"out": main, "aux": aux_heads}, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_auxiliary_outputs_without_a_loss_in_the_record_are_refused(outputs):
    target, main, aux, _ = outputs
    with pytest.raises(ValueError, match="auxiliary outputs"):
        build_loss("lfd", min_kept=100)({"out": main, "aux": [aux]}, target)
