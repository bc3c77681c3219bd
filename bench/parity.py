"""Training parity of anoseg's LFD with the authors' code (HUST-SLOW/LFD), step by step and over seeds.

Two modes:

* ``--record-trace OUT.json --reference PATH``: run the authors' own ``LFD._train`` on a small fixed MVTec-layout
  set (``write_trace_dataset``) and write what it did: the file names of every batch, the loss and lr of every
  iteration, and per-tensor checksums of the initial and final weights. ``tests/engine/test_parity.py`` replays this
  trace with anoseg's code (it does not need the authors' code).
* default: train LFD per category for a fixed budget with several seeds, evaluate, and print mean ± std of pixel AP,
  F1-max and IoU (and image AUROC). With ``--reference PATH`` the authors' training and evaluation run on the same
  data in the same run, seeds interleaved, and a Welch two-sample t-test compares the two. ``--set train.KEY=VALUE``
  changes anoseg's recipe; each ``--variant LABEL:train.KEY=VALUE[,train.KEY=VALUE]`` adds an anoseg side with those
  settings, trained in the same run (seeds interleaved) and compared with the plain anoseg side.

The authors' code is written for one CUDA GPU and ImageNet weights. ``reference_lfd`` imports it unchanged from the
given checkout and only adapts the environment: ``.cuda()`` is a no-op, ``resnet18(pretrained=True)`` builds a
randomly initialised ResNet-18 (no download), ``thop`` (used only for its speed test) is stubbed, data loading uses
no worker processes, and scikit-learn ≥ 1.8's ``confusion_matrix_at_thresholds`` stands in for the private
``_binary_clf_curve`` the authors' IoU imports.

    python bench/parity.py --data-root DATA --generated GEN --categories a,b --seeds 0,1,2 --epochs 8 \\
        --reference /path/to/LFD
    python bench/parity.py --record-trace tests/engine/data/lfd_reference_trace.json --reference /path/to/LFD
    python bench/parity.py --categories weave,disk --seeds 0,1,2 --epochs 8 --size 64 \
        --variant warmup:train.warmup_iters=10 --variant augment:train.augment=[hflip,vflip]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------------------------
# The small fixed data set of the step-parity trace


TRACE_CATEGORY = "plate"
TRACE_DEFECT = "spot"
TRACE_SIZE = 128  # 8 images of 128² = 131,072 pixels: more than OHEM's min_kept, so its threshold rule is exercised
TRACE_COUNTS = {"generated": 4, "defect": 3, "good": 6}  # train = 4 + ⌊3/3⌋ + 6 = 11 images → batches of 8 and 3
TRACE_EPOCHS = 3
TRACE_SEED = 42


def trace_sample(kind: str, index: int, size: int = TRACE_SIZE) -> tuple[np.ndarray, np.ndarray | None]:
    """One deterministic training sample: an RGB uint8 image (size, size, 3) and a 0/255 mask (None for ``good``).

    A textured background with a bright rectangular defect; everything comes from ``numpy``'s PCG64 stream seeded
    by (kind, index), which is stable across numpy versions.
    """
    rng = np.random.default_rng([("generated", "defect", "good").index(kind), index])
    coarse = rng.integers(60, 190, (size // 8, size // 8, 3))
    image = np.repeat(np.repeat(coarse, 8, 0), 8, 1) + rng.integers(-20, 21, (size, size, 3))
    if kind == "good":
        return np.clip(image, 0, 255).astype(np.uint8), None
    mask = np.zeros((size, size), np.uint8)
    h, w = rng.integers(size // 10, size // 3, 2)
    top, left = rng.integers(0, size - h), rng.integers(0, size - w)
    mask[top:top + h, left:left + w] = 255
    image[mask > 0] = image[mask > 0] // 3 + 170
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_trace_dataset(root: Path) -> tuple[Path, Path]:
    """Write the trace set as ``root/original`` (MVTec AD layout) and ``root/generated`` (SeaS layout)."""
    from PIL import Image

    original, generated = root / "original" / TRACE_CATEGORY, root / "generated" / TRACE_CATEGORY / TRACE_DEFECT
    folders = {
        "generated": (generated / "image", generated / "mask", "{:03d}.png"),
        "defect": (original / "test" / TRACE_DEFECT, original / "ground_truth" / TRACE_DEFECT, "{:03d}_mask.png"),
        "good": (original / "train" / "good", None, None),
    }
    for kind, (image_dir, mask_dir, mask_name) in folders.items():
        for index in range(TRACE_COUNTS[kind]):
            image, mask = trace_sample(kind, index)
            image_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(image_dir / f"{index:03d}.png")
            if mask is not None:
                mask_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(mask_dir / mask_name.format(index))
    (original / "test" / "good").mkdir(parents=True, exist_ok=True)
    image, _ = trace_sample("good", 100)
    Image.fromarray(image).save(original / "test" / "good" / "000.png")
    return root / "original", root / "generated"


def trace_name(path: str) -> str:
    """``generated/001``, ``defect/000`` or ``good/004``: the kind and index of a trace-set file."""
    p = Path(path)
    kind = "generated" if p.parent.name == "image" else ("good" if p.parent.name == "good" else "defect")
    return f"{kind}/{p.stem}"


def tensor_checksums(state: dict) -> dict[str, list[float]]:
    """Per floating-point tensor: [sum, sum of squares] in float64 (sensitive to any element changing)."""
    import torch

    return {k: [float(v.double().sum()), float((v.double() ** 2).sum())]
            for k, v in state.items() if torch.is_floating_point(v)}


# ---------------------------------------------------------------------------------------------------------------------
# The authors' code, imported from a local checkout, on CPU


def reference_lfd(path: Path, dtype: str = "float32") -> types.SimpleNamespace:
    """Import the authors' ``models._LFD`` (and its dataset module) from ``path`` with the CPU adaptations.

    With ``dtype="float64"`` their ``.cuda()`` calls (on the model, the loss's class weights and every batch) move
    floating-point tensors to float64 instead: their training, unchanged, in double precision (the step-parity trace).
    """
    import torch
    import torch.nn as nn
    import torchvision

    path = Path(path).resolve()
    if not (path / "models" / "_LFD.py").is_file():
        sys.exit(f"--reference: {path} is not a checkout of HUST-SLOW/LFD (no models/_LFD.py)")
    sys.modules.setdefault("thop", types.SimpleNamespace(profile=None))
    ranking = importlib.import_module("sklearn.metrics._ranking")
    if not hasattr(ranking, "_binary_clf_curve"):  # scikit-learn ≥ 1.8 made it public under another name
        def binary_clf_curve(y_true, y_score, pos_label=None, sample_weight=None):
            _, fps, _, tps, thresholds = ranking.confusion_matrix_at_thresholds(
                y_true, y_score, pos_label=pos_label, sample_weight=sample_weight)
            return fps, tps, thresholds

        ranking._binary_clf_curve = binary_clf_curve
    if dtype == "float64":
        torch.Tensor.cuda = lambda self, *a, **k: self.double() if self.is_floating_point() else self
        nn.Module.cuda = lambda self, *a, **k: self.double()
    else:
        torch.Tensor.cuda = lambda self, *a, **k: self
        nn.Module.cuda = lambda self, *a, **k: self
    sys.path.insert(0, str(path))
    core = importlib.import_module("models.net.LFD_core")
    core.resnet18 = lambda *a, **k: torchvision.models.resnet18(weights=None)  # random init: no weights offline
    lfd = importlib.import_module("models._LFD")
    utils = importlib.import_module("utils.utils")
    mvtec = importlib.import_module("datasets.mvtec_ad")
    return types.SimpleNamespace(lfd=lfd, utils=utils, mvtec=mvtec, core=core)


def reference_config(original: Path, generated: Path, out: Path, size: int, epochs: int, test_epoch: int) -> dict:
    """The authors' ``configs/LFD.yaml`` with the paths, size and budget of this run (per-category models)."""
    return {
        "datasets": {"dataset_name": "mvtec_ad", "data_path": str(original), "generated_data_path": str(generated),
                     "img_resize": size, "uni_training": False},
        "device": "", "outputs": {"ckpt_path": str(out / "checkpoints"), "vis_path": str(out / "results")},
        "training": {"state": True, "scale_factor": 2, "start_epoch": 0, "max_epochs": epochs,
                     "save_epoch": epochs, "hide_bar": True, "batch_size": 8, "num_workers": 0, "lr": 0.01},
        "testing": {"state": True, "test_epoch": test_epoch, "vis": False},
        "eval_speed": {"state": False},
    }


def record_trace(reference: Path, out: Path, dtype: str = "float64") -> dict:
    """Run the authors' ``LFD._train`` on the trace set in ``dtype`` and write the trace JSON (module docstring).

    float64 (the default) makes the trace independent of the CPU that records it: float32 kernels of another
    instruction set or thread count sum in another order, and 6 SGD steps amplify that to ~1e-4 relative
    (docs/parity.md, "Float noise against real differences"); in float64 the same noise stays near 1e-12.
    """
    import torch

    ref = reference_lfd(reference, dtype)
    batches, losses, lrs, initial = [], [], [], {}

    class RecordingLoss(ref.lfd.FSOhemCELoss):
        def forward(self, predict, target, **kwargs):
            loss = super().forward(predict, target, **kwargs)
            losses.append(loss.item())
            return loss

    dataset_cls = ref.mvtec.MVTecTrainDataset
    original_getitem = dataset_cls.__getitem__
    fetched: list[str] = []

    def getitem(self, idx):
        fetched.append(trace_name(self.image_all_list[idx]))
        return original_getitem(self, idx)

    core_cls = ref.lfd.LFD_Core

    def make_core(scale_factor):
        model = core_cls(scale_factor)
        initial.update(tensor_checksums(model.state_dict()))
        return model

    scheduler_cls = ref.lfd.LR_Scheduler

    class RecordingScheduler(scheduler_cls):
        def step(self):
            lr = super().step()
            lrs.append(float(lr))
            # the batch of this iteration has been fetched in full by now
            batches.append(list(fetched))
            fetched.clear()
            return lr

    ref.lfd.FSOhemCELoss, dataset_cls.__getitem__, ref.lfd.LFD_Core = RecordingLoss, getitem, make_core
    ref.lfd.LR_Scheduler = RecordingScheduler
    with tempfile.TemporaryDirectory() as tmp:
        original, generated = write_trace_dataset(Path(tmp))
        cfg = reference_config(original, generated, Path(tmp) / "out", TRACE_SIZE, TRACE_EPOCHS, TRACE_EPOCHS)
        ref.utils.setup_seed(TRACE_SEED)
        runner = ref.lfd.LFD(cfg)
        runner._train("mvtec_ad", TRACE_CATEGORY)
        final = torch.load(Path(tmp) / "out" / "checkpoints" / TRACE_CATEGORY / f"model_epoch_{TRACE_EPOCHS}.pth",
                           map_location="cpu")
    trace = {
        "source": "HUST-SLOW/LFD LFD._train (models/_LFD.py), CPU, random init, recorded by bench/parity.py",
        "dtype": dtype, "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "seed": TRACE_SEED, "size": TRACE_SIZE, "epochs": TRACE_EPOCHS,
        "counts": TRACE_COUNTS, "batch_size": 8, "batches": batches, "loss": losses, "lr": lrs,
        "initial": initial, "final": tensor_checksums(final),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(trace, indent=1) + "\n")
    return trace



# ---------------------------------------------------------------------------------------------------------------------
# Replaying the trace with anoseg's own train(), and the margin between float noise and real differences

TRACE_RECIPE = """\
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
{extra}"""

#: Real differences planted in anoseg's training, each the smallest of its kind: the step-parity test must fail on
#: every one (docs/parity.md). Recipe plants change a setting; the others change one rule of the loop.
PLANTS = {
    "drop_last_partial_batch": {},
    "class_weights_1_3": {"class_weights": [1.0, 3.0]},
    "ohem_min_kept_minus_1": {"ohem_min_kept": 99_999},
    "lr_schedule_one_step_ahead": {},
}


def replay_trace(trace: dict, root: Path, precision: str = "64-true", plant: str | None = None) -> dict:
    """Train with anoseg's real ``train()`` on the trace set, only the batch *order* replayed from ``trace``.

    The batch partition, schedule length, loss, optimiser, initialisation and preprocessing are anoseg's own: each
    epoch's trace order is cut into the batch sizes anoseg's own loader gives. ``plant`` (a key of ``PLANTS``)
    introduces one real difference. Returns ``{"loss", "lr", "sizes", "initial", "final"}`` (per-iteration lists,
    anoseg's batch sizes per epoch, and the initial and final state dicts).
    """
    from unittest import mock

    import torch

    import anoseg.engine.train as train_module
    import anoseg.losses
    import anoseg.models
    from anoseg.engine.checkpoint import LAST, load_checkpoint
    from anoseg.engine.train import TrainJob, train
    from anoseg.jobs import PrepareJob
    from anoseg.recipes import load_recipe
    from anoseg.stages import run_prepare

    original, _ = write_trace_dataset(root / "data")
    settings = PLANTS[plant] if plant else {}
    extra = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in settings.items())
    recipe_file = root / "parity.yaml"
    recipe_file.write_text(TRACE_RECIPE.format(original=original, root=root / "data", category=TRACE_CATEGORY,
                                               size=trace["size"], epochs=trace["epochs"],
                                               batch_size=trace["batch_size"], extra=extra))
    recipe = load_recipe(recipe_file)
    output = root / "outputs"
    run_prepare(PrepareJob(recipe, output=output))
    record: dict = {"loss": [], "lr": [], "initial": None, "sizes": []}
    per_epoch = len(trace["batches"]) // trace["epochs"]
    real_loader, scheduled = train_module._loader, train_module.scheduled_lr
    forward = anoseg.losses.SegmentationLoss.forward
    create, keeps = anoseg.models.create_model, train_module.keeps_partial_batch

    class ReplayBatches:
        """Each epoch's trace order, cut into anoseg's own batch sizes for that epoch (set by ``set_epoch``)."""

        def __init__(self, dataset, sizes: list[list[int]]):
            self.index = {trace_name(path): i for i, path in enumerate(dataset.split.rows["image"])}
            self.sizes, self.epoch = sizes, 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return len(self.sizes[self.epoch])

        def __iter__(self):
            batches = trace["batches"][self.epoch * per_epoch:(self.epoch + 1) * per_epoch]
            order = [self.index[name] for batch in batches for name in batch]
            starts = np.cumsum([0, *self.sizes[self.epoch]])
            return iter([order[a:b] for a, b in itertools.pairwise(starts)])

    def replay_loader(dataset, job, epoch, fabric):
        real = real_loader(dataset, job, epoch, fabric)
        for e in range(trace["epochs"]):  # anoseg's own partition of every epoch
            train_module._set_epoch(real, e)
            record["sizes"].append([len(t) for _, t in real])
        replay = ReplayBatches(dataset, record["sizes"])
        replay.set_epoch(epoch)
        return torch.utils.data.DataLoader(dataset, batch_sampler=replay, num_workers=0)

    def recording_lr(iteration, *args, **kwargs):
        if plant == "lr_schedule_one_step_ahead":
            iteration += 1
        record["lr"].append(scheduled(iteration, *args, **kwargs))
        return record["lr"][-1]

    def recording_forward(self, outputs, target):
        loss = forward(self, outputs, target)
        record["loss"].append(loss.item())
        return loss

    def recording_create(*args, **kwargs):
        model = create(*args, **kwargs)
        record["initial"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    def keeps_planted(model, world_size=1):
        return False if plant == "drop_last_partial_batch" else keeps(model, world_size)

    with mock.patch.object(train_module, "_loader", replay_loader), \
            mock.patch.object(train_module, "scheduled_lr", recording_lr), \
            mock.patch.object(train_module, "keeps_partial_batch", keeps_planted), \
            mock.patch.object(anoseg.losses.SegmentationLoss, "forward", recording_forward), \
            mock.patch.object(anoseg.models, "create_model", recording_create):
        run = train(TrainJob(recipe=recipe, model="lfd", category=TRACE_CATEGORY, generator="generated",
                             output=output, device="cpu", seed=trace["seed"], backbone_weights="none",
                             paper_numerics=True, precision=precision))
    record["final"] = load_checkpoint(run / LAST)["state_dict"]
    return record


def checksum_deviation(state: dict, expected: dict) -> float:
    """The largest relative deviation of ``state``'s per-tensor [sum, sum of squares] from ``expected``'s.

    Tensors are matched by position (anoseg's and the authors' modules are named differently); a sum is compared on
    the scale sqrt(n · sum of squares) that bounds it, a sum of squares relative to itself. ``inf`` when the
    tensor counts differ.
    """
    ours = [v.double() for v in state.values() if v.is_floating_point()]
    if len(ours) != len(expected):
        return math.inf
    worst = 0.0
    for value, (ref_sum, ref_sq) in zip(ours, expected.values(), strict=True):
        scale = max(ref_sq, 1e-300) ** 0.5 * value.numel() ** 0.5
        worst = max(worst, abs(float(value.sum()) - ref_sum) / scale,
                    abs(float((value ** 2).sum()) - ref_sq) / max(ref_sq, 1e-300))
    return worst


def trace_deviation(record: dict, trace: dict) -> dict[str, float]:
    """How far a replay is from the trace: the largest relative loss difference over the iterations (``inf`` when
    the iteration counts differ) and ``checksum_deviation`` of the final weights."""
    if len(record["loss"]) != len(trace["loss"]):
        loss = math.inf
    else:
        loss = max(abs(a - b) / abs(b) for a, b in zip(record["loss"], trace["loss"], strict=True))
    return {"loss": loss, "weights": checksum_deviation(record["final"], trace["final"])}


#: CPU settings under which the float noise is measured: ATen/oneDNN kernels of another instruction set, and thread
#: counts (they change the reduction order).
MARGIN_SETTINGS = {
    "default, 1 thread": {"OMP_NUM_THREADS": "1"},
    "default, 2 threads": {"OMP_NUM_THREADS": "2"},
    "avx2, 1 thread": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx2, 2 threads": {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512, 2 threads": {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
}


def _replay_deviation(trace_file: Path, precision: str, plant: str | None) -> dict[str, float]:
    """One replay in this process: its deviation from the trace (run in a subprocess by ``margin``)."""
    trace = json.loads(trace_file.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        return trace_deviation(replay_trace(trace, Path(tmp), precision, plant), trace)


def margin(trace_file: Path, precision: str) -> str:
    """Replay ``trace_file`` under every ``MARGIN_SETTINGS`` entry and with every plant; a markdown table."""
    import subprocess

    def run(env: dict[str, str], plant: str | None) -> dict[str, float]:
        code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); import parity; "
                f"print(json.dumps(parity._replay_deviation(parity.Path({str(trace_file)!r}), {precision!r}, "
                f"{plant!r})))")
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    lines = [f"replays of {trace_file.name} in {precision}", "",
             "| run | loss: max rel. diff | weights: max rel. diff |", "|---|---|---|"]
    for label, env in MARGIN_SETTINGS.items():
        d = run(env, None)
        lines.append(f"| float noise: {label} | {d['loss']:.2e} | {d['weights']:.2e} |")
    for plant in PLANTS:
        d = run(MARGIN_SETTINGS["default, 2 threads"], plant)
        lines.append(f"| planted: {plant} | {d['loss']:.2e} | {d['weights']:.2e} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Over seeds: per-category LFD, anoseg vs the authors, same data and budget

METRICS = ("pixel_ap", "pixel_f1max", "iou", "pixel_auroc", "image_auroc")
REFERENCE_CSV_ROWS = {"ap_px": "pixel_ap", "f1_px": "pixel_f1max", "iou_px": "iou", "auroc_px": "pixel_auroc",
                      "auroc_sp": "image_auroc"}


def make_bench_data(root: Path, size: int) -> tuple[Path, Path]:
    """anoseg's demo data (``anoseg synth``) with every image and mask resized to ``size``² on disk.

    Native-size files make anoseg's ``clean`` masks and the authors' bilinear-then-truncate masks the same binary
    masks, so the comparison measures training and evaluation, not the (documented) mask protocol.
    """
    from PIL import Image

    from anoseg.data.images import is_image_file
    from anoseg.data.synth import make_demo_data

    paths = make_demo_data(root, seed=0)
    for file in sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p)):
        image = Image.open(file)
        is_mask = file.parent.name == "mask" or "ground_truth" in file.parts
        if is_mask:
            image = image.convert("L").point(lambda v: 255 if v > 127 else 0)
        resample = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
        image.resize((size, size), resample).save(file)
    return Path(paths["data_root"]), Path(paths["generated_root"])


