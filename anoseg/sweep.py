"""``anoseg sweep``: a grid of models × generators × categories × seeds (× recipe overrides), each cell run as
prepare → train → eval, then ``report``.

Design (see docs/sweep.md):

- A cell is run as ``anoseg`` CLI commands in subprocesses, so a cell does exactly what its ``--dry-run`` line
  says, its output goes to its own log file, and a crash in one cell cannot take the sweep down.
- The cells run on submitit (https://github.com/facebookincubator/submitit): ``LocalExecutor`` (one worker process
  per cell) on this machine, ``AutoExecutor`` on a SLURM cluster, ``DebugExecutor`` (in-process) for debugging. A
  thread pool of ``jobs`` threads only bounds how many cells are submitted at once; each thread owns one device
  slot (one GPU per slot on CUDA machines).
- Idempotent: a cell whose evaluation of the expected checkpoint exists is skipped before submission; a run stopped
  half-way is continued with ``train --resume``; a manifest that exists is not prepared again.
- Records: ``<output>/sweeps/<name>/`` holds one JSON per cell (status, stage, one-line error, log, run folder),
  the cells' logs, the derived recipes (recipe + overrides) and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge, Le, MinLen

from anoseg.constants import ALL_CATEGORIES, ANOMALY, DEVICE_PATTERN, SWEEP_SCHEMA
from anoseg.errors import AnosegError
from anoseg.io import check_output, make_folder, write_json
from anoseg.paths import DEFAULT_SEED, manifest_path, run_dir, sweep_dir

DONE, SKIPPED, FAILED, RUNNING = "done", "skipped", "failed", "running"


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep. ``settings`` are recipe overrides applied to every cell (dotted keys, e.g. ``train.epochs``);
    ``grid`` maps dotted keys to lists of values, each list one more axis of the grid."""

    name: str
    recipe: str
    models: tuple[str, ...]
    generators: tuple[str, ...]
    categories: tuple[str, ...] | None = None  # None: the recipe's mode (``all`` when unified, else each category)
    seeds: tuple[int, ...] = (DEFAULT_SEED,)
    settings: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    device: str = "auto"
    backbone_weights: str = "imagenet"
    save_scores: bool = True


@dataclass(frozen=True, eq=False)  # one object per variant in a plan: identity is equality (overrides hold lists)
class Variant:
    """One combination of recipe overrides: its recipe (a name, or a derived YAML) and its outputs root."""

    tag: str  # "" when the grid has no override axis
    recipe: str
    recipe_file: Path | None  # the derived recipe to write, None when ``recipe`` is used as given
    overrides: dict[str, Any]
    output: Path
    dataset: str
    epochs: int
    eval_epoch: int | None
    run_categories: tuple[str, ...]  # ("all",) for a unified model, else one run per category


@dataclass(frozen=True)
class Cell:
    """One run of the grid: ``model`` trained on ``category`` of ``generator``'s data with ``seed``, in ``variant``."""

    model: str
    generator: str
    category: str
    seed: int
    variant: Variant

    @property
    def key(self) -> str:
        """A file-name-safe identifier, unique in the sweep."""
        parts = [self.variant.tag.replace("/", "_")] if self.variant.tag else []
        return "__".join([*parts, self.model, self.generator, self.category, f"seed_{self.seed}"])

    @property
    def label(self) -> str:
        """How the cell is shown: ``lfd · seas · all · seed 0 [train.lr=0.03]``."""
        text = f"{self.model} · {self.generator} · {self.category} · seed {self.seed}"
        return f"{text} [{self.variant.tag}]" if self.variant.tag else text

    @property
    def run(self) -> Path:
        """The run folder that train writes and eval reads (``anoseg.paths.run_dir``)."""
        v = self.variant
        return run_dir(v.output, v.dataset, self.generator, self.model, self.category, self.seed)

    @property
    def result_epoch(self) -> int:
        """The epoch eval scores: the recipe's eval epoch, or the last one (also when the run is shorter)."""
        v = self.variant
        return v.epochs if v.eval_epoch is None else min(v.eval_epoch, v.epochs)


@dataclass(frozen=True)
class Plan:
    """Everything the workers need: cells to run, the commands' common settings, and where records go."""

    spec: SweepSpec
    cells: tuple[Cell, ...]
    variants: tuple[Variant, ...]
    output: Path
    records: Path
    cwd: Path
    python: str = sys.executable


def anoseg_command(*args: str) -> list[str]:
    """The argv of one ``anoseg`` CLI call, with this interpreter (so the same install runs every cell)."""
    return [sys.executable, "-m", "anoseg.cli", *args]


