"""Read every ``metrics.json`` of a dataset into one tidy table, and name/order models and generators for display.

One row of the tidy table is one number: (model, mode, generator, category, metric) → value, plus where it came from.
Everything the report shows is a pandas reshaping of this table, so no number is computed twice.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from anoseg.constants import ALL_CATEGORIES, METRICS_FILE, NO_GENERATOR, TASKS
from anoseg.models.registry import MODELS
from anoseg.paths import DEFAULT_SEED
from anoseg.runid import EvalRecord, RecordError, result_variant, run_of_result

UNIFIED, PER_CATEGORY = "unified", "per-category"

GENERATOR_NAMES = {"seas": "SeaS", "dfmgan": "DFMGAN", "anomalydiffusion": "AnomalyDiffusion"}

# The columns of the tidy table, in order.
TIDY_COLUMNS = ["task", "model", "mode", "generator", "seed", "protocol", "epoch", "category", "metric", "value",
                "run_dir", "precision", "device_kind"]
# How the run trained (metrics.json ``precision``, ``device_kind``): the tidy table's provenance columns, and what a
# file written before a field existed shows in them.
PROVENANCE = ("precision", "device_kind")
UNRECORDED = "unrecorded"


def model_label(model: str, mode: str = UNIFIED) -> str:
    """Display name of a segmenter block, e.g. ``model_label("lfd", "per-category") == "LFD (per-category)"``."""
    name = MODELS[model].display_name if model in MODELS else model
    return f"{name} ({PER_CATEGORY})" if mode == PER_CATEGORY else name


def model_rank(model: str) -> tuple[int, str]:
    """Sort key: the model registry's order (anoseg.models.registry), unknown names last (alphabetically)."""
    order = list(MODELS)
    return (order.index(model), "") if model in MODELS else (len(order), model)


def generator_label(generator: str) -> str:
    """Display name of a generator: ``seas`` → ``SeaS``; names without a display name are shown as given."""
    return GENERATOR_NAMES.get(generator, generator)


def generator_rank(generator: str) -> tuple[int, str]:
    """Sort key: ``none`` first, then alphabetical by name."""
    return (0, "") if generator == NO_GENERATOR else (1, generator)


def run_rank(model: str, mode: str, generator: str) -> tuple:
    """Sort key of a (segmenter block, generator) row: block order, unified before per-category, generator order."""
    return (*model_rank(model), mode != UNIFIED, *generator_rank(generator))


@dataclass(frozen=True)
class MetricsFile:
    """One parsed ``metrics.json`` (one evaluated run)."""

    path: Path
    task: str
    generator: str
    model: str
    trained_on: str
    protocol: str
    epoch: int | None
    categories: dict[str, dict[str, float | None]]
    checkpoint: str | None = None  # the checkpoint evaluated, relative to the run folder
    checkpoint_sha256: str | None = None
    weights_sha256: str | None = None
    by_defect: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)  # category → type → metric
    split: dict[str, Any] | None = None  # the split prepare used (None: not recorded, files before it was)
    operating_points: list[dict[str, Any]] = field(default_factory=list)  # per-category entries (docs/schemas.md)
    deployed_point: str | None = None
    selected_by: str | None = None  # the validation metric that chose the checkpoint (``val:pixel_ap``), if one did
    precision: str = UNRECORDED  # the training precision (Lightning's name)
    device_kind: str = UNRECORDED  # the training device (anoseg.engine.checkpoint.device_kind)
    seed: int = DEFAULT_SEED  # the training seed (metrics.json ``seed``; files of 0.2: from the run folder)
    record: EvalRecord | None = field(default=None, compare=False, repr=False)  # the file as read

    @property
    def mode(self) -> str:
        return UNIFIED if self.trained_on == ALL_CATEGORIES else PER_CATEGORY

    @property
    def run(self) -> Path:
        """The run folder: ``<run>/eval/epoch_NNN/metrics.json``."""
        return run_of_result(self.path)

    def describe(self) -> str:
        """``epoch 3, weights 0123456789ab (eval/epoch_003)``: which checkpoint these numbers come from (and, when a
        validation metric chose it, ``, chosen on validation by val:pixel_ap``)."""
        weights = f", weights {self.weights_sha256[:12]}" if self.weights_sha256 else ""
        chosen = f", chosen on validation by {self.selected_by}" if self.selected_by else ""
        return f"epoch {self.epoch}{weights}{chosen} ({_rel(self.path.parent, self.run)})"


