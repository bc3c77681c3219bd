"""``anoseg report``: the papers' tables and pictures from every ``metrics.json`` under ``outputs/<dataset>``.

    outputs/<dataset>/**/eval/epoch_NNN/metrics.json ─ runs.tidy ─▶ tables (pandas) ─▶ <out>.md (+ .csv / .json)
    the same eval folder's scores/<category>.npz ─────────────────▶ figures ─────────▶ <out stem>_figures/*.png
    outputs/bench/bench.json ─────────────────────────────────────▶ cost table

One evaluated checkpoint per run (``runs.find_metrics``): the table and the figures of a run come from the same eval
folder, and the report names it. Every format is rendered (``render.py``) from the same ``Table`` objects (numbers
already in percent and rounded), so the markdown, CSV and JSON files always carry the same numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from anoseg.constants import BENCH_SCHEMA, REPORT_BY, REPORT_FORMATS
from anoseg.errors import AnosegError
from anoseg.io import check_output
from anoseg.log import warn
from anoseg.paths import bench_path
from anoseg.report.figures import category_figures, loss_curve_figures
from anoseg.report.render import Report, named_tables, print_report, render_markdown, report_files, write_tables
from anoseg.report.runs import (
    category_order,
    find_datasets,
    find_metrics,
    precision_warnings,
    run_rank,
    select_seeds,
    tidy,
    tidy_by_defect,
)
from anoseg.report.stats import IMAGE_METRICS, run_intervals
from anoseg.report.tables import (
    ORACLE_NOTE,
    RUN_KEYS,
    TASK_SPECS,
    Table,
    TaskSpec,
    by_defect_tables,
    ci_table,
    cost_table,
    operating_table,
    per_category_tables,
    run_label,
    split_line,
    summary_table,
)
from anoseg.runid import run_of_result

__all__ = ["Report", "build_report", "print_report", "report_targets"]


def report_targets(outputs: Path, dataset: str | None, out: Path | None) -> list[tuple[str, Path]]:
    """``(dataset, markdown file)`` pairs to build: ``dataset`` alone, or every dataset with eval results under
    ``outputs``. One dataset goes to ``out`` (default ``<outputs>/report.md``); several each to
    ``<out stem>_<dataset><suffix>`` (default ``<outputs>/report_<dataset>.md``). ``AnosegError`` if there is none.
    """
    outputs = Path(outputs)
    found = find_datasets(outputs)
    if dataset and found and dataset not in found:
        raise AnosegError(f"no eval results for dataset {dataset!r} under {outputs}; datasets with results: "
                          f"{', '.join(found)} — pass --dataset {found[0]}")
    datasets = [dataset] if dataset else found
    if not datasets:
        raise AnosegError(f"nothing to report under {outputs}: no eval results (run `anoseg eval` first)")
    base = Path(out) if out else outputs / "report.md"
    if len(datasets) == 1:
        return [(datasets[0], base)]
    return [(name, base.with_name(f"{base.stem}_{name}{base.suffix}")) for name in datasets]


def build_report(
    outputs: Path,
    dataset: str,
    out: Path,
    fmt: str = "markdown",
    figures: bool = True,
    categories: list[str] | None = None,
    extra_metrics: Sequence[str] = (),
    ci: bool = False,
    by: str | None = None,
) -> Report:
    """Build the summary, per-category and cost tables of ``dataset`` and write them, with figures, next to ``out``.

    ``fmt="markdown"`` writes ``out``; ``"csv"`` and ``"json"`` write the markdown as ``<out stem>.md`` plus the
    same tables as ``<stem>.csv`` (summary), ``<stem>_<metric>.csv``, ``<stem>_cost.csv`` or one ``<stem>.json``.
    ``categories`` restricts the report to these categories, in this order (default: every category, in the order
    ``anoseg eval`` wrote them, i.e. the recipe's). ``extra_metrics``: optional columns appended to the papers' ones
    (``TaskSpec.optional``, e.g. ``pixel_aupro`` from ``eval --aupro``; a run without it shows a dash); a name the
    dataset's task has no column for is left out with a warning. ``ci``: a table of the image-level metrics with their
    bootstrap confidence interval over test images, from the saved scores (anomaly datasets). ``by="defect"``: one
    table per ``DEFECT_METRICS`` metric with a row per (category, defect type) (metrics.json ``by_defect``). A line
    under the summary says which split (``split``) the runs were prepared with. Unusable ``metrics.json`` files are
    skipped with a warning.

    Example:
        >>> report = build_report(Path("outputs"), "mvtec_ad", Path("outputs/mvtec_ad/report.md"))  # doctest: +SKIP
        >>> report.summary.loc[("LFD", "SeaS"), "Pixel AP"]  # doctest: +SKIP
        77.15
    """
    if fmt not in REPORT_FORMATS:
        raise AnosegError(f"unknown report format {fmt!r} (--format): choose one of {', '.join(REPORT_FORMATS)}")
    if by is not None and by not in REPORT_BY:
        raise AnosegError(f"unknown breakdown {by!r} (--by): choose one of {', '.join(REPORT_BY)}")
    outputs, out = Path(outputs), Path(out)
    check_output(out if fmt == "markdown" else out.with_suffix(".md"))  # unwritable: refused before any work
    figures_dir = out.parent / f"{out.stem}_figures"
    if figures:
        check_output(figures_dir, folder=True, replace=False)
    warnings: list[str] = []

    def say(message: str) -> None:
        warnings.append(message)
        warn(message)

    files, skipped, sources = find_metrics(outputs, dataset)
    for message in skipped:
        say(message)
    if not files:
        raise AnosegError(
            f"nothing to report under {outputs / dataset}: no usable metrics.json"
            + (f" ({len(skipped)} skipped, see the warnings)" if skipped else " (run `anoseg eval` first)")
        )
    task = files[0].task
    spec = _with_columns(TASK_SPECS[task], task, extra_metrics, say)
    data, duplicates = tidy(files, outputs)
    data, seed_warnings = select_seeds(data)
    for message in duplicates + seed_warnings + precision_warnings(data):
        say(message)
    order = category_order(files, categories)
    if categories and spec.summary_category is not None:
        say(f"--categories does not apply to {task} datasets (one category 'all'); ignored")
    elif categories:
        left_out = sorted(set(data["category"]) - set(order))
        if left_out:
            say(f"categories not asked for are left out of the report: {', '.join(left_out)}")
        data = data[data["category"].isin(order)]
        if data.empty:
            raise AnosegError(f"nothing to report under {outputs / dataset} for categories {', '.join(categories)}")
    order = [c for c in order if c in set(data["category"])]

    tables = [summary_table(data, spec, order)]
    line = split_line(files)
    if line:
        tables[0].captions.append(line)
    operating = _operating_table(files, data, order)
    if operating is not None:
        tables[0].captions.append(ORACLE_NOTE)
        tables.append(operating)
    if ci:
        tables += _ci_tables(data, spec, order, task, outputs, say)
    per_category = per_category_tables(data, spec, order)
    tables += per_category.values()
    by_defect: dict[str, Table] = {}
    if by == "defect":
        by_defect = by_defect_tables(tidy_by_defect(files, data), spec, order)
        if not by_defect:
            say("--by defect: these metrics.json files hold no per-defect-type results (written before anoseg "
                "recorded them, or a task without defect types); re-run `anoseg eval` for them")
        tables += by_defect.values()
    cost = _cost_table(outputs, say)
    if cost is not None:
        tables.append(cost)

    for path in report_files(out, fmt, named_tables(tables, per_category, cost, by_defect)):
        check_output(path)  # every table file, before the figures are drawn
    figure_paths = _write_figures(data, order, figures_dir, say) if figures else {}
    markdown = render_markdown(dataset, task, data, tables, figure_paths, out.parent, warnings, sources)

    report = Report(
        dataset,
        task,
        tables[0].frame,
        {key: t.frame for key, t in per_category.items()},
        cost.frame if cost is not None else None,
        markdown,
        [p for paths in figure_paths.values() for p in paths],
        warnings,
        tables,
        sources,
        {key: t.frame for key, t in by_defect.items()},
    )
    report.paths[:0] = write_tables(report, out, fmt, per_category, cost, by_defect)
    return report


def _with_columns(spec: TaskSpec, task: str, extra: Sequence[str], say) -> TaskSpec:
    """``spec`` with the optional columns ``extra`` appended (in that order); names it has no column for are
    warned about and left out."""
    unknown = [m for m in extra if m not in spec.optional]
    if unknown:
        offered = ", ".join(spec.optional) or "none"
        say(f"{task} reports have no column {', '.join(unknown)} (optional columns: {offered}); left out")
    added = {m: spec.optional[m] for m in extra if m in spec.optional}
    return replace(spec, metrics={**spec.metrics, **added}) if added else spec


def _operating_table(files: list, data: pd.DataFrame, order: list[str]) -> Table | None:
    """The operating-point table of the files whose numbers the report shows (the seeds and categories kept)."""
    shown = set(data["run_dir"])
    runs = [((f.model, f.mode, f.generator), f.seed, f.operating_points, f.deployed_point) for f in files
            if str(f.path.parent) in shown and f.operating_points]
    return operating_table(runs, order)


def _ci_tables(data: pd.DataFrame, spec: TaskSpec, order: list[str], task: str, outputs: Path, say) -> list[Table]:
    """``--ci``: the image-level interval table (one), or none with a warning when the task has no image metrics."""
    if not any(m in IMAGE_METRICS for m in spec.metrics):
        say(f"--ci applies to image-level metrics, which {task} datasets do not have; ignored")
        return []
    intervals = {}
    for run in sorted(data[RUN_KEYS].drop_duplicates().itertuples(index=False, name=None), key=lambda r: run_rank(*r)):
        found, why = run_intervals(data, run, lambda folder, category: Path(folder) / "scores" / f"{category}.npz")
        if why:
            say(f"no confidence interval for {run_label(*run)}: {why.replace(f'{outputs}{os.sep}', '')}")
        intervals[run] = found
    return [ci_table(data, spec, order, intervals)]


def _cost_table(outputs: Path, say) -> Table | None:
    path = bench_path(outputs)
    if not path.is_file():
        return None
    try:
        bench = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(bench, dict) or bench.get("schema") != BENCH_SCHEMA:
            raise ValueError(f"not an {BENCH_SCHEMA} file")
        if not bench.get("models") or not all(isinstance(m, dict) and "model" in m for m in bench["models"]):
            raise ValueError("no 'models' entries")
        return cost_table(bench)
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
        say(f"skipped {path}: {exc}")
        return None


def _write_figures(data: pd.DataFrame, order: list[str], out_dir: Path, say) -> dict[str, list[Path]]:
    """Figures of every category that has at least one scores file, keyed by category."""
    sources = data.drop_duplicates([*RUN_KEYS, "category"])[[*RUN_KEYS, "category", "run_dir"]]
    sources = sorted(sources.itertuples(index=False), key=lambda s: run_rank(s.model, s.mode, s.generator))
    written = {}
    for category in order:
        scored = [
            (run_label(s.model, s.mode, s.generator), path)
            for s in sources
            if s.category == category and (path := Path(s.run_dir) / "scores" / f"{category}.npz").is_file()
        ]
        if scored:
            paths, warnings = category_figures(category, scored, out_dir)
            for message in warnings:
                say(message)
            if paths:
                written[category] = paths
    written.update(loss_curve_figures([(run_label(s.model, s.mode, s.generator), run_of_result(s.run_dir))
                                       for s in sources], out_dir))
    return written
