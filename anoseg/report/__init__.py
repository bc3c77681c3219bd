"""``anoseg report``: the papers' tables and pictures from every ``metrics.json`` under ``outputs/<dataset>``.

    outputs/<dataset>/**/eval/epoch_NNN/metrics.json ─ runs.tidy ─▶ tables (pandas) ─▶ <out>.md (+ .csv / .json)
    the same eval folder's scores/<category>.npz ─────────────────▶ figures ─────────▶ <out stem>_figures/*.png
    outputs/bench/bench.json ─────────────────────────────────────▶ cost table

One evaluated checkpoint per run (``runs.find_metrics``): the table and the figures of a run come from the same eval
folder, and the report names it. Every format is rendered from the same ``Table`` objects (numbers already in percent
and rounded), so the markdown, CSV and JSON files always carry the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from anoseg.errors import AnosegError
from anoseg.io import atomic_open, write_json, write_with
from anoseg.log import warn
from anoseg.paths import bench_path
from anoseg.report.figures import FIGURE_KINDS, category_figures
from anoseg.report.runs import category_order, find_datasets, find_metrics, run_rank, tidy
from anoseg.report.tables import (
    PER_CATEGORY_NOTE,
    RUN_KEYS,
    TASK_SPECS,
    Table,
    cost_table,
    escape_md,
    format_cells,
    per_category_tables,
    row_labels,
    run_label,
    summary_table,
    to_markdown,
)

__all__ = ["FORMATS", "Report", "build_report", "print_report", "report_targets"]

FORMATS = ("markdown", "csv", "json")
REPORT_SCHEMA = "anoseg.report/1"
BENCH_SCHEMA = "anoseg.bench/1"


@dataclass
class Report:
    """Everything ``build_report`` made: the tables as DataFrames (percent, rounded as shown), the markdown text,
    the files written and the warnings raised on the way."""

    dataset: str
    task: str
    summary: pd.DataFrame
    per_category: dict[str, pd.DataFrame]  # metric key (scene: "class_iou") → categories × runs
    cost: pd.DataFrame | None
    markdown: str
    paths: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list, repr=False)  # the same tables with bold/marks, for rendering
    sources: list[str] = field(default_factory=list)  # per run: the checkpoint (epoch, weights hash) reported


def report_targets(outputs: Path, dataset: str | None, out: Path | None) -> list[tuple[str, Path]]:
    """``(dataset, markdown file)`` pairs to build: ``dataset`` alone, or every dataset with eval results under
    ``outputs``. One dataset goes to ``out`` (default ``<outputs>/report.md``); several each to
    ``<out stem>_<dataset><suffix>`` (default ``<outputs>/report_<dataset>.md``). ``AnosegError`` if there is none.
    """
    outputs = Path(outputs)
    datasets = [dataset] if dataset else find_datasets(outputs)
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
) -> Report:
    """Build the summary, per-category and cost tables of ``dataset`` and write them, with figures, next to ``out``.

    ``fmt="markdown"`` writes ``out``; ``"csv"`` and ``"json"`` write the markdown as ``<out stem>.md`` plus the
    same tables as ``<stem>.csv`` (summary), ``<stem>_<metric>.csv``, ``<stem>_cost.csv`` or one ``<stem>.json``.
    ``categories`` restricts the report to these categories, in this order (default: every category, in the order
    ``anoseg eval`` wrote them, i.e. the recipe's). Unusable ``metrics.json`` files are skipped with a warning.

    Example:
        >>> report = build_report(Path("outputs"), "mvtec_ad", Path("outputs/mvtec_ad/report.md"))
        >>> report.summary.loc[("LFD", "SeaS"), "Pixel AP"]
        77.15
    """
    if fmt not in FORMATS:
        raise AnosegError(f"unknown report format {fmt!r} (--format): choose one of {', '.join(FORMATS)}")
    outputs, out = Path(outputs), Path(out)
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
    spec = TASK_SPECS[task]
    data, duplicates = tidy(files, outputs)
    for message in duplicates:
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
    per_category = per_category_tables(data, spec, order)
    tables += per_category.values()
    cost = _cost_table(outputs, say)
    if cost is not None:
        tables.append(cost)

    figures_dir = out.parent / f"{out.stem}_figures"
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
    )
    report.paths[:0] = _write_tables(report, out, fmt, per_category, cost)
    return report


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
    return written


def render_markdown(
    dataset: str,
    task: str,
    data: pd.DataFrame,
    tables: list[Table],
    figures: dict[str, list[Path]],
    base: Path,
    warnings: list[str],
    sources: list[str] = (),
) -> str:
    """The whole report as GitHub markdown; figure links are relative to ``base`` (the markdown's folder).
    ``sources`` name the checkpoint each run's numbers and figures come from."""
    n_runs, n_files = len(data.drop_duplicates(RUN_KEYS)), data["run_dir"].nunique()
    parts = [
        f"# anoseg report: {escape_md(dataset)}",
        f"Task {task}: {n_runs} runs from {n_files} metrics.json files under `{dataset}/`.",
        "## Summary",
        to_markdown(tables[0]).rstrip(),
    ]
    per_category = [t for t in tables if t.kind == "per_category"]
    if per_category:
        parts += ["## Per-class results" if task == "scene" else "## Per-category results", PER_CATEGORY_NOTE]
        for table in per_category:
            parts += [f"### {escape_md(table.title)}", to_markdown(table).rstrip()]
    for table in tables:
        if table.kind == "cost":
            parts += ["## Cost", to_markdown(table).rstrip()]
    if figures:
        parts.append("## Figures")
        for category, paths in figures.items():
            links = [f"![{escape_md(category)}: {FIGURE_KINDS[p.stem.rsplit('_', 1)[-1]]}]"
                     f"({quote(p.relative_to(base).as_posix())})" for p in paths]  # fmt: skip
            parts += [f"### {escape_md(category)}", "\n".join(links)]
    if sources:
        parts += ["## Checkpoints", "Each run's table rows and figures come from one evaluated checkpoint:",
                  "\n".join(f"- {escape_md(line)}" for line in sources)]
    if warnings:
        parts += ["## Warnings", "\n".join(f"- {escape_md(w)}" for w in warnings)]
    return "\n\n".join(parts) + "\n"


def _write_tables(report: Report, out: Path, fmt: str, per_category: dict[str, Table], cost: Table | None) -> list:
    md_path = out if fmt == "markdown" else out.with_suffix(".md")
    with atomic_open(md_path, "w", encoding="utf-8") as handle:
        handle.write(report.markdown)
    written = [md_path]
    base = out.with_suffix("")
    named = {"": report.tables[0], **{f"_{k}": t for k, t in per_category.items()}}
    if cost is not None:
        named["_cost"] = cost
    if fmt == "csv":
        for suffix, table in named.items():
            path = base.with_name(f"{base.name}{suffix}.csv")
            write_with(path, lambda tmp, frame=table.frame: frame.to_csv(tmp))
            written.append(path)
    elif fmt == "json":
        path = base.with_suffix(".json")
        write_json(
            path,
            {
                "schema": REPORT_SCHEMA,
                "dataset": report.dataset,
                "task": report.task,
                "summary": _table_json(report.tables[0]),
                "per_category": {k: _table_json(t) for k, t in per_category.items()},
                "cost": _table_json(cost) if cost is not None else None,
                "figures": [p.relative_to(out.parent).as_posix() for p in report.paths],
                "warnings": report.warnings,
            },
        )
        written.append(path)
    return written


def _table_json(table: Table) -> dict:
    """A table as JSON records: the index levels and the columns by name, numbers as shown (null = missing)."""
    marked = table.marks.stack()
    return {
        "title": table.title,
        "rows": table.frame.reset_index().to_dict(orient="records"),
        "marked": [[*(idx if isinstance(idx, tuple) else (idx,))] for idx in marked[marked].index],
        "captions": table.captions,
    }


def print_report(report: Report, console: Console) -> None:
    """Print the report's tables on the terminal with rich (same numbers, bold and marks as the markdown)."""
    for table in report.tables:
        if table.kind == "per_category" and table is next(t for t in report.tables if t.kind == "per_category"):
            console.print(PER_CATEGORY_NOTE, style="dim", highlight=False)
        labels = row_labels(table)
        cells = format_cells(table, ("[bold]", "[/bold]"))
        rich_table = RichTable(title=f"{report.dataset}: {table.title}", title_justify="left")
        for name in labels.columns:
            rich_table.add_column(escape(str(name)))
        for name in cells.columns:
            rich_table.add_column(escape(str(name)), justify="right")
        for label_row, cell_row in zip(labels.itertuples(index=False), cells.itertuples(index=False), strict=True):
            rich_table.add_row(*[escape(str(v)) for v in label_row], *cell_row)
        console.print(rich_table)
        for caption in table.captions:
            console.print(escape(caption), style="dim", highlight=False)
        console.print()
    for line in report.sources:
        console.print(f"checkpoint of {escape(line)}", style="dim", highlight=False)
