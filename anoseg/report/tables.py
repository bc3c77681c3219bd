"""The report's tables, built from the tidy table with pandas (rendering them is ``report/render.py``).

A ``Table`` holds the numbers exactly as shown (percent, rounded), so markdown, CSV and JSON cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from anoseg.constants import ALL_CATEGORIES, ANOMALY, PIXEL_AUPRO, ROAD, SCENE
from anoseg.report.runs import (
    PER_CATEGORY,
    UNIFIED,
    generator_label,
    generator_rank,
    model_label,
    model_rank,
    run_rank,
)

MARK = "†"  # footnote marker: the value is a mean over fewer categories/segmenters than its row claims
MISSING = "–"
AVERAGE = "Average"
RUN_KEYS = ["model", "mode", "generator"]


@dataclass(frozen=True)
class TaskSpec:
    """What the summary of one task shows."""

    metrics: dict[str, str]  # metric key in metrics.json → column title, in column order
    lower_is_better: frozenset[str] = frozenset()
    by_benchmark: bool = False  # road: one row per benchmark (um, umm, uu, URBAN) instead of a mean over categories
    summary_category: str | None = None  # scene: the summary reads only this category
    row_name: str = "Category"
    bold_within_block: bool = True  # compare generators within a segmenter (papers); False: segmenters per generator
    caption: str = ""
    optional: dict[str, str] = field(default_factory=dict)  # columns off the papers' default, shown when asked


TASK_SPECS = {
    ANOMALY: TaskSpec(
        {
            "image_auroc": "Image AUROC",
            "image_ap": "Image AP",
            "image_f1max": "Image F1-max",
            "pixel_auroc": "Pixel AUROC",
            "pixel_ap": "Pixel AP",
            "pixel_f1max": "Pixel F1-max",
            "iou": "Pixel IoU",
        },
        caption="Values in %, each the unweighted mean over the row's categories ({n} seen for this dataset). "
        "Bold: best of each column within a block, among its rows over every category (and, for Average, every "
        "segmenter) if it has any.",
        optional={PIXEL_AUPRO: "Pixel AUPRO"},  # eval --aupro: MVTec AD's per-region overlap, FPR <= 0.3
    ),
    ROAD: TaskSpec(
        {"maxf": "MaxF", "ap": "AP", "pre": "PRE", "rec": "REC", "fpr": "FPR", "fnr": "FNR"},
        lower_is_better=frozenset({"fpr", "fnr"}),
        by_benchmark=True,
        row_name="Benchmark",
        bold_within_block=False,
        caption="Values in %, one row per benchmark (URBAN = all categories pooled). Bold: best segmenter of each "
        "column for the same generator and benchmark (lowest for FPR and FNR).",
    ),
    SCENE: TaskSpec(
        {"miou": "mIoU", "pixel_acc": "Pixel acc.", "mean_class_acc": "Mean class acc."},
        summary_category=ALL_CATEGORIES,
        row_name="Class",
        bold_within_block=False,
        caption="Values in %, on the whole evaluation split. Bold: best segmenter of each column for the same "
        "generator.",
    ),
}
CLASS_IOU_PREFIX = "iou/"
PER_CATEGORY_NOTE = "Values in %. Bold: best run of each row (for the mean, among runs that cover every row)."


@dataclass
class Table:
    """Numbers as shown (``frame``, its index = the row labels) with per-cell bold and footnote marks."""

    title: str
    frame: pd.DataFrame
    bold: pd.DataFrame
    marks: pd.DataFrame
    decimals: dict[str, int]
    captions: list[str] = field(default_factory=list)
    lower_is_better: frozenset[str] = frozenset()
    kind: str = "summary"  # "summary" | "per_category" | "cost": where the table goes in the report


def run_label(model: str, mode: str, generator: str) -> str:
    """Column label of one run in the per-category tables, e.g. ``"LFD / SeaS"``."""
    return f"{model_label(model, mode)} / {generator_label(generator)}"


def best_mask(values: pd.DataFrame, groups: pd.Series, eligible: pd.DataFrame, lower: frozenset[str]) -> pd.DataFrame:
    """True where a cell holds the best eligible value of its column within its group (ties all win).

    Groups with fewer than two eligible values have no best: bold in a one-row block says nothing.
    """
    masked = values.where(eligible)
    grouped = masked.groupby(groups, sort=False)
    best = grouped.transform("max")
    low = [c for c in values.columns if c in lower]
    best[low] = grouped[low].transform("min")
    return masked.eq(best) & grouped.transform("count").ge(2)


@dataclass
class _Row:
    """One summary row on its way into the table."""

    key: tuple  # (model, mode, generator[, benchmark]); model is AVERAGE for the Average rows
    covered: frozenset[str]  # categories behind the values
    label: dict[str, str]  # Segmenter, Generator[, Benchmark]
    values: pd.Series  # metric key → fraction
    marks: pd.Series  # metric key → footnote mark
    complete: bool  # covers every category (Average: and every segmenter)
    group: tuple  # the rows bold compares with each other


def summary_table(data: pd.DataFrame, spec: TaskSpec, order: list[str]) -> Table:
    """The papers' table: a block per segmenter, a row per generator (road: per generator and benchmark), then an
    Average block over segmenters; each cell the unweighted mean over the row's categories, in percent.
    """
    metrics = list(spec.metrics)
    data = data[data["metric"].isin(metrics)]
    if spec.summary_category is not None:
        data = data[data["category"] == spec.summary_category]
    position = {c: i for i, c in enumerate(order)}
    runs, notes = _run_rows(data, spec, position)
    rows = list(runs)
    # one Average block per training mode: a per-category LFD is not another segmenter to average with LFD
    for mode in (UNIFIED, PER_CATEGORY):
        averages, average_notes = _average_rows(runs, mode, spec, position)
        rows += averages
        notes += average_notes

    labels = pd.DataFrame([r.label for r in rows])
    index = pd.MultiIndex.from_frame(labels)
    shown = (pd.DataFrame([r.values for r in rows]) * 100).round(2).rename(columns=spec.metrics).set_axis(index)
    marks = pd.DataFrame([r.marks for r in rows]).rename(columns=spec.metrics).set_axis(index).astype(bool)
    groups = pd.Series([str(r.group) for r in rows], index=index)
    complete = pd.Series([r.complete for r in rows], index=index)
    # bold compares like with like: complete rows, unless the group has none
    eligible_rows = complete | ~complete.groupby(groups).transform("any")
    eligible = pd.DataFrame({c: eligible_rows for c in shown.columns})
    lower = frozenset(spec.metrics[k] for k in spec.lower_is_better)
    bold = best_mask(shown, groups, eligible, lower)
    n_union = data["category"].nunique()
    captions = [spec.caption.format(n=n_union), _protocol_line(data)]
    if notes:
        captions.append(
            f"{MARK} mean over fewer values than the row covers (undefined metrics, null in metrics.json, are left "
            "out): " + "; ".join(notes) + "."
        )
    return Table("Summary", shown, bold, marks, dict.fromkeys(shown.columns, 2), captions, lower)


def _run_rows(data: pd.DataFrame, spec: TaskSpec, position: dict[str, int]) -> tuple[list[_Row], list[str]]:
    """One row per run (road: per run and benchmark), in report order, and the footnotes of its marked cells."""
    metrics = list(spec.metrics)
    keys = RUN_KEYS + (["category"] if spec.by_benchmark else [])
    stats = data.groupby([*keys, "metric"])["value"].agg(["mean", "count"])
    means = stats["mean"].unstack("metric").reindex(columns=metrics)
    defined = stats["count"].unstack("metric").reindex(columns=metrics).fillna(0)
    covered = data.groupby(keys)["category"].agg(frozenset)
    have = data[data["value"].notna()].groupby([*keys, "metric"])["category"].agg(frozenset)
    union = frozenset(data["category"])

    def rank(key: tuple) -> tuple:
        return (*run_rank(*key[:3]), *[position.get(c, len(position)) for c in key[3:]])

    rows, notes = [], []
    for key in sorted(means.index, key=rank):
        cats = covered[key]
        complete = spec.by_benchmark or cats == union
        # a category whose metric is null (undefined) drops out of that metric's mean: mark the cell, never hide it
        marks = defined.loc[key].lt(len(cats)) & means.loc[key].notna()
        for m in marks[marks].index:
            missing = sorted(cats - have.get((*key, m), frozenset()), key=lambda c: position.get(c, 0))
            notes.append(f"{_where(key)}: {spec.metrics[m]} (without {', '.join(missing)})")
        note = None if complete else f"{len(cats)}/{len(union)} categories"
        # bold compares a segmenter's generators (papers), or the segmenters of one generator (road, scene)
        group = (*key[:2], *key[3:]) if spec.bold_within_block else key[2:]
        rows.append(_Row(key, cats, _row_label(key, spec, note), means.loc[key], marks, complete, group))
    return rows, notes


def _average_rows(runs: list[_Row], mode: str, spec: TaskSpec, position: dict[str, int]):
    """The Average block of one training mode: per generator (road: and benchmark), the mean over segmenters.

    Segmenters covering different category sets are never mixed: a row averages those that cover every
    category, else the set most of them share, and its label says how many categories and segmenters it has.
    """
    in_mode = [r for r in runs if r.key[1] == mode]
    n_blocks = len({r.label["Segmenter"] for r in in_mode})
    if n_blocks < 2:  # one segmenter: its Average block would repeat it
        return [], []
    union = None if spec.by_benchmark else frozenset().union(*[r.covered for r in runs])
    by_key: dict[tuple, list[_Row]] = {}
    for r in in_mode:
        by_key.setdefault(r.key[2:], []).append(r)
    rows, notes = [], []
    for key in sorted(by_key, key=lambda k: (*generator_rank(k[0]), *[position.get(c, len(position)) for c in k[1:]])):
        group = by_key[key]
        sets = Counter(r.covered for r in group)
        if union is not None and union in sets:
            chosen = union
        else:  # the set most segmenters share, then the larger one, then by name (deterministic)
            chosen = min(sets, key=lambda s: (-sets[s], -len(s), sorted(s)))
        picked = [r for r in group if r.covered == chosen]
        parts = []
        if union is not None and chosen != union:
            parts.append(f"{len(chosen)}/{len(union)} categories")
        if len(picked) < n_blocks:
            parts.append(f"{len(picked)}/{n_blocks} segmenters")
        values = pd.DataFrame([r.values for r in picked])
        mean = values.mean()
        fewer = values.notna().sum().lt(len(picked))  # null for some segmenter: fewer segmenters in its mean
        marks = (fewer | pd.DataFrame([r.marks for r in picked]).any()) & mean.notna()
        label = _row_label((AVERAGE, mode, *key), spec, ", ".join(parts) or None)
        group_key = (AVERAGE, mode, *key[1:]) if spec.bold_within_block else (AVERAGE, mode, *key)
        rows.append(_Row((AVERAGE, mode, *key), chosen, label, mean, marks, not parts, group_key))
        where = f"{label['Segmenter']} / {label['Generator']}"
        notes += [
            f"{where}: {spec.metrics[m]} ({'defined for fewer segmenters' if fewer[m] else 'includes a marked mean'})"
            for m in marks[marks].index
        ]
    return rows, notes


def _where(key: tuple) -> str:
    return " / ".join([run_label(*key[:3]), *key[3:]])


def _row_label(key: tuple, spec: TaskSpec, note: str | None) -> dict[str, str]:
    """Index labels of a summary row; ``key`` = (model, mode, generator[, benchmark]), model may be ``AVERAGE``."""
    generator = generator_label(key[2]) + (f" ({note})" if note else "")
    label = {"Segmenter": model_label(key[0], key[1]), "Generator": generator}
    if spec.by_benchmark:
        label[spec.row_name] = key[3]
    return label


def _protocol_line(data: pd.DataFrame) -> str:
    combos = data.drop_duplicates([*RUN_KEYS, "protocol", "epoch"])
    combos = combos.assign(epoch=combos["epoch"].map(lambda e: "unknown" if pd.isna(e) else str(int(e))))
    pairs = combos.groupby(["protocol", "epoch"], sort=True)
    if pairs.ngroups == 1:
        (protocol, epoch), _ = next(iter(pairs))
        return f"Protocol {protocol}, epoch {epoch}."
    parts = []
    for (protocol, epoch), group in pairs:
        keys = sorted(set(zip(group.model, group["mode"], group.generator, strict=True)), key=lambda k: run_rank(*k))
        runs = [run_label(*k) for k in keys]
        parts.append(f"protocol {protocol}, epoch {epoch}: {', '.join(runs)}")
    return "Mixed protocols/epochs — " + "; ".join(parts) + "."


def per_category_tables(data: pd.DataFrame, spec: TaskSpec, order: list[str]) -> dict[str, Table]:
    """One table per metric: categories as rows (plus ``mean``), runs as columns. Scene: one per-class IoU table.

    Road has none: its summary already has a row per benchmark.
    """
    if spec.by_benchmark:
        return {}
    if spec.summary_category is not None:
        ious = data[data["metric"].str.startswith(CLASS_IOU_PREFIX)]
        ious = ious.assign(row=ious["metric"].str.removeprefix(CLASS_IOU_PREFIX))
        classes = list(dict.fromkeys(ious["row"]))
        return {"class_iou": _runs_by_rows(ious, classes, "Per-class IoU", spec.row_name)} if len(ious) else {}
    tables = {}
    for metric, title in spec.metrics.items():
        subset = data[data["metric"] == metric].assign(row=lambda d: d["category"])
        if len(subset):
            tables[metric] = _runs_by_rows(subset, order, title, spec.row_name)
    return tables


def _runs_by_rows(data: pd.DataFrame, order: list[str], title: str, row_name: str) -> Table:
    wide = data.set_index(["row", *RUN_KEYS])["value"].unstack(RUN_KEYS)
    columns = sorted(wide.columns, key=lambda c: run_rank(*c))
    wide = wide.reindex(index=[r for r in order if r in wide.index], columns=columns)
    n_rows = len(wide)
    mean = wide.mean()
    complete = wide.notna().sum().eq(n_rows)
    shown = (pd.concat([wide, mean.to_frame("mean").T]) * 100).round(2)
    shown.columns = [run_label(*c) for c in columns]
    shown.index.name = row_name
    marks = pd.DataFrame(False, index=shown.index, columns=shown.columns)
    marks.iloc[-1] = (~complete).to_numpy() & shown.iloc[-1].notna().to_numpy()
    # bold per row across runs: transpose so each row becomes a column of best_mask
    eligible = pd.DataFrame(True, index=shown.columns, columns=shown.index)
    if complete.any():
        eligible["mean"] = complete.to_numpy()
    bold = best_mask(shown.T, pd.Series(0, index=shown.columns), eligible, frozenset()).T
    captions = []
    if marks.to_numpy().any():
        captions.append(f"{MARK} mean over the rows this run has only (a dash marks a missing or undefined value).")
    return Table(title, shown, bold, marks, dict.fromkeys(shown.columns, 2), captions, kind="per_category")


COST_COLUMNS = {  # bench.json key → (title, scale, decimals)
    "params": ("Params (M)", 1e-6, 3),
    "gmacs": ("GMACs", 1.0, 3),
    "latency_ms": ("Latency (ms)", 1.0, 2),
    "fps": ("FPS", 1.0, 1),
    "peak_mem_mb": ("Peak mem (MB)", 1.0, 1),
    "fast_latency_ms": ("Fast latency (ms)", 1.0, 2),
    "fast_speedup": ("Fast speed-up (×)", 1.0, 2),
    "onnx_latency_ms": ("ONNX latency (ms)", 1.0, 2),
}


def cost_table(bench: dict) -> Table:
    """Parameters, GMACs, latency, FPS and the fast-path speed-up per segmenter, from a parsed ``bench.json``."""
    models = pd.DataFrame(bench["models"])
    models = models.iloc[sorted(range(len(models)), key=lambda i: model_rank(models["model"].iloc[i]))]
    frame = pd.DataFrame(index=pd.Index([model_label(m) for m in models["model"]], name="Segmenter"))
    decimals = {}
    for key, (title, scale, digits) in COST_COLUMNS.items():
        if key in models and models[key].notna().any():
            frame[title] = (pd.to_numeric(models[key], errors="coerce") * scale).round(digits).to_numpy()
            decimals[title] = digits
    size = bench.get("size") or ["?", "?"]
    caption = (
        f"Device {bench.get('device', '?')}, {bench.get('threads', '?')} threads, input {size[0]}×{size[1]}, "
        "batch 1. Fast speed-up = latency / fast-path latency."
    )
    false = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    return Table("Cost", frame, false, false.copy(), decimals, [caption], kind="cost")
