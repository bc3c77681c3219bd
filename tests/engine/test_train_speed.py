"""Training speed plumbing: one data loader per run (same data order as before, workers kept), training curves."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import anoseg.engine.train as train_module
from anoseg.engine import curves
from anoseg.engine.checkpoint import LAST, load_checkpoint
from anoseg.engine.train import EpochSampler, TrainJob, train
from anoseg.errors import AnosegError
from anoseg.recipes import TrainSettings, load_recipe

# precision and resume numerics: .ci/run repeats these under AVX2 kernels
pytestmark = pytest.mark.numerics


class Pids(torch.utils.data.Dataset):
    """Each item is the id of the process that served it."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> int:
        return os.getpid()


def _job(workers: int, augment: tuple[str, ...] = ()) -> SimpleNamespace:
    settings = TrainSettings(batch_size=2, workers=workers, augment=augment)
    return SimpleNamespace(model="lfd", seed=3, recipe=SimpleNamespace(train=settings))


FABRIC = SimpleNamespace(world_size=1, global_rank=0, device=torch.device("cpu"))


def test_epoch_sampler_gives_the_order_of_a_shuffled_loader_seeded_by_seed_and_epoch():
    # the order anoseg used before one loader served the run: results and resumed runs stay reproducible
    sampler = EpochSampler(13, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        before = torch.utils.data.DataLoader(range(13), batch_size=1, shuffle=True,
                                             generator=torch.Generator().manual_seed(3 * 1000 + epoch))
        assert list(sampler) == [int(i) for (i,) in before]
    assert list(sampler) != sorted(sampler)


def test_the_run_loader_keeps_its_worker_processes_across_epochs():
    loader = train_module._loader(Pids(), _job(workers=1), 0, FABRIC)
    pids = []
    for epoch in range(2):
        train_module._set_epoch(loader, epoch)
        pids.append({int(p) for batch in loader for p in batch})
    assert pids[0] == pids[1] and os.getpid() not in pids[0]  # one worker, never respawned


def test_augmenting_runs_restart_workers_each_epoch_so_augmentations_depend_on_seed_and_epoch_only():
    # a persistent worker's RNG is seeded once; restarted workers draw their seed from the (seed, epoch) global RNG
    assert train_module._loader(Pids(), _job(workers=1, augment=("hflip",)), 0, FABRIC).persistent_workers is False
    assert train_module._loader(Pids(), _job(workers=0), 0, FABRIC).persistent_workers is False


def test_sgd_step_kernels():
    assert train_module._sgd_implementation(False, torch.device("cpu")) == {"foreach": False}  # the authors' loop
    assert train_module._sgd_implementation(True, torch.device("cpu")) == {"foreach": True}
    assert train_module._sgd_implementation(True, torch.device("cuda")) == {"fused": True}


def test_training_logs_loss_lr_and_images_per_second_at_every_iteration(demo_env, tmp_path):
    output = tmp_path / "out"
    (output / "demo" / "seas").mkdir(parents=True)
    for name in ("manifest.csv", "data_report.json"):
        (output / "demo" / "seas" / name).write_bytes((demo_env.output / "demo" / "seas" / name).read_bytes())
    recipe = load_recipe(demo_env.recipe_file).override(image_size=(64, 64))
    run = train(TrainJob(recipe=recipe, model="lfd", category="mesh", generator="seas", output=output, device="cpu",
                         seed=42, backbone_weights="none"))
    rows = (run / "logs" / "csv" / "metrics.csv").read_text().splitlines()
    header, values = rows[0].split(","), [dict(zip(rows[0].split(","), r.split(","), strict=True)) for r in rows[1:]]
    assert {"step", "epoch", "loss", "lr", "images_per_s"} <= set(header)
    checkpoint = load_checkpoint(run / LAST)
    history, batches = checkpoint["history"], checkpoint["iteration"] // checkpoint["epoch"]
    assert [int(v["step"]) for v in values] == list(range(1, 2 * batches + 1))
    settings = recipe.train
    total = 2 * batches
    expected_lr = [train_module.cosine_lr(i, total, settings.lr, settings.min_lr) for i in range(total)]
    np.testing.assert_allclose([float(v["lr"]) for v in values], expected_lr, rtol=1e-6)
    assert all(float(v["images_per_s"]) > 0 for v in values)
    for epoch in (1, 2):  # the epoch's loss in the history is the image-weighted mean of its batches' losses
        losses = [float(v["loss"]) for v in values if int(float(v["epoch"])) == epoch]
        assert len(losses) == batches and min(losses) <= history[epoch - 1]["loss"] <= max(losses)
    steps, losses = curves.read_loss_curve(run)
    assert steps == list(range(1, total + 1)) and losses == [float(v["loss"]) for v in values]


def test_loss_curve_keeps_the_last_row_of_a_step_and_report_draws_it(tmp_path):
    from anoseg.report.figures import loss_curve_figures

    run = tmp_path / "lfd" / "all"
    log = run / "logs" / "csv"
    log.mkdir(parents=True)
    # steps 3-4 of an interrupted epoch were logged, then logged again by the resumed run
    log.joinpath("metrics.csv").write_text("epoch,images_per_s,loss,lr,step\n1,5,0.9,0.01,1\n1,5,0.8,0.01,2\n"
                                           "2,5,0.7,0.01,3\n2,5,0.75,0.01,4\n2,5,0.6,0.01,3\n2,5,0.5,0.01,4\n")
    assert curves.read_loss_curve(run) == ([1, 2, 3, 4], [0.9, 0.8, 0.6, 0.5])
    assert curves.read_loss_curve(tmp_path / "none") == ([], [])
    figures = loss_curve_figures([("LFD / SeaS", run), ("LFD / SeaS", run), ("other", tmp_path / "none")],
                                 tmp_path / "figures")
    assert list(figures) == ["training loss"] and len(figures["training loss"]) == 1
    path = figures["training loss"][0]
    assert path.name.endswith("_loss.png") and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_metrics_are_logged_per_checkpoint(tmp_path):
    curves.log_eval_metrics(tmp_path, 10, {"pixel_ap": 0.5, "iou": None, "n_images": 3})
    curves.log_eval_metrics(tmp_path, 20, {"pixel_ap": 0.75, "iou": 0.25, "n_images": 3})
    lines = (tmp_path / "logs" / "eval" / "metrics.csv").read_text().splitlines()
    rows = [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]
    assert [(int(r["step"]), float(r["pixel_ap"])) for r in rows] == [(10, 0.5), (20, 0.75)]
    assert rows[1]["iou"] == "0.25" and rows[0]["iou"] == ""


def test_tensorboard_logger_without_the_package_is_one_clear_error(tmp_path, monkeypatch):
    import importlib.util

    from anoseg.errors import AnosegError

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        pytest.skip("tensorboard is installed here")
    with pytest.raises(AnosegError, match="pip install tensorboard"):
        curves.train_loggers(tmp_path, "tensorboard")
    assert json.dumps([type(lg).__name__ for lg in curves.train_loggers(tmp_path, "csv")]) == '["CSVLogger"]'


def test_the_default_precision_is_fp32_on_every_machine(monkeypatch):
    # the same command gives the same arithmetic on an AMX, an AVX2 or an ARM machine; auto is opt-in
    monkeypatch.setattr(train_module, "native_bf16", lambda device: True)
    assert train_module.resolve_precision(None, torch.device("cpu")) == "32-true"
    assert train_module.resolve_precision(None, torch.device("cuda")) == "32-true"
    assert train_module.TrainJob.__dataclass_fields__["precision"].default is None


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_device_has_it_and_never_under_paper_numerics(monkeypatch, native):
    monkeypatch.setattr(train_module, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert train_module.resolve_precision("auto", cpu) == ("bf16-mixed" if native else "32-true")
    assert train_module.resolve_precision("auto", cpu, paper_numerics=True) == "32-true"
    assert train_module.resolve_precision("32-true", cpu) == "32-true"  # an explicit choice is kept
    assert train_module.resolve_precision("32-true", cpu, paper_numerics=True) == "32-true"
    with pytest.raises(AnosegError, match="--paper-numerics trains in fp32"):
        train_module.resolve_precision("bf16-mixed", cpu, paper_numerics=True)
    assert train_module.resolve_precision("auto", torch.device("cuda")) == ("bf16-mixed" if native else "16-mixed")


def test_a_run_records_the_precision_auto_chose_and_a_resumed_run_keeps_its_own(demo_env, tmp_path, monkeypatch):
    output = tmp_path / "out"
    (output / "demo" / "seas").mkdir(parents=True)
    for name in ("manifest.csv", "data_report.json"):
        (output / "demo" / "seas" / name).write_bytes((demo_env.output / "demo" / "seas" / name).read_bytes())
    recipe = load_recipe(demo_env.recipe_file).override(image_size=(64, 64), train__epochs=1)
    common = {"recipe": recipe, "model": "lfd", "category": "mesh", "generator": "seas", "output": output,
              "device": "cpu", "seed": 42, "backbone_weights": "none"}
    monkeypatch.setattr(train_module, "native_bf16", lambda device: False)
    run = train(TrainJob(**common, precision="auto"))
    assert load_checkpoint(run / LAST)["meta"]["precision"] == "32-true"
    monkeypatch.setattr(train_module, "native_bf16", lambda device: True)  # e.g. the run moved to an AMX machine
    train(TrainJob(**common, resume=True, resume_epochs=2))
    resumed = load_checkpoint(run / LAST)
    assert resumed["epoch"] == 2 and resumed["meta"]["precision"] == "32-true"
    # the authors' numerics cannot take over half-way, nor come with bf16
    with pytest.raises(AnosegError, match="paper_numerics False → True"):
        train(TrainJob(**common, resume=True, resume_epochs=3, paper_numerics=True))
    with pytest.raises(AnosegError, match="--paper-numerics trains in fp32"):
        train(TrainJob(**common, resume=True, resume_epochs=3, paper_numerics=True, precision="bf16-mixed"))
    assert load_checkpoint(run / LAST)["epoch"] == 2
    fresh = train(TrainJob(**common, fresh=True, precision="auto"))
    assert load_checkpoint(fresh / LAST)["meta"]["precision"] == "bf16-mixed"
    # not given, a resumed run keeps its own (bf16 here) and a new run trains in fp32, even where bf16 is native
    train(TrainJob(**common, resume=True, resume_epochs=2))
    assert load_checkpoint(fresh / LAST)["meta"]["precision"] == "bf16-mixed"
    default = train(TrainJob(**{**common, "category": "disk"}))
    assert load_checkpoint(default / LAST)["meta"]["precision"] == "32-true"
