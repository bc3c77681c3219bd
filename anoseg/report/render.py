"""Rendering of the report: its tables as markdown, CSV, JSON and rich terminal tables, and the markdown page.

Data collection (reading ``metrics.json``, building the ``Table`` objects) is ``runs.py`` and ``tables.py``; this
module only turns finished ``Table`` objects into text, so every format shows the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from anoseg.constants import REPORT_SCHEMA, SCENE
from anoseg.io import NAME_ERRORS, TEXT_ENCODING, atomic_open, write_json, write_with
from anoseg.report.figures import FIGURE_KINDS
from anoseg.report.tables import BY_DEFECT_NOTE, MARK, MISSING, PER_CATEGORY_NOTE, RUN_KEYS, Table


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
    by_defect: dict[str, pd.DataFrame] = field(default_factory=dict)  # --by defect: metric → (category / type) × runs


def escape_md(text: str) -> str:
    """Escape text for a GitHub markdown table cell: ``metal_nut`` → ``metal\\_nut``."""
    for char in ("\\", "_", "*", "|", "[", "]", "<", ">"):
        text = text.replace(char, "\\" + char)
    return text


def format_cells(table: Table, bold_fmt: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """The table's numbers as strings: fixed decimals, dash for missing, marker and bold applied."""

    def column(values: pd.Series) -> pd.Series:
        digits = table.decimals.get(values.name, 2)
        return values.map(lambda v: MISSING if pd.isna(v) else f"{v:.{digits}f}")

    text = table.frame.apply(column)
    if table.std is not None:  # "mean ± std"; nothing after a value without a std (one seed)
        spread = table.std.reindex_like(table.frame).apply(column)
        text = text.where(spread.eq(MISSING) | text.eq(MISSING), text + " ± " + spread)
    if table.interval is not None:  # "value [low, high]"
        low, high = (side.reindex_like(table.frame).apply(column) for side in table.interval)
        text = text.where(low.eq(MISSING) | text.eq(MISSING), text + " [" + low + ", " + high + "]")
    text = text.where(~table.marks, text + MARK)
    return text.where(~table.bold, bold_fmt[0] + text + bold_fmt[1])


def row_labels(table: Table) -> pd.DataFrame:
    """The index as label columns; the block name (first level of a multi-level index) only on its first row."""
    labels = table.frame.index.to_frame(index=False).astype(str)
    if labels.shape[1] > 1:
        first = labels.iloc[:, 0]
        labels.iloc[:, 0] = first.where(first.ne(first.shift()), "")
    return labels


def to_markdown(table: Table) -> str:
    """Render a ``Table`` as a GitHub markdown table followed by its captions."""
    labels = row_labels(table).map(escape_md)
    cells = format_cells(table)
    header = [escape_md(str(n)) for n in labels.columns] + [escape_md(str(c)) for c in cells.columns]
    align = [":--"] * labels.shape[1] + ["--:"] * cells.shape[1]
    body = np.concatenate([labels.to_numpy(dtype=str), cells.to_numpy(dtype=str)], axis=1)
    lines = ["| " + " | ".join(row) + " |" for row in [header, align, *body.tolist()]]
    return "\n".join(lines) + "".join(f"\n\n{escape_md(c)}" for c in table.captions) + "\n"


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
    for table in tables:
        if table.kind in ("operating", "ci"):
            parts += [f"## {escape_md(table.title)}", to_markdown(table).rstrip()]
    per_category = [t for t in tables if t.kind == "per_category"]
    if per_category:
        parts += ["## Per-class results" if task == SCENE else "## Per-category results", PER_CATEGORY_NOTE]
        for table in per_category:
            parts += [f"### {escape_md(table.title)}", to_markdown(table).rstrip()]
    by_defect = [t for t in tables if t.kind == "by_defect"]
    if by_defect:
        parts += ["## Per-defect-type results", BY_DEFECT_NOTE]
        for table in by_defect:
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
        parts += [
            "## Checkpoints",
            "Each run's table rows and figures come from one evaluated checkpoint:",
            "\n".join(f"- {escape_md(line)}" for line in sources),
        ]
    if warnings:
        parts += ["## Warnings", "\n".join(f"- {escape_md(w)}" for w in warnings)]
    return "\n\n".join(parts) + "\n"