def parse_metrics(path: Path, dataset: str) -> MetricsFile:
    """Parse and validate one ``metrics.json``; raise ``ValueError`` saying why it cannot be used.

    Example:
        >>> parse_metrics(Path("outputs/mvtec_ad/seas/lfd/all/eval/epoch_100/metrics.json"), "mvtec_ad").model
        ... # doctest: +SKIP
        'lfd'
    """
    try:
        record = EvalRecord.read(path)
    except RecordError as exc:
        raise ValueError(exc.reason) from None
    except OSError as exc:
        raise ValueError(f"unreadable ({exc})") from None
    if record.dataset != dataset:
        raise ValueError(f"belongs to dataset {record.dataset!r}, not {dataset!r}")
    return MetricsFile(
        path=path,
        task=record.task,
        generator=record.generator,
        model=record.model,
        trained_on=record.trained_on,
        protocol=record.protocol,
        epoch=record.epoch,
        categories={category: _numbers(metrics) for category, metrics in record.categories.items()},
        checkpoint=record.checkpoint,
        checkpoint_sha256=record.checkpoint_sha256,
        weights_sha256=record.weights_sha256,
        by_defect={category: {defect: _numbers(metrics) for defect, metrics in types.items()}
                   for category, types in (record.by_defect or {}).items()},
        split=record.split,
        operating_points=[e for e in record.operating_points or [] if e.get("category") != "mean"],
        deployed_point=record.deployed_point,
        **{key: getattr(record, key) for key in PROVENANCE if getattr(record, key)},
        seed=record.seed,
        record=record,
        selected_by=(record.checkpoint_selection or {}).get("metric")
        if isinstance((record.checkpoint_selection or {}).get("metric"), str) else None,
    )


def _numbers(metrics: dict[str, Any]) -> dict[str, float | None]:
    """A record's metric values as floats (NaN and null: None, an undefined metric)."""
    return {name: None if value is None or math.isnan(value) else float(value) for name, value in metrics.items()}


def find_datasets(outputs: Path) -> list[str]:
    """The datasets (first-level folders of ``outputs``) that hold at least one finished eval result, sorted."""
    outputs = Path(outputs)
    if not outputs.is_dir():
        return []
    return sorted(d.name for d in outputs.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and any(_is_result(p, d) for p in d.glob(f"**/eval/epoch_*/{METRICS_FILE}")))


def _is_result(path: Path, root: Path) -> bool:
    """A finished eval's metrics.json: in ``eval/epoch_NNN/`` and no hidden folder on the way (staging)."""
    return result_variant(path) == "" and not any(p.startswith(".") for p in path.relative_to(root).parts)


