"""Step parity with the authors' LFD training (HUST-SLOW/LFD ``LFD._train``), replayed from a recorded trace.

``data/lfd_reference_trace.json`` was written by ``python bench/parity.py --record-trace ... --reference LFD``: the
authors' own training code in float64 (their model, class weights and batches moved to double), on CPU with random
initialisation, on a small fixed set (11 training images of 128², so batches of 8 and 3), 3 epochs. It holds the
batches (file names) of every iteration, the loss and lr of every iteration, and per-tensor checksums of the initial
and final weights. Here anoseg's real ``train()`` runs in float64 (``--paper-numerics --precision 64-true``) on the
same files with the same seed; only the batch *order* is replayed from the trace (the two codes draw their shuffles
from different random streams), everything else — batch partition, schedule length, loss, optimiser, initialisation,
preprocessing — is anoseg's own (``bench/parity.py::replay_trace``).

Why float64: in float32, kernels of another instruction set (AVX2 vs AVX-512) or thread count sum in another order,
and 6 SGD steps amplify that to ~1e-4 relative — more than a real one-pixel difference in OHEM's rule. In float64 the
same noise stays below 1e-12 while the smallest real difference planted (``PLANTS``) moves the numbers by ≥ 3e-6
(docs/parity.md, "Float noise against real differences"); the tolerance sits between them.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import anoseg.engine.train as train_module

REPO = Path(__file__).resolve().parents[2]
TRACE = json.loads((Path(__file__).parent / "data" / "lfd_reference_trace.json").read_text())
#: Relative tolerance of losses and weight checksums: float64 noise measured ≤ 1e-15 on every CPU setting, the
#: smallest planted difference ≥ 3e-6 (docs/parity.md); 1e-9 leaves three decades on both sides.
RTOL = 1e-9

pytestmark = pytest.mark.parity


def _bench_parity():
    spec = importlib.util.spec_from_file_location("bench_parity", REPO / "bench" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PARITY = _bench_parity()


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    """Train with anoseg on the trace set in float64, the batch order replayed; return what happened."""
    return PARITY.replay_trace(TRACE, tmp_path_factory.mktemp("parity"))


def test_the_trace_is_float64():
    assert TRACE["dtype"] == "float64"


def test_initial_weights_equal_the_authors(replay):
    # the same seed builds the same layers in the same order with the same initialisers
    assert PARITY.checksum_deviation(replay["initial"], TRACE["initial"]) <= 1e-12


def test_batches_and_learning_rates_equal_the_authors(replay):
    sizes = [[len(b) for b in TRACE["batches"][e * 2:(e + 1) * 2]] for e in range(TRACE["epochs"])]
    assert sizes == [[8, 3]] * TRACE["epochs"]
    assert replay["sizes"] == sizes  # anoseg keeps the last partial batch, as the authors' DataLoader does
    np.testing.assert_allclose(replay["lr"], TRACE["lr"], rtol=1e-12)  # the cosine spans all 6 iterations


def test_loss_at_every_iteration_equals_the_authors(replay):
    assert len(replay["loss"]) == len(TRACE["loss"])
    np.testing.assert_allclose(replay["loss"], TRACE["loss"], rtol=RTOL)


def test_weights_after_training_equal_the_authors(replay):
    assert {v.dtype for v in replay["final"].values() if v.is_floating_point()} == {torch.float64}
    assert PARITY.checksum_deviation(replay["final"], TRACE["final"]) <= RTOL


@pytest.mark.slow
@pytest.mark.parametrize("plant", sorted(PARITY.PLANTS))
def test_each_planted_difference_fails_the_parity_check(plant, tmp_path):
    # the tolerance above must separate float noise from different maths: each plant, the smallest of its kind,
    # moves the loss or the weights past it (and far from the float64 noise floor)
    deviation = PARITY.trace_deviation(PARITY.replay_trace(TRACE, tmp_path, plant=plant), TRACE)
    assert max(deviation.values()) > 1000 * RTOL, deviation


@pytest.mark.parametrize(("model", "sizes"), [("lfd", [8, 8, 3]), ("bisenetv2", [8, 8])])
def test_only_lfd_keeps_the_last_partial_batch(model, sizes):
    # LFD's authors keep it; the other models' authors drop it (BatchNorm behind global pooling needs batch > 1)
    from types import SimpleNamespace

    from anoseg.recipes import TrainSettings

    job = SimpleNamespace(model=model, seed=0, recipe=SimpleNamespace(train=TrainSettings(batch_size=8, workers=0)))
    fabric = SimpleNamespace(world_size=1, device=torch.device("cpu"))
    loader = train_module._loader(torch.utils.data.TensorDataset(torch.arange(19)), job, 0, fabric)
    assert [len(batch) for (batch,) in loader] == sizes
    keep = train_module.keeps_partial_batch(model)
    assert train_module._batches_per_epoch(19, 8, 1, keep) == len(sizes)
    assert train_module._batches_per_epoch(19, 8, 2, train_module.keeps_partial_batch(model, 2)) == 1  # DDP drops