def prepare_command(variant: Variant, generator: str) -> list[str]:
    """``anoseg prepare`` for one (variant, generator): the manifest every cell of that pair reads."""
    return anoseg_command("prepare", "--recipe", variant.recipe, "--generator", generator,
                          "--output", str(variant.output))


def cell_commands(cell: Cell, spec: SweepSpec, *, resume: bool = False, device: str | None = None) -> list[list[str]]:
    """The ``anoseg train`` and ``anoseg eval`` calls of one cell (``resume``: continue a run stopped half-way)."""
    v = cell.variant
    common = ["--recipe", v.recipe, "--model", cell.model, "--generator", cell.generator, "--category",
              cell.category, "--seed", str(cell.seed), "--output", str(v.output), "--device", device or spec.device]
    # --epochs explicitly: a resumed run then trains to the sweep's length even if it was started with another
    train = ["train", *common, "--epochs", str(v.epochs), "--backbone-weights", spec.backbone_weights,
             *(["--resume"] if resume else [])]
    evaluate = ["eval", *common, "--epoch", str(cell.result_epoch), *(["--save-scores"] if spec.save_scores else [])]
    return [anoseg_command(*train), anoseg_command(*evaluate)]


# ---- the sweep specification ----------------------------------------------------------------------------------------

Name = Annotated[str, MinLen(1)]
Seed = Annotated[int, Ge(0), Le(2**32 - 1)]  # what `anoseg train --seed` takes


@dataclass(frozen=True)
class SweepFile:
    """What a sweep YAML may hold (each key optional; ``SWEEP_KEYS``). ``sweep_settings`` checks a file's values,
    and the command line's, against these annotations as a recipe's are checked (``anoseg.recipes.check_values``):
    a list where a list is meant (``models: lfd`` is refused, ``models: [lfd]`` is right), whole-number seeds."""

    name: Name | None = None
    recipe: Name | None = None
    models: tuple[Name, ...] | None = None
    generators: tuple[Name, ...] | None = None
    categories: tuple[Name, ...] | None = None
    seeds: tuple[Seed, ...] | None = None
    set: dict[str, Any] | None = None  # recipe overrides for every cell (dotted keys), checked by Recipe.override
    grid: dict[str, Annotated[list[Any], MinLen(1)]] | None = None  # each key's list: one more grid axis
    device: str | None = None
    backbone_weights: Name | None = None
    save_scores: bool | None = None


SWEEP_KEYS = {f.name for f in dataclasses.fields(SweepFile)}