def find_metrics(outputs: Path, dataset: str) -> tuple[list[MetricsFile], list[str], list[str]]:
    """One evaluated checkpoint per run of ``outputs/<dataset>``: ``(files, warnings, sources)``.

    A run's results live in ``<run>/eval/epoch_NNN/metrics.json``, one per checkpoint evaluated. Per run the report
    takes the highest epoch whose checkpoint file, when still present, has the hash the result names (a result of a
    checkpoint since overwritten, e.g. by ``train --fresh``, is stale and ignored). ``sources`` says, per run, which
    checkpoint was taken and which other results were left out. Unfinished evals (hidden staging folders) are not
    seen; other ``metrics.json`` files and unusable ones are skipped with a warning. Files of another task than the
    dataset's (the most common one) are skipped too: one report shows one task.
    """
    root = Path(outputs) / dataset
    candidates, warnings = [], []
    for path in sorted(root.rglob(METRICS_FILE)):
        relative = path.relative_to(root).parts
        if any(p.startswith(".") for p in relative):
            continue  # an eval still running or interrupted: never a result
        if result_variant(path):
            continue  # another protocol or resolution than the run's default: the report never mixes those in
        if not _is_result(path, root):
            warnings.append(f"skipped {_rel(path, outputs)}: not in a <run>/eval/epoch_NNN folder (an old layout?); "
                            "re-run `anoseg eval`")
            continue
        try:
            candidates.append(parse_metrics(path, dataset))
        except ValueError as exc:
            warnings.append(f"skipped {_rel(path, outputs)}: {exc}")
    by_run: dict[Path, list[MetricsFile]] = {}
    for f in candidates:
        by_run.setdefault(f.run, []).append(f)
    files, sources = [], []
    for run, found in by_run.items():
        fresh = []
        for f in found:
            reason = _stale(f)
            if reason:
                warnings.append(f"skipped {_rel(f.path, outputs)}: stale, {reason}")
            else:
                fresh.append(f)
        if not fresh:
            continue
        fresh.sort(key=lambda f: (f.epoch if f.epoch is not None else -1, str(f.path)))
        chosen, others = fresh[-1], fresh[:-1]
        files.append(chosen)
        note = f"{_rel(run, outputs)}: {chosen.describe()}"
        if others:
            note += "; not shown: " + ", ".join(f"epoch {f.epoch}" for f in others)
        sources.append(note)
    if files:
        counts = Counter(f.task for f in files)
        task = max(TASKS, key=lambda t: counts[t])  # ties go to the first task in TASKS
        for f in files:
            if f.task != task:
                warnings.append(f"skipped {_rel(f.path, outputs)}: task {f.task!r}, this report shows {task!r}")
        files = [f for f in files if f.task == task]
    return files, warnings, sources


def _stale(f: MetricsFile) -> str | None:
    """Why a result no longer belongs to its run's checkpoint (the file was replaced), or None."""
    return f.record.stale(f.run) if f.record is not None else None


