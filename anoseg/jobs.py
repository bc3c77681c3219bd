"""The typed jobs the command line hands to the stages: one dataclass per command, holding its parsed options.

``cli.py`` parses options into one of these and calls the one stage function of ``stages.py`` that takes it; every
rule about the values (defaults from the recipe, contradictions, which runs to make) is applied by the stage, so a
script or a test can call a stage with a job and get exactly what the command does. Light on purpose (no torch,
no pandas): the CLI builds jobs without slowing ``anoseg --help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from anoseg.constants import DEMO_TRAIN_GOOD, REPORT_FORMATS, RESOLUTIONS
from anoseg.paths import DEFAULT_SEED

if TYPE_CHECKING:
    from anoseg.recipes import Recipe

OUTPUTS = Path("outputs")  # the default root of every output


@dataclass(frozen=True)
class SynthJob:
    """``anoseg synth``: write the demo dataset into ``out``; the same ``seed`` writes the same files; ``train_good``
    good training images per category (the extra ones change no other file)."""

    out: Path = Path("data/demo")
    seed: int = 0
    train_good: int = DEMO_TRAIN_GOOD  # train/good images per category (the default's, or more)


@dataclass(frozen=True)
class PrepareJob:
    """``anoseg prepare``: split ``recipe``'s data (+ generated pairs) into ``<output>/<dataset>/<generator>/``.

    ``generated``: the generated pairs' folder (None = the recipe's ``<generated_root>/<generator>``);
    ``categories``: None = the recipe's (or every category found); ``strict``: stop at the first bad file;
    ``dry_run``: check leniently and show what was found and the split, write nothing.
    """

    recipe: Recipe
    output: Path = OUTPUTS
    generated: Path | None = None
    categories: tuple[str, ...] | None = None
    strict: bool = True
    mask_threshold: int | None = None  # mask pixels above it are defect (None: > 0)
    drop_empty_generated: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class InitJob:
    """``anoseg init``: what ``recipe.data_root`` holds read with ``recipe.layout``, and how it would split."""

    recipe: Recipe


@dataclass(frozen=True)
class RunsJob:
    """What names the run folders of ``model`` (one per entry of ``categories``; None = the recipe's mode) and
    where they run: shared by ``train`` and ``eval``. A field of the same name in the engine job (``TrainJob``,
    ``EvalJob``) is carried over by name (``stages.engine_jobs``), never copied by hand; the recipe carries every
    recipe setting (``Recipe.override``), so it is not a field here."""

    recipe: Recipe
    model: str
    categories: tuple[str, ...] | None = None
    output: Path = OUTPUTS
    seed: int = DEFAULT_SEED
    device: str = "auto"


@dataclass(frozen=True)
class TrainRunsJob(RunsJob):
    """``anoseg train``: one training run per entry of ``categories`` (``all`` = the unified model; None = the
    recipe's mode). ``epochs``: the recipe's already carries ``--epochs``; with ``resume`` it also lets a run go
    on to more epochs than it was started with (None = each run's own)."""

    devices: int = 1
    precision: str | None = None  # None: 32-true for a new run (DEFAULT_PRECISION), a resumed run keeps its own
    backbone_weights: str = "imagenet"
    download_weights: bool = False
    resume: bool = False
    fresh: bool = False
    epochs: int | None = None
    paper_numerics: bool = False  # these three: see anoseg.engine.train.TrainJob
    compile: bool = False
    logger: str = "csv"
    select: str | None = None  # "val:<metric>": after training, choose the kept checkpoint best on validation


@dataclass(frozen=True)
class EvalRunsJob(RunsJob):
    """``anoseg eval``: evaluate the run(s) of ``model`` named by ``categories`` (None = the recipe's mode)."""

    epoch: int | None = None  # None: the recipe's eval_epoch, else the last
    protocol: str | None = None  # None: the recipe's
    save_scores: bool = False
    overlays: int = 4
    resolution: str = RESOLUTIONS[0]
    aupro: bool = False
    select: str | None = None  # "val:<metric>": evaluate the kept checkpoint best on the validation split
    target_fpr: tuple[str, ...] = ()  # operating points "LEVEL:FRACTION", e.g. "image:0.01" (docs/operating-points.md)
    target_recall: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportJob:
    """``anoseg report``: the tables and figures of ``dataset`` (None = every dataset under ``output``)."""

    output: Path = OUTPUTS
    dataset: str | None = None
    out: Path | None = None  # the markdown file (None: <output>/report.md)
    fmt: str = REPORT_FORMATS[0]
    figures: bool = True
    extra_metrics: tuple[str, ...] = ()  # optional columns, e.g. ("pixel_aupro",)
    ci: bool = False  # a table of image-level metrics with bootstrap intervals (from eval --save-scores)
    by: str | None = None  # a breakdown (REPORT_BY): "defect" = tables per defect type


@dataclass(frozen=True)
class BenchJob:
    """``anoseg bench``: cost and latency of ``models`` (None = every registered one) at ``size = (H, W)``."""

    models: tuple[str, ...] | None = None
    size: tuple[int, int] = (256, 256)
    device: str = "auto"
    runs: int = 30
    warmup: int = 5
    onnx: bool = False
    compile_model: bool = False
    output: Path = OUTPUTS
    batches: tuple[int, ...] = (1,)  # batch sizes timed; batch 1 always (the main columns), others for throughput


@dataclass(frozen=True)
class GenerateJob:
    """``anoseg generate``: ``count`` defect pairs per category made by ``method`` from train/good images only.

    ``categories``: None = the recipe's; ``out``: None = ``<recipe generated_root>/<method>``."""

    recipe: Recipe
    method: str
    categories: tuple[str, ...] | None = None
    count: int = 20
    out: Path | None = None
    seed: int = DEFAULT_SEED
    textures: Path | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class ExportJob:
    """``anoseg export``: ``checkpoint`` → one ONNX or TorchScript file plus its JSON sidecar, verified."""

    checkpoint: Path
    fmt: str = "onnx"
    out: Path | None = None
    image_size: tuple[int, int] | None = None  # None: the size the model was trained at
    dynamic: bool = False
    exporter: str = "auto"
    threshold: float | None = None  # None: the ones `anoseg eval` found for this checkpoint
    operating_point: str | None = None  # which stored operating point's thresholds (None: the eval's deployed one)


@dataclass(frozen=True)
class PredictJob:
    """``anoseg predict``: which images, which model (``checkpoint`` or exported ``model_file``), the decision
    threshold (None: eval's; ``category`` picks a unified model's per-category one), where to write (None: a new
    ``outputs/predict/<date-time>``), and how to run the line (None: sized for the machine)."""

    sources: tuple[Path, ...]
    checkpoint: Path | None = None
    model_file: Path | None = None
    threshold: float | None = None
    category: str | None = None
    out: Path | None = None
    overwrite: bool = False
    device: str = "auto"
    batch_size: int | None = None
    overlays: bool = True
    workers: int | None = None  # decoding processes (0: decode in the main process)
    operating_point: str | None = None  # which stored operating point's threshold (None: the eval's deployed one)


@dataclass(frozen=True)
class SweepJob:
    """``anoseg sweep``: the command-line side of a sweep; each field left None falls back to the sweep file's value
    (``sweep_file``), then to the default. ``assignments`` are ``KEY=VALUE`` recipe overrides (a key given twice or
    more is a grid axis)."""

    sweep_file: Path | None = None
    recipe: str | None = None
    models: tuple[str, ...] | None = None
    generators: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None
    seeds: tuple[str, ...] | None = None  # as typed; the stage says which one is not a whole number
    assignments: tuple[str, ...] = ()
    name: str | None = None
    output: Path = OUTPUTS
    device: str | None = None
    jobs: int | None = None  # None: one per CUDA device, else 1
    executor: str = "local"
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None  # SLURM; None: the cluster's default
    timeout_min: int = 24 * 60
    dry_run: bool = False
    report: bool = True


@dataclass(frozen=True)
class ModelsJob:
    """``anoseg models``: the registry as a table, or its names one per line."""

    names_only: bool = False
