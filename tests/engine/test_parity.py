"""Step parity with the authors' LFD training (HUST-SLOW/LFD ``LFD._train``), replayed from a recorded trace.

``data/lfd_reference_trace.json`` was written by ``python bench/parity.py --record-trace ... --reference LFD``: the
authors' own training code, on CPU with random initialisation, on a small fixed set (11 training images of 128², so
batches of 8 and 3), 3 epochs. It holds the batches (file names) of every iteration, the loss and lr of every
iteration, and per-tensor checksums of the initial and final weights. Here anoseg's real ``train()`` runs on the same
files with the same seed; only the batch *order* is replayed from the trace (the two codes draw their shuffles from
different random streams), everything else — batch partition, schedule length, loss, optimiser, initialisation,
preprocessing — is anoseg's own.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import anoseg.engine.train as train_module
import anoseg.losses
import anoseg.models
from anoseg.engine.checkpoint import LAST, load_checkpoint
from anoseg.engine.train import TrainJob, train
from anoseg.jobs import PrepareJob
from anoseg.recipes import load_recipe
from anoseg.stages import run_prepare

REPO = Path(__file__).resolve().parents[2]
TRACE = json.loads((Path(__file__).parent / "data" / "lfd_reference_trace.json").read_text())


def _bench_parity():
    spec = importlib.util.spec_from_file_location("bench_parity", REPO / "bench" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPE = """\
name: parity
layout: mvtec_ad
data_root: {original}
generated_root: {root}
generator: generated
categories: [{category}]
image_size: [{size}, {size}]
train:
  epochs: {epochs}
  eval_epoch: null
  checkpoint_every: {epochs}
  batch_size: {batch_size}
  workers: 0
"""


def _checksums_close(state: dict, expected: dict, rtol: float) -> list[str]:
    """Names of the tensors whose [sum, sum of squares] differ from ``expected`` (matched by position)."""
    ours = [(k, v.double()) for k, v in state.items() if torch.is_floating_point(v)]
    assert len(ours) == len(expected), "different number of tensors from the authors' model"
    bad = []
    for (name, value), (ref_name, (ref_sum, ref_sq)) in zip(ours, expected.items(), strict=True):
        scale = max(ref_sq, 1e-12) ** 0.5 * value.numel() ** 0.5  # |sum| ≤ sqrt(n · sum of squares)
        if abs(float(value.sum()) - ref_sum) > rtol * scale + 1e-9 or \
                abs(float((value ** 2).sum()) - ref_sq) > rtol * ref_sq + 1e-12:
            bad.append(f"{name} (authors' {ref_name})")
    return bad


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    """Train with anoseg on the trace set, the batch order replayed; return what happened."""
    # One intra-op thread: float32 reductions then sum in one fixed order, whatever the machine's core count
    # (with 2 threads two BatchNorm biases drifted past the tolerance after 6 steps).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _replay(tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _replay(tmp_path_factory):
    parity = _bench_parity()
    root = tmp_path_factory.mktemp("parity")
    original, _ = parity.write_trace_dataset(root / "data")
    recipe_file = root / "parity.yaml"
    recipe_file.write_text(RECIPE.format(original=original, root=root / "data", category=parity.TRACE_CATEGORY,
                                         size=TRACE["size"], epochs=TRACE["epochs"], batch_size=TRACE["batch_size"]))
    recipe = load_recipe(recipe_file)
    output = root / "outputs"
    run_prepare(PrepareJob(recipe, output=output))
    record = {"loss": [], "lr": [], "initial": None, "sizes": []}
    steps = len(TRACE["batches"]) // TRACE["epochs"]

    class ReplayBatches:
        """The trace's batches of the epoch set last (``set_epoch``, as anoseg's run loader's sampler)."""

        def __init__(self, dataset):
            self.index = {parity.trace_name(path): i for i, path in enumerate(dataset.split.rows["image"])}
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return steps

        def __iter__(self):
            batches = TRACE["batches"][self.epoch * steps:(self.epoch + 1) * steps]
            return iter([[self.index[name] for name in batch] for batch in batches])

    def replay_loader(dataset, job, epoch, fabric):
        real = train_module.__dict__["_real_loader"](dataset, job, epoch, fabric)
        for e in range(TRACE["epochs"]):  # anoseg's own partition of every epoch
            train_module._set_epoch(real, e)
            record["sizes"].append([len(t) for _, t in real])
        replay = ReplayBatches(dataset)
        replay.set_epoch(epoch)
        return torch.utils.data.DataLoader(dataset, batch_sampler=replay, num_workers=0)

    cosine, forward, create = train_module.cosine_lr, anoseg.losses.SegmentationLoss.forward, anoseg.models.create_model

    def recording_cosine(*args):
        record["lr"].append(cosine(*args))
        return record["lr"][-1]

    def recording_forward(self, outputs, target):
        loss = forward(self, outputs, target)
        record["loss"].append(loss.item())
        return loss

    def recording_create(*args, **kwargs):
        model = create(*args, **kwargs)
        record["initial"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(train_module.__dict__, "_real_loader", train_module._loader)
        patch.setattr(train_module, "_loader", replay_loader)
        patch.setattr(train_module, "cosine_lr", recording_cosine)
        patch.setattr(anoseg.losses.SegmentationLoss, "forward", recording_forward)
        patch.setattr(anoseg.models, "create_model", recording_create)
        run = train(TrainJob(recipe=recipe, model="lfd", category=parity.TRACE_CATEGORY, generator="generated",
                             output=output, device="cpu", seed=TRACE["seed"], backbone_weights="none",
                             paper_numerics=True))
    record["final"] = load_checkpoint(run / LAST)["state_dict"]
    return record


def test_initial_weights_equal_the_authors(replay):
    # the same seed builds the same layers in the same order with the same initialisers
    assert _checksums_close(replay["initial"], TRACE["initial"], rtol=1e-12) == []


def test_batches_and_learning_rates_equal_the_authors(replay):
    sizes = [[len(b) for b in TRACE["batches"][e * 2:(e + 1) * 2]] for e in range(TRACE["epochs"])]
    assert sizes == [[8, 3]] * TRACE["epochs"]
    assert replay["sizes"] == sizes  # anoseg keeps the last partial batch, as the authors' DataLoader does
    np.testing.assert_allclose(replay["lr"], TRACE["lr"], rtol=1e-12)  # the cosine spans all 6 iterations


def test_loss_at_every_iteration_equals_the_authors(replay):
    assert len(replay["loss"]) == len(TRACE["loss"])
    np.testing.assert_allclose(replay["loss"], TRACE["loss"], rtol=1e-5)


def test_weights_after_training_equal_the_authors(replay):
    assert _checksums_close(replay["final"], TRACE["final"], rtol=1e-5) == []


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