ANOSEG_RECIPE = """\
name: parity_bench
layout: mvtec_ad
data_root: {data_root}
generated_root: {generated_root}
generator: seas
categories: [{categories}]
image_size: [{size}, {size}]
train:
  epochs: {epochs}
  eval_epoch: null
  checkpoint_every: {epochs}
  workers: 0
"""


def run_anoseg(recipe, output: Path, category: str, seed: int, protocol: str, **train_options: object
               ) -> dict[str, float]:
    """Train anoseg's LFD on one category with one seed (the recipe's defaults; ``train_options`` go to its
    ``TrainJob``, e.g. ``precision``) and evaluate the last epoch."""
    from anoseg.engine.evaluate import EvalJob, evaluate
    from anoseg.engine.train import TrainJob, train

    common = {"recipe": recipe, "model": "lfd", "category": category, "generator": "seas", "output": output,
              "device": "cpu", "seed": seed}  # each seed has its own run folder: train and eval both need it
    train(TrainJob(**common, backbone_weights="none", fresh=True, **train_options))
    metrics = evaluate(EvalJob(**common, protocol=protocol, overlays=0))
    return {m: 100.0 * metrics["categories"][category][m] for m in METRICS}


def run_reference(ref, data_root: Path, generated_root: Path, out: Path, category: str, seed: int, size: int,
                  epochs: int) -> dict[str, float]:
    """Train and test the authors' LFD (their ``_train`` and ``test``) on one category with one seed."""
    cfg = reference_config(data_root, generated_root, out, size, epochs, epochs)
    ref.mvtec._CLASSNAMES = [category]  # their test() loops over this list
    (out / "results").mkdir(parents=True, exist_ok=True)  # their main script makes this folder
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        ref.utils.setup_seed(seed)
        runner = ref.lfd.LFD(cfg)
        runner._train("mvtec_ad", category)
        runner.test()
    with open(out / "results" / f"metrics_epoch_{epochs}.csv", newline="") as f:
        rows = {row[0]: row[1:] for row in csv.reader(f)}
    column = rows["class_name"].index(category)
    return {REFERENCE_CSV_ROWS[key]: float(values[column]) for key, values in rows.items() if key in REFERENCE_CSV_ROWS}


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's two-sample t statistic and two-sided p-value (scipy.stats.ttest_ind, equal_var=False)."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return math.nan, math.nan
    result = ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def summarise(results: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """A Markdown table: per category and metric, mean ± std (sample std) of each side, and Welch's test.

    Two sides (anoseg, authors): their difference, t and p. More sides, or sides without the authors: each other
    side against the first (``Δ (t, p)``). With several categories and the same seeds in each, a ``mean`` row per
    metric averages each seed's values over the categories first (so its std is the spread over seeds).
    """
    sides = list(results)
    pair = len(sides) == 2 and "authors" in sides
    head = "| category | metric | " + " | ".join(f"{s} (mean ± std, n)" for s in sides)
    others = "".join(f" | {s} − {sides[0]} (t, p)" for s in sides[1:])
    head += " | difference | Welch t | p |" if pair else others + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    tables = {side: dict(per_category) for side, per_category in results.items()}
    categories = list(next(iter(tables.values())))
    same_seeds = all(len({len(tables[s][c][m]) for c in categories for m in METRICS}) == 1 for s in sides)
    if len(categories) > 1 and same_seeds:  # each side: every category has the same runs (seeds), in seed order
        for side in sides:
            tables[side]["mean"] = {m: [statistics.mean(v) for v in zip(*(tables[side][c][m] for c in categories),
                                                                         strict=True)] for m in METRICS}
        categories.append("mean")
    for category in categories:
        for metric in METRICS:
            cells = []
            for side in sides:
                values = tables[side][category][metric]
                std = statistics.stdev(values) if len(values) > 1 else math.nan
                cells.append(f"{statistics.mean(values):.1f} ± {std:.1f} ({len(values)})")
            row = f"| {category} | {metric} | " + " | ".join(cells)
            if pair:
                a, b = (tables[s][category][metric] for s in sides)
                t, p = welch(a, b)
                row += f" | {statistics.mean(a) - statistics.mean(b):+.1f} | {t:.2f} | {p:.2f}"
            else:
                base = tables[sides[0]][category][metric]
                for side in sides[1:]:
                    other = tables[side][category][metric]
                    t, p = welch(other, base)
                    row += f" | {statistics.mean(other) - statistics.mean(base):+.1f} ({t:.2f}, {p:.2f})"
            lines.append(row + " |")
    return "\n".join(lines)


def collect(runs: list[dict]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """side → category → metric → values, from the per-run records of one or more ``--json`` files."""
    results: dict = {}
    for run in runs:
        per_metric = results.setdefault(run["side"], {}).setdefault(run["category"], {m: [] for m in METRICS})
        for metric in METRICS:
            per_metric[metric].append(run[metric])
    return results


def run_seeds(args: argparse.Namespace) -> dict:
    """The over-seeds comparison (see the module docstring); prints the table and returns all per-run numbers."""
    from anoseg.jobs import PrepareJob
    from anoseg.recipes import load_recipe
    from anoseg.stages import run_prepare

    work = Path(tempfile.mkdtemp(prefix="anoseg-parity-"))
    if args.data_root:
        data_root, generated_root = args.data_root, args.generated
    else:
        data_root, generated_root = make_bench_data(work / "data", args.size)
    categories = args.categories.split(",") if args.categories else sorted(
        p.name for p in data_root.iterdir() if (p / "ground_truth").is_dir())
    base = yaml.safe_load(ANOSEG_RECIPE.format(data_root=data_root, generated_root=generated_root.parent,
                                               categories=", ".join(categories), size=args.size, epochs=args.epochs))
    base["train"].update(args.set)
    setups = {}  # anoseg side → (recipe, outputs root, TrainJob options)
    for label, changes in [(args.label, {}), *args.variant]:
        options = {key.removeprefix("job."): value for key, value in changes.items() if key.startswith("job.")}
        changes = {key: value for key, value in changes.items() if not key.startswith("job.")}
        recipe_file = work / f"parity_bench_{label}.yaml"
        recipe_file.write_text(yaml.safe_dump({**base, "train": {**base["train"], **changes}}))
        recipe = load_recipe(recipe_file)  # validated like any recipe: a wrong key or value stops here
        output = work / "outputs" / label
        run_prepare(PrepareJob(recipe, output=output, generated=generated_root,
                               categories=tuple(categories) if categories else None))
        setups[label] = (recipe, output, options)
    ref = reference_lfd(args.reference) if args.reference else None
    sides = list(setups) + (["authors"] if ref else [])
    results = {side: {c: {m: [] for m in METRICS} for c in categories} for side in sides}
    runs = []
    for seed in args.seeds:
        for category in categories:
            for side in sides:  # interleaved, so machine load affects both sides alike
                started = time.perf_counter()
                if side in setups:
                    recipe, output, options = setups[side]
                    scores = run_anoseg(recipe, output, category, seed, args.protocol, **options)
                else:
                    scores = run_reference(ref, data_root, generated_root, work / "reference" / f"{seed}-{category}",
                                           category, seed, args.size, args.epochs)
                for metric in METRICS:
                    results[side][category][metric].append(scores[metric])
                runs.append({"side": side, "category": category, "seed": seed, **scores,
                             "seconds": time.perf_counter() - started})
                print(f"{side:10s} {category:10s} seed {seed}: " + "  ".join(f"{m} {scores[m]:.1f}" for m in METRICS)
                      + f"  ({runs[-1]['seconds']:.0f} s)", flush=True)
    print()
    print(f"LFD per category, {args.epochs} epochs, {args.size}², batch 8, random init, seeds {args.seeds}"
          f" (anoseg protocol {args.protocol}; --set {args.set}; variants {dict(args.variant)}); metrics in %")
    print(summarise(results))
    return {"epochs": args.epochs, "size": args.size, "seeds": args.seeds, "set": args.set,
            "variants": dict(args.variant), "runs": runs, "results": results}


def train_setting(text: str) -> tuple[str, object]:
    """``train.KEY=VALUE`` → (KEY, VALUE parsed as YAML: ``50`` is an int, ``[hflip,vflip]`` a list).
    ``job.KEY=VALUE`` (a ``TrainJob`` field such as ``job.precision=bf16-mixed``) keeps its ``job.`` prefix."""
    key, sep, value = text.partition("=")
    if key.startswith("job.") and sep and key.removeprefix("job."):
        return key, yaml.safe_load(value)
    if not sep or not key.startswith("train.") or not key.removeprefix("train."):
        raise argparse.ArgumentTypeError(f"expected train.KEY=VALUE or job.KEY=VALUE, got {text!r}")
    return key.removeprefix("train."), yaml.safe_load(value)


def variant(text: str) -> tuple[str, dict]:
    """``LABEL:train.KEY=VALUE[,train.KEY=VALUE...]`` → (LABEL, {KEY: VALUE}); commas inside [...] stay in a value."""
    label, sep, rest = text.partition(":")
    if not sep or not label or label in ("anoseg", "authors"):
        raise argparse.ArgumentTypeError(f"expected LABEL:train.KEY=VALUE[,...] with a new label, got {text!r}")
    items, depth, start = [], 0, 0
    for i, char in enumerate(rest + ","):
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            items.append(rest[start:i])
            start = i + 1
    return label, dict(train_setting(item) for item in items)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, help="local checkout of HUST-SLOW/LFD (the authors' code)")
    parser.add_argument("--record-trace", type=Path, help="write the step-parity trace JSON here and stop")
    parser.add_argument("--trace-dtype", choices=["float64", "float32"], default="float64",
                        help="precision of the recorded trace (float64: independent of the recording CPU)")
    parser.add_argument("--margin", type=Path, metavar="TRACE.json",
                        help="replay this trace under several CPU settings and with each planted difference; print "
                             "the deviations (docs/parity.md) and stop")
    parser.add_argument("--margin-precision", default="64-true", choices=["64-true", "32-true"],
                        help="anoseg's precision for --margin replays")
    parser.add_argument("--data-root", type=Path, help="MVTec-layout data (default: anoseg's demo data, resized)")
    parser.add_argument("--generated", type=Path, help="SeaS-layout pairs <generated>/<category>/<defect>/...")
    parser.add_argument("--categories", help="comma-separated (default: every category)")
    parser.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=160, help="image side (a multiple of 32)")
    parser.add_argument("--protocol", default="clean", choices=["clean", "lfd-compat"], help="anoseg's eval protocol")
    parser.add_argument("--set", type=train_setting, action="append", default=[], metavar="train.KEY=VALUE",
                        help="a recipe train setting for anoseg's runs (repeatable), e.g. train.warmup_iters=10")
    parser.add_argument("--variant", type=variant, action="append", default=[], metavar="LABEL:train.KEY=VALUE,...",
                        help="another anoseg side with these train settings, compared with the plain one (repeatable)")
    parser.add_argument("--label", default="anoseg", help="name of the plain anoseg side (e.g. a --set run to merge)")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    parser.add_argument("--merge", type=Path, nargs="+", help="print the table of earlier --json files together")
    args = parser.parse_args(argv)
    args.set = dict(args.set)
    if any(key.startswith("job.") for key in args.set):
        parser.error("--set takes train.KEY=VALUE; job.KEY=VALUE belongs in a --variant")
    if (args.data_root is None) != (args.generated is None):
        parser.error("--data-root and --generated go together")
    if args.record_trace:
        if args.reference is None:
            parser.error("--record-trace needs --reference")
        trace = record_trace(args.reference, args.record_trace, args.trace_dtype)
        print(f"wrote {args.record_trace}: {len(trace['loss'])} iterations, losses {trace['loss']}")
        return
    if args.margin:
        print(margin(args.margin, args.margin_precision))
        return
    if args.merge:
        runs = [run for file in args.merge for run in json.loads(file.read_text())["runs"]]
        print(summarise(collect(runs)))
        return
    report = run_seeds(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
