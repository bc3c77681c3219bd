"""Read every ``metrics.json`` of a dataset into one tidy table, and name/order models and generators for display.

One row of the tidy table is one number: (model, mode, generator, category, metric) → value, plus where it came from.
Everything the report shows is a pandas reshaping of this table, so no number is computed twice.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from anoseg.constants import ALL_CATEGORIES, METRICS_FILE, METRICS_SCHEMA, NO_GENERATOR, TASKS
from anoseg.models.registry import MODELS
from anoseg.paths import seed_of_run

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

    @property
    def mode(self) -> str:
        return UNIFIED if self.trained_on == ALL_CATEGORIES else PER_CATEGORY

    @property
    def run(self) -> Path:
        """The run folder: ``<run>/eval/epoch_NNN/metrics.json``."""
        return self.path.parent.parent.parent

    @property
    def seed(self) -> int:
        """The training seed, from the run folder (``<model>/seed_<n>/<category>``; the default seed has none)."""
        return seed_of_run(self.run)

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
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable ({exc})") from None
    if not isinstance(raw, dict) or raw.get("schema") != METRICS_SCHEMA:
        found = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"not an {METRICS_SCHEMA} file (schema: {found!r})")
    if raw.get("dataset") != dataset:
        raise ValueError(f"belongs to dataset {raw.get('dataset')!r}, not {dataset!r}")
    if raw.get("task") not in TASKS:
        raise ValueError(f"unknown task {raw.get('task')!r}")
    for key in ("generator", "model", "trained_on"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ValueError(f"missing or invalid {key!r}")
    categories = raw.get("categories")
    if not isinstance(categories, dict) or not categories:
        raise ValueError("no 'categories'")
    parsed = {}
    for category, metrics in categories.items():
        if not isinstance(metrics, dict):
            raise ValueError(f"category {category!r} is not an object")
        parsed[category] = {name: _number(value, f"{category}.{name}") for name, value in metrics.items()}
    by_defect = {}
    raw_by_defect = raw.get("by_defect") or {}
    if not isinstance(raw_by_defect, dict):
        raise ValueError("'by_defect' is not an object")
    for category, types in raw_by_defect.items():
        if not isinstance(types, dict) or not all(isinstance(v, dict) for v in types.values()):
            raise ValueError(f"by_defect.{category} is not an object of defect types")
        by_defect[category] = {defect: {name: _number(value, f"by_defect.{category}.{defect}.{name}")
                                        for name, value in metrics.items()} for defect, metrics in types.items()}
    split = raw.get("split") if isinstance(raw.get("split"), dict) else None
    selection = raw.get("checkpoint_selection") if isinstance(raw.get("checkpoint_selection"), dict) else {}
    epoch = raw.get("epoch")
    return MetricsFile(
        path=path,
        task=raw["task"],
        generator=raw["generator"],
        model=raw["model"],
        trained_on=raw["trained_on"],
        protocol=str(raw.get("protocol") or "unknown"),
        epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        categories=parsed,
        checkpoint=raw.get("checkpoint") if isinstance(raw.get("checkpoint"), str) else None,
        checkpoint_sha256=raw.get("checkpoint_sha256") if isinstance(raw.get("checkpoint_sha256"), str) else None,
        weights_sha256=raw.get("weights_sha256") if isinstance(raw.get("weights_sha256"), str) else None,
        by_defect=by_defect,
        split=split,
        operating_points=_operating_points(raw.get("operating_points")),
        deployed_point=raw.get("deployed_point") if isinstance(raw.get("deployed_point"), str) else None,
        selected_by=selection.get("metric") if isinstance(selection.get("metric"), str) else None,
        **{key: raw[key] for key in PROVENANCE if isinstance(raw.get(key), str) and raw[key]},
    )


def _operating_points(value: Any) -> list[dict[str, Any]]:
    """The per-category entries of metrics.json's ``operating_points`` (the ``mean`` entries are recomputed over the
    report's categories); files written before operating points have none. ``ValueError`` for a malformed list."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise ValueError("'operating_points' is not a list of objects")
    entries = []
    for entry in value:
        if entry.get("category") == "mean":
            continue
        for key in ("name", "category", "rule", "chosen_on"):
            if not isinstance(entry.get(key), str):
                raise ValueError(f"an operating point has no {key!r}")
        for level in ("image", "pixel"):
            if not isinstance(entry.get(level), dict):
                raise ValueError(f"operating point {entry['name']!r} has no {level!r} results")
            for name, number in entry[level].items():
                _number(number, f"operating point {entry['name']}.{level}.{name}")
        _number(entry.get("threshold"), f"operating point {entry['name']}.threshold")
        entries.append(entry)
    return entries


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} is not a number ({value!r})")
    return None if math.isnan(value) else float(value)


EVAL_FOLDER = re.compile(r"epoch_\d+")  # the default settings (recipe's protocol, model resolution)
EVAL_VARIANT = re.compile(r"epoch_\d+-.+")  # other settings (anoseg.paths.eval_variant): not reported


def find_datasets(outputs: Path) -> list[str]:
    """The datasets (first-level folders of ``outputs``) that hold at least one finished eval result, sorted."""
    outputs = Path(outputs)
    if not outputs.is_dir():
        return []
    return sorted(d.name for d in outputs.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and any(_is_result(p, d) for p in d.glob(f"**/eval/epoch_*/{METRICS_FILE}")))


def _is_result(path: Path, root: Path) -> bool:
    """A finished eval's metrics.json: in ``eval/epoch_NNN/`` and no hidden folder on the way (staging)."""
    parts = path.relative_to(root).parts
    return (len(parts) >= 3 and parts[-3] == "eval" and EVAL_FOLDER.fullmatch(parts[-2]) is not None
            and not any(p.startswith(".") for p in parts))


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
        if len(relative) >= 3 and relative[-3] == "eval" and EVAL_VARIANT.fullmatch(relative[-2]):
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
    if not (f.checkpoint and f.checkpoint_sha256):
        return None
    path = f.run / f.checkpoint
    if not path.is_file():
        return None  # checkpoints may be deleted to save space; the result still names what it scored
    from anoseg.engine.results import file_sha256

    if file_sha256(path) != f.checkpoint_sha256:
        return f"{f.checkpoint} has changed since this eval"
    return None


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