def sweep_settings(values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` (a sweep file's, or the command line's under the same keys) checked against ``SweepFile``; returns
    them. Raises ``AnosegError`` ``"<where>: <key>: <problem>"`` in one line: an unknown key, a wrong type or range,
    a device that is not auto, cpu, cuda or cuda:N, a name that is not a plain folder name."""
    import re

    from anoseg.recipes import check_values

    unknown = sorted(map(str, set(values) - SWEEP_KEYS))
    if unknown:
        raise AnosegError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(SWEEP_KEYS))}")
    checked = check_values(SweepFile, values, where)
    if checked.device is not None and not re.fullmatch(DEVICE_PATTERN, checked.device):
        raise AnosegError(f"{where}: device: {checked.device!r} is not a device; use auto, cpu, cuda or cuda:N")
    if checked.name is not None and (checked.name in (".", "..") or re.search(r"[/\\]", checked.name)):
        raise AnosegError(f"{where}: name: {checked.name!r} must be a plain folder name (records go to "
                          "<output>/sweeps/NAME)")
    return values


def load_sweep_file(path: Path) -> dict[str, Any]:
    """Read a sweep YAML into a dict of its settings (``SweepFile``), checked by ``sweep_settings``; ``name``
    defaults to the file's stem. Raises ``AnosegError`` in one line naming the file and the key."""
    from anoseg.recipes import read_yaml_mapping

    raw = sweep_settings(read_yaml_mapping(path, "sweep"), f"sweep {path}")
    raw.setdefault("name", path.stem)
    return raw


def build_spec(file: dict[str, Any], given: dict[str, Any], settings: dict[str, Any],
               grid: dict[str, tuple[Any, ...]]) -> SweepSpec:
    """The sweep to run: the command line's values ``given`` (``SweepFile`` keys; None = not given, checked by
    ``sweep_settings``) over the sweep file's ``file`` (from ``load_sweep_file``), over the defaults; ``settings``
    and ``grid`` (from ``--set``) over the file's ``set`` and ``grid``."""
    given = sweep_settings({k: v for k, v in given.items() if v is not None}, "sweep options")
    merged = {**file, **given}
    return SweepSpec(
        name=merged.get("name") or "sweep", recipe=merged.get("recipe") or "demo",
        models=tuple(merged.get("models") or ()), generators=tuple(merged.get("generators") or ()),
        categories=tuple(merged.get("categories") or ()) or None,
        seeds=tuple(merged["seeds"]) if merged.get("seeds") is not None else (DEFAULT_SEED,),
        settings={**(file.get("set") or {}), **settings},
        grid={**{k: tuple(v) for k, v in (file.get("grid") or {}).items()}, **grid},
        device=merged.get("device") or "auto", backbone_weights=merged.get("backbone_weights") or "imagenet",
        save_scores=merged.get("save_scores") is not False)


def parse_assignments(items: Iterable[str]) -> tuple[dict[str, Any], dict[str, tuple[Any, ...]]]:
    """``--set KEY=VALUE`` options → (constant settings, grid axes). A key given twice or more becomes an axis.

    Values are read as YAML scalars/lists (``2`` → int, ``1e-6`` → float, ``[hflip]`` → list; ``recipes.load_yaml``).
    """
    import yaml

    from anoseg.recipes import load_yaml

    values: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise AnosegError(f"--set expects KEY=VALUE (e.g. train.epochs=4), not {item!r}")
        try:
            value = load_yaml(text)
        except yaml.YAMLError:
            raise AnosegError(f"--set {item!r}: the value is not valid YAML") from None
        values.setdefault(key.strip(), []).append(value)
    settings = {k: v[0] for k, v in values.items() if len(v) == 1}
    grid = {k: tuple(v) for k, v in values.items() if len(v) > 1}
    return settings, grid


def _tag(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={json.dumps(v, separators=(',', ':')).strip(chr(34))}" for k, v in overrides.items())


def expand(spec: SweepSpec, output: Path, cwd: Path | None = None) -> Plan:
    """Expand the grid into cells (order: variant, seed, generator, model, category) without running anything.

    Every override is applied and validated here (unknown settings, bad values and unknown models fail before any
    work starts). Raises ``AnosegError`` for bad input.
    """
    from anoseg.models import model_builder
    from anoseg.recipes import load_recipe

    cwd = (cwd or Path.cwd()).resolve()
    output = output if output.is_absolute() else cwd / output
    base = load_recipe(spec.recipe)
    if base.task != ANOMALY:
        raise AnosegError(f"sweep runs anomaly recipes; {base.name} is a {base.task} recipe")
    if not spec.models or not spec.generators or not spec.seeds:
        raise AnosegError("a sweep needs at least one model, one generator and one seed")
    for model in spec.models:
        model_builder(model)  # an unknown name fails here, before any work
    records = sweep_dir(output, spec.name)
    axes = list(spec.grid.items())
    variants = []
    for combo in itertools.product(*[values for _, values in axes]) if axes else [()]:
        varying = {key: value for (key, _), value in zip(axes, combo, strict=True)}
        overrides = {**spec.settings, **varying}
        tag = _tag(varying)
        recipe = base.override(overrides)  # validated as a recipe file is (the same path as `train --lr`)
        recipe_file = records / "recipes" / f"{tag or 'recipe'}.yaml" if overrides else None
        variants.append(Variant(
            tag=tag, recipe=str(recipe_file) if recipe_file else spec.recipe, recipe_file=recipe_file,
            overrides=overrides, output=output / tag if tag else output, dataset=recipe.name,
            epochs=recipe.train.epochs, eval_epoch=recipe.train.eval_epoch,
            run_categories=(ALL_CATEGORIES,) if recipe.train.unified else tuple(recipe.categories)))
    cells = []
    for variant, seed, generator, model in itertools.product(variants, spec.seeds, spec.generators, spec.models):
        for category in spec.categories or variant.run_categories:
            cells.append(Cell(model, generator, category, int(seed), variant))
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise AnosegError("the sweep lists the same cell twice (repeated model, generator, category or seed)")
    return Plan(spec=spec, cells=tuple(cells), variants=tuple(variants), output=output, records=records, cwd=cwd)


def write_recipes(plan: Plan) -> None:
    """Write each variant's derived recipe (the base recipe with its overrides, as ``Recipe.override`` made it),
    atomically; ``anoseg train --recipe`` reads back the same recipe."""
    import yaml

    from anoseg.io import atomic_open
    from anoseg.recipes import load_recipe, recipe_values

    base = load_recipe(plan.spec.recipe)
    for variant in plan.variants:
        if variant.recipe_file is None:
            continue
        values = recipe_values(base.override(variant.overrides))
        with atomic_open(variant.recipe_file, "w", encoding="utf-8") as handle:
            handle.write(f"# {plan.spec.recipe} with {_tag(variant.overrides)} (written by anoseg sweep)\n")
            yaml.safe_dump(values, handle, sort_keys=False)


# ---- what is already there ------------------------------------------------------------------------------------------

def _history_length(run: Path) -> int | None:
    """Epochs done by the run, from ``train_history.json``; None when it is absent or damaged (not a list)."""
    try:
        history = json.loads((run / "train_history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return len(history) if isinstance(history, list) else None


def result_exists(cell: Cell) -> bool:
    """True when the cell's run holds a readable evaluation of its result epoch whose checkpoint is still the one it
    scored (``anoseg.runid.EvalRecord.is_current``: same SHA-256)."""
    from anoseg.runid import EvalRecord

    record = EvalRecord.at(cell.run, cell.result_epoch)
    return record is not None and record.epoch == cell.result_epoch and record.is_current(cell.run)


def precision_warnings(plan: Plan) -> list[str]:
    """One line per (variant, model, generator, category) whose evaluated seeds trained in different precisions
    (``metrics.json`` ``precision``; ``--precision auto`` is bf16 on some machines, fp32 on others): the report's
    mean over those seeds mixes numerics. Cells without a result, or with a result older than the field, are left
    out."""
    from anoseg.runid import EvalRecord

    groups: dict[tuple, dict[str, list[int]]] = {}
    for cell in plan.cells:
        record = EvalRecord.at(cell.run, cell.result_epoch)
        precision = record.precision if record is not None else None
        if precision is not None:
            key = (cell.variant.tag, cell.model, cell.generator, cell.category)
            groups.setdefault(key, {}).setdefault(precision, []).append(cell.seed)
    lines = []
    for (tag, model, generator, category), seeds in groups.items():
        if len(seeds) > 1:
            parts = "; ".join(f"{p}: seed{'s' if len(v) > 1 else ''} {', '.join(map(str, sorted(v)))}"
                              for p, v in sorted(seeds.items()))
            where = f"{model} · {generator} · {category}" + (f" [{tag}]" if tag else "")
            lines.append(f"{where}: seeds trained in different precisions ({parts}); the report's mean over them "
                         "mixes them (cells on machines with and without native bf16 under --precision auto)")
    return lines


def train_state(cell: Cell) -> str:
    """``new`` (nothing trained), ``partial`` (stopped half-way: resume) or ``finished``.

    Raises ``AnosegError`` when the folder holds a run longer than the sweep asks (never overwritten).
    """
    from anoseg.engine.checkpoint import LAST

    if not (cell.run / LAST).is_file():
        return "new"
    done = _history_length(cell.run)
    if done is None:  # train_history.json damaged or gone: the checkpoint knows (AnosegError if it is damaged too)
        from anoseg.engine.checkpoint import load_checkpoint

        done = load_checkpoint(cell.run / LAST)["epoch"]
    if done > cell.variant.epochs:
        raise AnosegError(f"{cell.run} holds a run of {done} epochs, the sweep asks {cell.variant.epochs}; "
                          "use another --output or remove that run")
    return "finished" if done == cell.variant.epochs else "partial"


# ---- one cell, on a worker ------------------------------------------------------------------------------------------

def _record_path(records: Path, key: str) -> Path:
    return records / "cells" / f"{key}.json"


def _log_path(records: Path, key: str) -> Path:
    return records / "logs" / f"{key}.log"


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: this process gets ``sig`` when its parent dies, so a killed sweep leaves no orphan worker or training."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG


def _worker_setup() -> None:
    """On a local submitit worker: die with the job's controller (the sweep cancels a local job by killing it)."""
    if "SUBMITIT_LOCAL_JOB_ID" in os.environ:
        _die_with_parent(signal.SIGKILL)


def _run_logged(argv: list[str], log: Path, cwd: Path, env: dict[str, str]) -> str | None:
    """Run one command with its output appended to ``log``; None on success, else its one-line error."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n$ {' '.join(argv)}\n")
        handle.flush()
        code = subprocess.run(argv, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False,
                              preexec_fn=_die_with_parent).returncode
    if code == 0:
        return None
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    return errors[-1].removeprefix("error:").strip() if errors else f"{Path(argv[3]).name} exited with code {code}"


def _cell_env(threads: int | None) -> dict[str, str]:
    # a GPU cell's device is already the only one visible: submitit's LocalExecutor sets CUDA_VISIBLE_DEVICES
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                      env.get("PYTHONPATH")]))
    env.setdefault("NO_COLOR", "1")
    if threads and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_prepare_step(plan: Plan, variant: Variant, generator: str, gpu: int | None = None,
                     threads: int | None = None) -> dict[str, Any]:
    """Worker side: ``anoseg prepare`` for one (variant, generator) unless its manifest exists."""
    _worker_setup()
    key = "__".join([*([variant.tag] if variant.tag else []), "prepare", generator])
    target = manifest_path(variant.output, variant.dataset, generator)
    if target.is_file():
        return {"status": SKIPPED, "manifest": str(target)}
    log = _log_path(plan.records, key)
    log.parent.mkdir(parents=True, exist_ok=True)
    error = _run_logged(prepare_command(variant, generator), log, plan.cwd, _cell_env(threads))
    return {"status": FAILED if error else DONE, "error": error, "log": str(log), "manifest": str(target)}


def run_cell(plan: Plan, cell: Cell, gpu: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """Worker side: train (or resume) and evaluate one cell; write its record; never raise for a failing cell."""
    _worker_setup()
    record_file, log = _record_path(plan.records, cell.key), _log_path(plan.records, cell.key)
    log.parent.mkdir(parents=True, exist_ok=True)
    record = {"cell": cell.key, "model": cell.model, "generator": cell.generator, "category": cell.category,
              "seed": cell.seed, "variant": cell.variant.tag, "run": str(cell.run), "log": str(log),
              "started": datetime.now().isoformat(timespec="seconds"), "error": None}
    started = time.perf_counter()

    def save(status: str, stage: str, **extra: Any) -> dict[str, Any]:
        record.update(status=status, stage=stage, seconds=round(time.perf_counter() - started, 1), **extra)
        write_json(record_file, record)
        return dict(record)

    try:
        save(RUNNING, "starting")  # replaces a stale record of an earlier attempt at once
        if result_exists(cell):
            return save(SKIPPED, "eval")
        state = train_state(cell)
        env = _cell_env(threads)
        device = "cuda" if gpu is not None else None
        train, evaluate = cell_commands(cell, plan.spec, resume=state == "partial", device=device)
        if state != "finished":
            save(RUNNING, "train")
            error = _run_logged(train, log, plan.cwd, env)
            if error:
                return save(FAILED, "train", error=error)
        save(RUNNING, "eval")
        error = _run_logged(evaluate, log, plan.cwd, env)
        if error:
            return save(FAILED, "eval", error=error)
        return save(DONE, "eval", finished=datetime.now().isoformat(timespec="seconds"))
    except AnosegError as exc:
        return save(FAILED, record.get("stage") or "train", error=str(exc))


# ---- the engine -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineOptions:
    """How cells run: ``executor`` (local | debug | slurm), at most ``jobs`` at once, SLURM settings."""

    executor: str = "local"
    jobs: int = 1
    gpus: int = 0  # local CUDA devices: one per slot
    timeout_min: int = 60 * 24
    slurm_partition: str | None = None
    slurm_gpus_per_job: int = 0
    slurm_cpus_per_job: int | None = None


def make_executor(options: EngineOptions, folder: Path, gpu: int | None):
    """A submitit executor for one slot (local: pinned to ``gpu`` when given)."""
    import submitit

    if options.executor == "debug":
        return submitit.DebugExecutor(folder)
    if options.executor == "local":
        executor = submitit.LocalExecutor(folder)
        gpus = {"gpus_per_node": 1, "visible_gpus": (gpu,)} if gpu is not None else {}
        executor.update_parameters(timeout_min=options.timeout_min, **gpus)
        return executor
    try:
        executor = submitit.AutoExecutor(folder, cluster="slurm")
    except RuntimeError as exc:  # submitit finds no srun: not on a SLURM cluster
        raise AnosegError(f"--executor slurm: {exc} (run the sweep on a SLURM login node, or use --executor local)") \
            from None
    params: dict[str, Any] = {"timeout_min": options.timeout_min, "gpus_per_node": options.slurm_gpus_per_job,
                              "name": "anoseg-sweep"}
    if options.slurm_partition:
        params["slurm_partition"] = options.slurm_partition
    if options.slurm_cpus_per_job:
        params["cpus_per_task"] = options.slurm_cpus_per_job
    executor.update_parameters(**params)
    return executor


@dataclass
class Task:
    """One unit of work for the engine: ``function(*args)`` on a worker; ``what`` identifies it to the caller."""

    function: Callable[..., dict[str, Any]]
    args: tuple
    what: Any


class Engine:
    """Submits tasks to submitit and collects their results, never more than ``jobs`` at a time.

    Locally each slot is one worker process (pinned to one GPU on CUDA machines); on SLURM every task is submitted at
    once as one job array and the cluster runs at most ``jobs`` of them at a time (``slurm_array_parallelism``).
    """

    def __init__(self, options: EngineOptions, folder: Path) -> None:
        self.options = options
        self.folder = folder / "submitit"
        self.running: dict[int, tuple[Any, Task]] = {}  # slot → (submitit job, task)
        cpus = os.cpu_count() or 1
        # CPU cells share the cores; a GPU or cluster cell keeps torch's default
        self.threads = None if options.gpus or options.executor == "slurm" else max(1, cpus // options.jobs)

    def run(self, tasks: list[Task], on_result: Callable[[Task, dict[str, Any]], None],
            on_tick: Callable[[list[Task]], None] = lambda running: None) -> None:
        """Run ``tasks`` (in order), calling ``on_result`` as each ends and ``on_tick`` about twice a second."""
        todo = list(tasks)
        if self.options.executor == "slurm":
            self._submit_array(todo)
            todo = []
        free = list(range(self.options.jobs))
        while todo or self.running:
            while todo and free:
                slot = free.pop(0)
                task = todo.pop(0)
                gpu = slot if self.options.executor == "local" and self.options.gpus else None
                with _sigint_ignored_in_children():
                    job = make_executor(self.options, self.folder, gpu).submit(task.function, *task.args, gpu=gpu,
                                                                               threads=self.threads)
                self.running[slot] = (job, task)
                if self.options.executor == "debug":
                    break  # a debug job runs when its result is asked for, below
            for slot, (job, task) in list(self.running.items()):
                if self.options.executor == "debug" or job.done():
                    del self.running[slot]
                    free.append(slot)
                    on_result(task, self._result(job))
            on_tick([task for _, task in self.running.values()])
            if self.running:
                time.sleep(0.5)

    def _submit_array(self, tasks: list[Task]) -> None:
        executor = make_executor(self.options, self.folder, None)
        executor.update_parameters(slurm_array_parallelism=self.options.jobs)
        with executor.batch():
            jobs = [executor.submit(task.function, *task.args) for task in tasks]
        self.running = {i: (job, task) for i, (job, task) in enumerate(zip(jobs, tasks, strict=True))}

    @staticmethod
    def _result(job) -> dict[str, Any]:
        try:
            return job.result()
        except Exception as exc:  # the job itself died (killed, timed out, node lost): its cell failed
            text = [line for line in str(exc).strip().splitlines() if line.strip()]
            return {"status": FAILED, "error": f"job failed: {text[-1] if text else type(exc).__name__}"}

    def cancel(self) -> None:
        """Cancel running jobs; a stopped run resumes in the next sweep.

        A local job is cancelled by killing its controller process (``job.job_id`` is its pid): the worker and the
        worker's commands die with it (parent-death signals), quietly. SLURM jobs are cancelled with scancel.
        """
        for job, _ in self.running.values():
            with contextlib.suppress(Exception):
                if self.options.executor == "local":
                    os.kill(int(job.job_id), signal.SIGKILL)
                elif self.options.executor == "slurm":
                    job.cancel(check=False)
        self.running = {}


@contextlib.contextmanager
def _sigint_ignored_in_children():
    """Processes started inside inherit an ignored SIGINT: a Ctrl-C reaches only the sweep, which then cancels its
    jobs itself (instead of every worker printing its own KeyboardInterrupt traceback)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- the driver -----------------------------------------------------------------------------------------------------

class _Status:
    """The lines under the overall bar: what each running cell is doing (stage, epochs done)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.text = ""

    def show(self, running: list[Task]) -> None:
        lines = []
        for task in running:
            if not isinstance(task.what, Cell):
                variant, generator = task.what
                lines.append(f"  prepare {generator}" + (f" [{variant.tag}]" if variant.tag else ""))
                continue
            cell = task.what
            stage = "starting"
            with contextlib.suppress(OSError, ValueError, KeyError):
                stage = json.loads(_record_path(self.plan.records, cell.key).read_text())["stage"]
            if stage == "train":
                stage = f"train epoch {_history_length(cell.run) or 0}/{cell.variant.epochs}"
            lines.append(f"  {cell.label}: {stage}")
        self.text = "\n".join(lines)

    def __rich__(self):
        from rich.text import Text

        return Text(self.text, style="dim", no_wrap=True, overflow="ellipsis")


def run_sweep(plan: Plan, options: EngineOptions, *, report: bool = True) -> dict[str, Any]:
    """Prepare every (variant, generator), run every cell, write ``summary.json``, print the summary, then report.

    Returns the summary dict. Raises ``AnosegError`` when cells failed (after the others ran) or on interruption
    (finished cells are kept; the same command continues).
    """
    from rich.console import Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from anoseg.log import console

    check_output(plan.records, folder=True, replace=False)  # an unwritable --output: one line before any cell runs
    make_folder(plan.records)
    write_recipes(plan)
    results: dict[str, dict[str, Any]] = {}
    pending = [c for c in plan.cells if not result_exists(c)]
    for cell in plan.cells:
        if cell not in pending:
            results[cell.key] = {"status": SKIPPED, "error": None}
    engine = Engine(options, plan.records)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA"), _eta_column(), console=console)
    status = _Status(plan)
    overall = progress.add_task("sweep", total=len(plan.cells), completed=len(plan.cells) - len(pending),
                                skipped=len(plan.cells) - len(pending))
    restore = _catch_signals()
    try:
        with Live(Group(progress, status), console=console, refresh_per_second=4):
            failed_prepare = _prepare_all(plan, engine, pending, status)

            def finished(task: Task, result: dict[str, Any]) -> None:
                results[task.what.key] = result
                progress.advance(overall)
                _say(console, task.what, result)

            tasks = []
            for cell in pending:
                error = failed_prepare.get((cell.variant.tag, cell.generator))
                if error:
                    finished(Task(run_cell, (), cell), {"status": FAILED, "stage": "prepare",
                                                        "error": f"prepare failed: {error}"})
                else:
                    tasks.append(Task(run_cell, (plan, cell), cell))
            engine.run(tasks, finished, status.show)
            status.text = ""
    except KeyboardInterrupt:
        engine.cancel()
        raise AnosegError("interrupted; finished cells are kept — run the same sweep again to continue") from None
    finally:
        restore()
    summary = _summary(plan, results)
    summary["warnings"] = precision_warnings(plan)
    write_json(plan.records / "summary.json", summary)
    _print_summary(console, plan, summary)
    if report and any(r["status"] in (DONE, SKIPPED) for r in results.values()):
        for variant in plan.variants:
            argv = anoseg_command("report", "--dataset", variant.dataset, "--output", str(variant.output))
            code = subprocess.run(argv, cwd=plan.cwd, check=False).returncode
            if code != 0:
                from anoseg.log import warn

                warn(f"report for {variant.output} failed (exit code {code})")
    n_failed = summary["counts"][FAILED]
    if n_failed:
        raise AnosegError(f"{n_failed} of {len(plan.cells)} cell(s) failed; see {plan.records / 'summary.json'}")
    return summary


def _eta_column():
    """Remaining time = remaining cells × the mean time per cell run so far in this sweep (cells skipped at the start
    take no time; rich's own estimate, from the last few updates, is meaningless for events minutes apart)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        def render(self, task) -> Text:
            ran = task.completed - task.fields.get("skipped", 0)
            if not ran or not task.elapsed or task.total is None:
                return Text("-:--:--", style="progress.remaining")
            seconds = int(task.elapsed / ran * (task.total - task.completed))
            return Text(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}", style="progress.remaining")

    return EtaColumn()


def _catch_signals() -> Callable[[], None]:
    """SIGTERM interrupts the sweep like Ctrl-C (SIGINT, made catchable even where the shell ignored it)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if previous[1] == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])

    return restore


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _prepare_all(plan: Plan, engine: Engine, pending: list[Cell], status: _Status) -> dict:
    """Prepare each (variant, generator) that pending cells need; return the failed ones with their error."""
    from anoseg.log import console

    needed = [(variant, generator) for variant, generator in dict.fromkeys((c.variant, c.generator) for c in pending)
              if not manifest_path(variant.output, variant.dataset, generator).is_file()]
    failed = {}

    def finished(task: Task, result: dict[str, Any]) -> None:
        variant, generator = task.what
        if result["status"] == FAILED:
            failed[(variant.tag, generator)] = result["error"]
            console.print(f"[red]prepare {generator} failed:[/red] {result['error']}  (log: {result.get('log')})",
                          highlight=False)

    engine.run([Task(run_prepare_step, (plan, v, g), (v, g)) for v, g in needed], finished, status.show)
    return failed


def _say(console, cell: Cell, result: dict[str, Any]) -> None:
    if result["status"] == FAILED:
        console.print(f"[red]failed[/red]  {cell.label}: {result.get('error')}", highlight=False)
    else:
        seconds = result.get("seconds")
        took = f" in {seconds:.0f} s" if isinstance(seconds, int | float) else ""
        console.print(f"[green]{result['status']}[/green]  {cell.label}{took}", highlight=False)


def _summary(plan: Plan, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cells = []
    for cell in plan.cells:
        result = results.get(cell.key, {"status": FAILED, "error": "not run"})
        cells.append({"cell": cell.key, "model": cell.model, "generator": cell.generator, "category": cell.category,
                      "seed": cell.seed, "variant": cell.variant.tag, "status": result["status"],
                      "run": str(cell.run), "error": result.get("error"), "log": result.get("log")})
    counts = {s: sum(c["status"] == s for c in cells) for s in (DONE, SKIPPED, FAILED)}
    return {"schema": SWEEP_SCHEMA, "name": plan.spec.name, "spec": _jsonable(asdict(plan.spec)),
            "finished": datetime.now().isoformat(timespec="seconds"), "counts": counts, "cells": cells}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _print_summary(console, plan: Plan, summary: dict[str, Any]) -> None:
    """One line per cell, failures last: its status and run folder (which names model, generator, seed and
    category), or its error and log."""
    counts = summary["counts"]
    output = show_command([str(plan.output)], plan.cwd)
    console.print(f"[bold]sweep {plan.spec.name}[/bold]: {counts[DONE]} done, {counts[SKIPPED]} skipped, "
                  f"{counts[FAILED]} failed (run folders under {output}/)", highlight=False)
    style = {DONE: "green", SKIPPED: "dim", FAILED: "red"}
    for c in sorted(summary["cells"], key=lambda c: c["status"] == FAILED):
        folder = Path(c["run"]).relative_to(plan.output)
        line = f"  {c['status']:<8} {folder}"
        if c["status"] == FAILED:
            line += f": {c['error']}" + (f"  (log: {show_command([c['log']], plan.cwd)})" if c["log"] else "")
        console.print(line, style=style[c["status"]], highlight=False, markup=False)
    console.print(f"sweep records: {show_command([str(plan.records)], plan.cwd)}", highlight=False)
    if summary.get("warnings"):
        from rich.markup import escape

        from anoseg.log import warn

        for line in summary["warnings"]:
            warn(escape(line))


def show_command(argv: list[str], cwd: Path) -> str:
    """A command as a user would type it: ``anoseg ...`` with paths under ``cwd`` made relative."""
    import shlex

    if argv[:3] == [sys.executable, "-m", "anoseg.cli"]:
        argv = ["anoseg", *argv[3:]]
    prefix = f"{cwd}{os.sep}"
    return shlex.join([a.removeprefix(prefix) for a in argv])


def dry_run_lines(plan: Plan) -> list[str]:
    """What ``--dry-run`` prints: each (variant, generator)'s prepare, then each cell with its state and commands."""
    lines = []
    for variant, generator in dict.fromkeys((c.variant, c.generator) for c in plan.cells):
        there = manifest_path(variant.output, variant.dataset, generator).is_file()
        what = "manifest exists, kept" if there else show_command(prepare_command(variant, generator), plan.cwd)
        lines.append(f"prepare {generator}{f' [{variant.tag}]' if variant.tag else ''}: {what}")
    for i, cell in enumerate(plan.cells, start=1):
        if result_exists(cell):
            where = show_command([str(cell.run)], plan.cwd)
            lines.append(f"[{i}/{len(plan.cells)}] {cell.label}: done, skipped ({where})")
            continue
        try:
            state = train_state(cell)
        except AnosegError as exc:
            lines.append(f"[{i}/{len(plan.cells)}] {cell.label}: would fail: {exc}")
            continue
        train, evaluate = cell_commands(cell, plan.spec, resume=state == "partial")
        note = {"new": "", "partial": " (resumes its stopped run)", "finished": " (trained; eval only)"}[state]
        lines.append(f"[{i}/{len(plan.cells)}] {cell.label}{note} → {show_command([str(cell.run)], plan.cwd)}")
        if state != "finished":
            lines.append(f"    {show_command(train, plan.cwd)}")
        lines.append(f"    {show_command(evaluate, plan.cwd)}")
    return lines