def tidy(files: list[MetricsFile], outputs: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per number (``TIDY_COLUMNS``). Per-category runs of one model+generator merge into one run; the
    seeds of a run stay apart (column ``seed``) for ``select_seeds`` and the statistics.

    A (run, seed, category) found in two files keeps the first (sorted path) and warns: a row never mixes two
    evaluations of the same category.
    """
    rows, warnings, seen = [], [], {}
    for f in files:
        for category, metrics in f.categories.items():
            key = (f.model, f.mode, f.generator, f.seed, category)
            if key in seen:
                warnings.append(
                    f"{_rel(f.path, outputs)}: category {category!r} already reported by {_rel(seen[key], outputs)}"
                    " — ignored here"
                )
                continue
            seen[key] = f.path
            for metric, value in metrics.items():
                rows.append((f.task, f.model, f.mode, f.generator, f.seed, f.protocol, f.epoch, category, metric,
                             value, str(f.path.parent), f.precision, f.device_kind))  # fmt: skip
    frame = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    frame["value"] = frame["value"].astype(float)
    return frame, warnings


def tidy_by_defect(files: list[MetricsFile], data: pd.DataFrame) -> pd.DataFrame:
    """The per-defect-type results (metrics.json ``by_defect``) as a tidy table: ``TIDY_COLUMNS`` plus ``defect``,
    restricted to the (run, seed, category) that ``data`` (the main tidy table, after ``select_seeds``) keeps from
    the same file, so the defect tables average exactly the seeds and categories of the main ones."""
    kept = set(zip(data["model"], data["mode"], data["generator"], data["seed"], data["category"], data["run_dir"],
                   strict=True))
    rows = []
    for f in files:
        for category, types in f.by_defect.items():
            if (f.model, f.mode, f.generator, f.seed, category, str(f.path.parent)) not in kept:
                continue
            for defect, metrics in types.items():
                for metric, value in metrics.items():
                    rows.append((f.task, f.model, f.mode, f.generator, f.seed, f.protocol, f.epoch, category, metric,
                                 value, str(f.path.parent), f.precision, f.device_kind, defect))  # fmt: skip
    frame = pd.DataFrame(rows, columns=[*TIDY_COLUMNS, "defect"])
    frame["value"] = frame["value"].astype(float)
    return frame


def select_seeds(data: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep, per run, the seeds that cover the same categories, so that a mean over seeds compares like with like.

    A run's seeds are kept when they cover every category any of its seeds covers; a seed with fewer categories (a
    sweep still running) is left out, with a warning. If no seed covers them all, the largest category set held by
    most seeds is kept: the seeds holding it, restricted to it.
    """
    keys = ["model", "mode", "generator"]
    kept, warnings = [], []
    for run, group in data.groupby(keys, sort=False):
        covered = group.groupby("seed")["category"].agg(frozenset)
        if len(covered) == 1:
            kept.append(group)
            continue
        union = frozenset().union(*covered)
        if union in set(covered):
            chosen = union
        else:
            count = Counter(covered)
            chosen = max(count, key=lambda s: (len(s), count[s], sorted(s)))
        seeds = [seed for seed, cats in covered.items() if chosen <= cats]
        left = [seed for seed in covered.index if seed not in seeds]
        name = f"{model_label(run[0], run[1])} / {generator_label(run[2])}"
        if left:
            warnings.append(f"{name}: seed{'s' if len(left) > 1 else ''} {', '.join(map(str, left))} left out of "
                            f"the report (fewer categories than seeds {', '.join(map(str, seeds))})")
        if chosen != union:
            warnings.append(f"{name}: categories {', '.join(sorted(union - chosen))} left out (not evaluated for "
                            "every seed kept)")
        kept.append(group[group["seed"].isin(seeds) & group["category"].isin(chosen)])
    return (pd.concat(kept) if kept else data), warnings


def precision_warnings(data: pd.DataFrame) -> list[str]:
    """One warning per run (model, mode, generator) whose seeds, or categories, trained in different precisions:
    the report's mean over them then mixes numerics (``--precision auto`` is bf16 on some machines, fp32 on others).
    """
    warnings = []
    for (model, mode, generator), group in data.groupby(["model", "mode", "generator"], sort=False):
        if group["precision"].nunique() < 2:
            continue
        by_seed = group["seed"].nunique() > 1
        parts = []
        for precision, rows in sorted(group.groupby("precision"), key=lambda item: str(item[0])):
            if by_seed:
                seeds = sorted(rows["seed"].unique())
                parts.append(f"{precision}: seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
            else:
                parts.append(f"{precision}: {', '.join(dict.fromkeys(rows['category']))}")
        what = "seeds" if by_seed else "categories"
        warnings.append(f"{model_label(model, mode)} / {generator_label(generator)}: its {what} trained in "
                        f"different precisions ({'; '.join(parts)}); their mean mixes them — train every seed with "
                        "the same --precision")
    return warnings


def category_order(files: list[MetricsFile], categories: list[str] | None) -> list[str]:
    """The row order of categories: ``categories`` when given, else the order the files list them in.

    ``anoseg eval`` writes categories in the recipe's order, so merging the files' own orders (the longest list
    first) reproduces the recipe order without reading the recipe here.
    """
    if categories:
        return list(dict.fromkeys(categories))
    order: dict[str, None] = {}
    for f in sorted(files, key=lambda f: -len(f.categories)):
        order.update(dict.fromkeys(f.categories))
    return list(order)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