def write_tables(report: Report, out: Path, fmt: str, per_category: dict[str, Table], cost: Table | None,
                 by_defect: dict[str, Table] | None = None) -> list[Path]:
    """Write the report's markdown (``out``, or ``<out stem>.md`` for the other formats) and, for ``fmt`` ``"csv"``
    or ``"json"``, the same tables as CSV files (``--by defect``: ``<stem>_by_defect_<metric>.csv``) or one JSON file
    beside it, atomically. Returns the files written."""
    by_defect = by_defect or {}
    named = named_tables(report.tables, per_category, cost, by_defect)
    files = report_files(out, fmt, named)
    md_path = files[0]
    with atomic_open(md_path, "w", encoding=TEXT_ENCODING, errors=NAME_ERRORS) as handle:
        handle.write(report.markdown)
    written = [md_path]
    ci, operating = named.get("_ci"), named.get("_operating")
    if fmt == "csv":
        for table, path in zip(named.values(), files[1:], strict=True):
            numbers = table.numbers()
            write_with(path, lambda tmp, frame=numbers: frame.to_csv(tmp, encoding=TEXT_ENCODING, errors=NAME_ERRORS))
            written.append(path)
    elif fmt == "json":
        path = files[1]
        write_json(
            path,
            {
                "schema": REPORT_SCHEMA,
                "dataset": report.dataset,
                "task": report.task,
                "summary": _table_json(report.tables[0]),
                "per_category": {k: _table_json(t) for k, t in per_category.items()},
                "cost": _table_json(cost) if cost is not None else None,
                "ci": _table_json(ci) if ci is not None else None,
                **({"by_defect": {k: _table_json(t) for k, t in by_defect.items()}} if by_defect else {}),
                "operating_points": _table_json(operating) if operating is not None else None,
                "figures": [p.relative_to(out.parent).as_posix() for p in report.paths],
                "warnings": report.warnings,
            },
        )
        written.append(path)
    return written


def named_tables(tables: list[Table], per_category: dict[str, Table], cost: Table | None,
                 by_defect: dict[str, Table] | None = None) -> dict[str, Table]:
    """The tables a report writes as files, by file-name suffix: ``""`` (the summary), ``_<metric>``,
    ``_by_defect_<metric>``, ``_cost``, ``_ci``, ``_operating``."""
    named = {"": tables[0], **{f"_{k}": t for k, t in per_category.items()}}
    named.update({f"_by_defect_{k}": t for k, t in (by_defect or {}).items()})
    if cost is not None:
        named["_cost"] = cost
    for kind in ("ci", "operating"):
        table = next((t for t in tables if t.kind == kind), None)
        if table is not None:
            named[f"_{kind}"] = table
    return named


def report_files(out: Path, fmt: str, named: dict[str, Table]) -> list[Path]:
    """The files ``write_tables`` writes, the markdown first: ``out`` (or ``<out stem>.md``), then one CSV per named
    table (``csv``) or one JSON (``json``)."""
    md_path = out if fmt == "markdown" else out.with_suffix(".md")
    base = out.with_suffix("")
    if fmt == "csv":
        return [md_path, *(base.with_name(f"{base.name}{suffix}.csv") for suffix in named)]
    if fmt == "json":
        return [md_path, base.with_suffix(".json")]
    return [md_path]


def _table_json(table: Table) -> dict:
    """A table as JSON records: the index levels and the columns by name, numbers as shown (null = missing)."""
    marked = table.marks.stack()
    return {
        "title": table.title,
        "rows": table.numbers().reset_index().to_dict(orient="records"),
        "marked": [[*(idx if isinstance(idx, tuple) else (idx,))] for idx in marked[marked].index],
        "captions": table.captions,
    }


def print_report(report: Report, console: Console) -> None:
    """Print the report's tables on the terminal with rich (same numbers, bold and marks as the markdown)."""
    for table in report.tables:
        if table.kind == "per_category" and table is next(t for t in report.tables if t.kind == "per_category"):
            console.print(PER_CATEGORY_NOTE, style="dim", highlight=False)
        if table.kind == "by_defect" and table is next(t for t in report.tables if t.kind == "by_defect"):
            console.print(BY_DEFECT_NOTE, style="dim", highlight=False)
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
