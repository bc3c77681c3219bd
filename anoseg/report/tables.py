"""The report's tables, built from the tidy table with pandas (rendering them is ``report/render.py``).

A ``Table`` holds the numbers exactly as shown (percent, rounded), so markdown, CSV and JSON cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from anoseg.constants import ALL_CATEGORIES, ANOMALY, DEFECT_METRICS, PIXEL_AUPRO, PROTOCOL_REAL_FRACTION, ROAD, SCENE
from anoseg.report.runs import (
    PER_CATEGORY,
    PROVENANCE,
    UNIFIED,
    generator_label,
    generator_rank,
    model_label,
    model_rank,
    run_rank,
)
from anoseg.report.stats import CI_LEVEL, CI_RESAMPLES, IMAGE_METRICS, seeds_line, significant_best

MARK = "†"  # footnote marker: the value is a mean over fewer categories/segmenters than its row claims
MISSING = "–"
AVERAGE = "Average"
RUN_KEYS = ["model", "mode", "generator"]
SEEDS_COLUMN = "n"  # summary column of a table with seeds: how many seeds stand behind the row
# the provenance columns (anoseg.report.runs.PROVENANCE) as row labels, shown only in a table whose rows mix them
PROVENANCE_TITLES = {"precision": "Precision", "device_kind": "Device"}
MIXED_JOIN = " & "  # the values of a row that mixes them
SEEDS_BOLD = ("With seeds, bold also needs the best value to beat the next best by a two-sided paired t-test over the "
              "(seed, category) pairs both have, p < 0.05; else no bold.")


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
    kind: str = "summary"  # "summary" | "per_category" | "by_defect" | "cost" | "ci": where it goes in the report
    std: pd.DataFrame | None = None  # with seeds: the sample std over seeds of each cell (same shape, as shown)
    interval: tuple[pd.DataFrame, pd.DataFrame] | None = None  # --ci: (low, high) of each cell, as shown

    def numbers(self) -> pd.DataFrame:
        """Every number of the table as columns, for CSV and JSON: the values, then ``<column> std``,
        ``<column> CI low`` and ``<column> CI high`` where the table has them."""
        parts = [self.frame]
        if self.std is not None:
            parts.append(self.std.add_suffix(" std"))
        if self.interval is not None:
            parts += [self.interval[0].add_suffix(" CI low"), self.interval[1].add_suffix(" CI high")]
        return pd.concat(parts, axis=1) if len(parts) > 1 else self.frame


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
    values: pd.Series  # metric key → fraction (with seeds: the mean over seeds)
    marks: pd.Series  # metric key → footnote mark
    complete: bool  # covers every category (Average: and every segmenter)
    group: tuple  # the rows bold compares with each other
    per_seed: pd.DataFrame  # seed × metric key: the row's value for each seed
    samples: pd.DataFrame  # observations ((seed, category); Average: (segmenter, seed, category)) × metric key
    provenance: dict[str, frozenset[str]] = field(default_factory=dict)  # precision, device_kind → values behind it

    @property
    def std(self) -> pd.Series:
        """Sample standard deviation over seeds (NaN with one seed)."""
        return self.per_seed.std(ddof=1) if len(self.per_seed) > 1 else self.per_seed.iloc[0] * float("nan")


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

    labels = pd.DataFrame(with_provenance(rows))
    index = pd.MultiIndex.from_frame(labels)
    shown = (pd.DataFrame([r.values for r in rows]) * 100).round(2).rename(columns=spec.metrics).set_axis(index)
    marks = pd.DataFrame([r.marks for r in rows]).rename(columns=spec.metrics).set_axis(index).astype(bool)
    groups = pd.Series([str(r.group) for r in rows], index=index)
    complete = pd.Series([r.complete for r in rows], index=index)
    # bold compares like with like: complete rows, unless the group has none
    eligible_rows = complete | ~complete.groupby(groups).transform("any")
    eligible = pd.DataFrame({c: eligible_rows for c in shown.columns})
    lower = frozenset(spec.metrics[k] for k in spec.lower_is_better)
    seeded = has_seeds(data)
    if seeded:  # bold only when the best row beats the next one beyond the noise (anoseg.report.stats)
        samples = [r.samples.rename(columns=spec.metrics) for r in rows]
        bold = significant_best(shown, samples, groups, eligible, lower)
    else:
        bold = best_mask(shown, groups, eligible, lower)
    n_union = data["category"].nunique()
    captions = [spec.caption.format(n=n_union), _protocol_line(data)]
    std = None
    if seeded:
        std = (pd.DataFrame([r.std for r in rows]) * 100).round(2).rename(columns=spec.metrics).set_axis(index)
        shown[SEEDS_COLUMN] = [len(r.per_seed) for r in rows]
        for frame, fill in ((marks, False), (bold, False)):
            frame[SEEDS_COLUMN] = fill
        captions[0] += " " + SEEDS_BOLD
        runs_n = {_where(r.key): len(r.per_seed) for r in runs}
        captions.append(seeds_line(runs_n, sorted(data["seed"].unique()), "row") + " Average rows: over the seeds "
                        "all their segmenters have.")
    if notes:
        captions.append(
            f"{MARK} mean over fewer values than the row covers (undefined metrics, null in metrics.json, are left "
            "out): " + "; ".join(notes) + "."
        )
    decimals = dict.fromkeys(shown.columns, 2) | ({SEEDS_COLUMN: 0} if seeded else {})
    return Table("Summary", shown, bold, marks, decimals, captions, lower, std=std)


def with_provenance(rows: list[_Row]) -> list[dict[str, str]]:
    """The rows' labels, plus a ``Precision`` / ``Device`` label for each provenance field whose values differ
    between the rows (or within one: seeds trained apart); a table whose rows all trained alike shows neither."""
    shown = [key for key in PROVENANCE
             if len(frozenset().union(*[r.provenance.get(key, frozenset()) for r in rows])) > 1]
    return [r.label | {PROVENANCE_TITLES[key]: MIXED_JOIN.join(sorted(r.provenance.get(key, frozenset())))
                       for key in shown} for r in rows]


def mixed_provenance_line(data: pd.DataFrame) -> str | None:
    """A caption for a table whose runs are columns: each run's precision / device when the runs mix them, else
    None."""
    parts = []
    for key in PROVENANCE:
        if data[key].nunique() < 2:
            continue
        per_run = data.groupby(RUN_KEYS)[key].agg(lambda v: MIXED_JOIN.join(sorted(set(v))))
        runs = sorted(per_run.items(), key=lambda item: run_rank(*item[0]))
        parts.append(f"{PROVENANCE_TITLES[key]} per run: " + ", ".join(f"{run_label(*r)} {v}" for r, v in runs) + ".")
    return " ".join(parts) or None


def has_seeds(data: pd.DataFrame) -> bool:
    """Whether some run of the tidy table has several seeds: then every table shows mean ± std and n."""
    return bool(len(data)) and int(data.groupby(RUN_KEYS)["seed"].nunique().max()) > 1


def _run_rows(data: pd.DataFrame, spec: TaskSpec, position: dict[str, int]) -> tuple[list[_Row], list[str]]:
    """One row per run (road: per run and benchmark), in report order, and the footnotes of its marked cells."""
    metrics = list(spec.metrics)
    keys = RUN_KEYS + (["category"] if spec.by_benchmark else [])
    # each seed's value is the mean over categories; the row's value the mean over seeds (one seed: that value)
    per_seed = data.groupby([*keys, "seed", "metric"])["value"].mean().unstack("metric").reindex(columns=metrics)
    means = per_seed.groupby(level=keys).mean()
    n_seeds = data.groupby(keys)["seed"].nunique()
    defined = data.groupby([*keys, "metric"])["value"].count().unstack("metric").reindex(columns=metrics).fillna(0)
    defined = defined.div(n_seeds.reindex(defined.index), axis=0)
    covered = data.groupby(keys)["category"].agg(frozenset)
    # a category counts as having a metric only if every seed has it
    cat = [] if "category" in keys else ["category"]  # road: the benchmark (category) is part of the row's key
    counts = data.groupby([*keys, "metric", *cat])["value"].count().rename("count").reset_index()
    counts = counts.merge(n_seeds.rename("n").reset_index(), on=keys)
    have = counts[counts["count"].ge(counts["n"])].groupby([*keys, "metric"])["category"].agg(frozenset)
    samples = data.set_index([*RUN_KEYS, "seed", "category", "metric"])["value"].unstack("metric")
    samples = samples.reindex(columns=metrics)
    union = frozenset(data["category"])
    provenance = {k: data.groupby(keys)[k].agg(frozenset) for k in PROVENANCE if k in data}

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
        sample = samples.loc[key[:3]]
        if spec.by_benchmark:
            sample = sample[sample.index.get_level_values("category") == key[3]]
        rows.append(_Row(key, cats, _row_label(key, spec, note), means.loc[key], marks, complete, group,
                         per_seed.loc[key], sample, {k: values[key] for k, values in provenance.items()}))
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
        # per seed: the mean over segmenters, for the seeds every picked segmenter has
        common = sorted(set.intersection(*[set(r.per_seed.index) for r in picked]))
        per_seed = (pd.concat([r.per_seed.loc[common] for r in picked]).groupby(level=0).mean() if common
                    else mean.to_frame().T)
        samples = pd.concat({r.key[0]: r.samples for r in picked})
        fewer = values.notna().sum().lt(len(picked))  # null for some segmenter: fewer segmenters in its mean
        marks = (fewer | pd.DataFrame([r.marks for r in picked]).any()) & mean.notna()
        label = _row_label((AVERAGE, mode, *key), spec, ", ".join(parts) or None)
        group_key = (AVERAGE, mode, *key[1:]) if spec.bold_within_block else (AVERAGE, mode, *key)
        provenance = {k: frozenset().union(*[r.provenance.get(k, frozenset()) for r in picked]) for k in PROVENANCE}
        rows.append(_Row((AVERAGE, mode, *key), chosen, label, mean, marks, not parts, group_key, per_seed,
                         samples, provenance))
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


BY_DEFECT_NOTE = ("Values in %. Each defect type's test images against its category's good test images (image "
                  "AUROC/AP; pixel AP over the pixels of both; IoU over the type's images); mean = the unweighted "
                  "mean over defect types. Bold: best run of each row.")
DEFECT_ROW = "Category / defect type"


def by_defect_tables(defects: pd.DataFrame, spec: TaskSpec, order: list[str]) -> dict[str, Table]:
    """``report --by defect``: one table per metric of ``DEFECT_METRICS``, rows (category / defect type) in the
    category order then by defect name, runs as columns; with seeds, mean ± std over seeds as the per-category
    tables. ``defects`` is ``runs.tidy_by_defect``'s table."""
    if defects.empty:
        return {}
    rank = {c: i for i, c in enumerate(order)}
    defects = defects[defects["category"].isin(rank)]
    defects = defects.assign(row=defects["category"] + " / " + defects["defect"])
    pairs = sorted(set(zip(defects["category"], defects["defect"], strict=True)), key=lambda p: (rank[p[0]], p[1]))
    rows = [f"{c} / {d}" for c, d in pairs]
    tables = {}
    for metric in DEFECT_METRICS:
        subset = defects[defects["metric"] == metric]
        if len(subset):
            title = f"{spec.metrics.get(metric, metric)} by defect type"
            table = _runs_by_rows(subset, rows, title, DEFECT_ROW)
            tables[metric] = replace(table, kind="by_defect")
    return tables


def _split_text(split: dict[str, Any] | None) -> str:
    if split is None:
        return "not recorded"
    val, fraction = split.get("val") or 0, split.get("real_fraction")
    fraction = PROTOCOL_REAL_FRACTION if fraction is None else fraction
    if not val and abs(fraction - PROTOCOL_REAL_FRACTION) < 1e-12:
        return "the papers' protocol (no validation part; the first ⌊n/3⌋ real defects of each type train)"
    parts = [f"validation part split.val = {val:g} held out of the training side" if val else "no validation part"]
    if abs(fraction - PROTOCOL_REAL_FRACTION) < 1e-12:
        parts.append("the first ⌊n/3⌋ real defects of each type train")
    elif fraction == 0:
        parts.append("no real defect trains (split.real_fraction = 0: generated pairs only)")
    else:
        parts.append(f"the first ⌊{fraction:g}·n⌋ real defects of each type train (split.real_fraction, at most "
                     "⌊n/3⌋)")
    return ", ".join(parts) + ", test: the protocol's 2/3"


def split_line(files: list) -> str | None:
    """The line under the summary saying which split the runs were prepared with (metrics.json ``split``), per run
    when they differ; for results from before anoseg recorded the split (none records it), that it was not
    recorded, and what anoseg's split then always was."""
    if all(f.split is None for f in files):
        return (f"Split: {_split_text(None)} (evaluated before anoseg recorded it; anoseg's split was then always "
                "the papers' protocol: no validation part, the first ⌊n/3⌋ real defects of each type train).")
    texts: dict[str, list[str]] = {}
    for f in sorted(files, key=lambda f: run_rank(f.model, f.mode, f.generator)):
        label = run_label(f.model, f.mode, f.generator)
        runs = texts.setdefault(_split_text(f.split), [])
        if label not in runs:
            runs.append(label)
    if len(texts) == 1:
        return f"Split: {next(iter(texts))}."
    return "Split: " + "; ".join(f"{', '.join(runs)}: {text}" for text, runs in texts.items()) + "."


def _runs_by_rows(data: pd.DataFrame, order: list[str], title: str, row_name: str) -> Table:
    """Rows (categories or classes) × runs; with seeds each cell is the mean over seeds (± sample std), and the
    ``mean`` row the mean over seeds of each seed's mean over rows."""
    seeded = has_seeds(data)
    data = data[data["row"].isin(order)]
    cells = data.groupby(["row", *RUN_KEYS])["value"]
    wide = cells.mean().unstack(RUN_KEYS)
    columns = sorted(wide.columns, key=lambda c: run_rank(*c))
    rows = [r for r in order if r in wide.index]
    wide = wide.reindex(index=rows, columns=columns)
    n_rows = len(wide)
    per_seed = data.groupby([*RUN_KEYS, "seed"])["value"].mean()  # (run, seed) → the seed's mean over rows
    mean = per_seed.groupby(level=RUN_KEYS).mean().reindex(columns)
    complete = wide.notna().sum().eq(n_rows)
    shown = (pd.concat([wide, mean.to_frame("mean").T]) * 100).round(2)
    labels = [run_label(*c) for c in columns]
    shown.columns = labels
    shown.index.name = row_name
    marks = pd.DataFrame(False, index=shown.index, columns=shown.columns)
    marks.iloc[-1] = (~complete).to_numpy() & shown.iloc[-1].notna().to_numpy()
    # bold per row across runs: transpose so each row becomes a column of best_mask
    eligible = pd.DataFrame(True, index=shown.columns, columns=shown.index)
    if complete.any():
        eligible["mean"] = complete.to_numpy()
    captions = []
    std = None
    if seeded:
        spread = cells.std(ddof=1).unstack(RUN_KEYS).reindex(index=rows, columns=columns)
        mean_std = per_seed.groupby(level=RUN_KEYS).std(ddof=1).reindex(columns)
        std = (pd.concat([spread, mean_std.to_frame("mean").T]) * 100).round(2)
        std.columns, std.index = shown.columns, shown.index
        # observations per run: (seed, row) → value in the row's own column and in "mean"
        samples = []
        for column in columns:
            own = data[(data[RUN_KEYS] == pd.Series(column, index=RUN_KEYS)).all(axis=1)]
            values = own.set_index(["seed", "row"])["value"]
            in_row = values.index.get_level_values("row")
            frame = pd.DataFrame({r: values.where(in_row == r) for r in shown.index[:-1]} | {"mean": values})
            samples.append(frame)
        bold = significant_best(shown.T, samples, pd.Series(0, index=shown.columns), eligible, frozenset()).T
        n_seeds = data.groupby(RUN_KEYS)["seed"].nunique().reindex(columns)
        captions.append(seeds_line(dict(zip(labels, n_seeds.astype(int), strict=True)),
                                   sorted(data["seed"].unique())) + " Bold only when a paired t-test over seeds "
                        "(and categories, for the mean) separates it from the next best, p < 0.05.")
    else:
        bold = best_mask(shown.T, pd.Series(0, index=shown.columns), eligible, frozenset()).T
    if marks.to_numpy().any():
        captions.append(f"{MARK} mean over the rows this run has only (a dash marks a missing or undefined value).")
    mixed = mixed_provenance_line(data) if all(k in data for k in PROVENANCE) else None
    if mixed:
        captions.append(mixed)
    return Table(title, shown, bold, marks, dict.fromkeys(shown.columns, 2), captions, kind="per_category", std=std)


def ci_table(data: pd.DataFrame, spec: TaskSpec, order: list[str],
             intervals: dict[tuple, dict[str, tuple[float, float] | None] | None]) -> Table:
    """``report --ci``: per run, the summary's image-level values with their bootstrap confidence interval over test
    images (``anoseg.report.stats.bootstrap_image_ci``); ``intervals`` maps a run (model, mode, generator) to its
    intervals (fractions), ``None`` or missing where they could not be computed (shown as the value alone)."""
    metrics = {k: v for k, v in spec.metrics.items() if k in IMAGE_METRICS}
    spec = TaskSpec(metrics, row_name=spec.row_name)
    runs, _ = _run_rows(data[data["metric"].isin(metrics)], spec, {c: i for i, c in enumerate(order)})
    index = pd.MultiIndex.from_frame(pd.DataFrame(with_provenance(runs)))
    shown = (pd.DataFrame([r.values for r in runs]) * 100).round(2).rename(columns=metrics).set_axis(index)
    found = [intervals.get(r.key) or {} for r in runs]
    sides = []
    for side in (0, 1):
        frame = pd.DataFrame([{k: ci[k][side] if ci.get(k) else float("nan") for k in metrics} for ci in found])
        sides.append((frame.astype(float) * 100).round(2).rename(columns=metrics).set_axis(index))
    marks = pd.DataFrame([r.marks for r in runs]).rename(columns=metrics).set_axis(index).astype(bool)
    bold = pd.DataFrame(False, index=index, columns=shown.columns)
    caption = (f"Values in % with their {CI_LEVEL:.0%} bootstrap confidence interval over test images: "
               f"{CI_RESAMPLES} resamples of each category's test images (anomalous and normal ones apart), seeded; "
               "percentile interval of the row's mean over categories (and seeds). No interval: no saved scores "
               "(`anoseg eval --save-scores`) or a category with one class; see the warnings.")
    return Table("Image-level confidence intervals", shown, bold, marks, dict.fromkeys(shown.columns, 2),
                 [caption], kind="ci", interval=(sides[0], sides[1]))


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


#: The operating-point table's columns: (level, key in metrics.json) → (title, scale, decimals).
OPERATING_COLUMNS = {
    (None, "threshold"): ("Threshold", 1.0, 4),
    ("image", "tp"): ("Parts TP", 1.0, 1),
    ("image", "fp"): ("Parts FP", 1.0, 1),
    ("image", "tn"): ("Parts TN", 1.0, 1),
    ("image", "fn"): ("Parts FN", 1.0, 1),
    ("image", "precision"): ("Image precision", 100.0, 2),
    ("image", "recall"): ("Image recall", 100.0, 2),
    ("image", "f1"): ("Image F1", 100.0, 2),
    ("image", "fpr"): ("Image FPR", 100.0, 2),
    ("pixel", "precision"): ("Pixel precision", 100.0, 2),
    ("pixel", "recall"): ("Pixel recall", 100.0, 2),
    ("pixel", "f1"): ("Pixel F1", 100.0, 2),
    ("pixel", "iou"): ("Pixel IoU", 100.0, 2),
    ("pixel", "mean_iou"): ("Pixel IoU per image", 100.0, 2),
    ("pixel", "fpr"): ("Pixel FPR", 100.0, 2),
}
OPERATING_CAPTION = (
    "Test results at thresholds fixed beforehand (docs/operating-points.md), in % except the threshold and the "
    "counts. Chosen on: validation = the threshold was fixed on the validation split; test (oracle) = on the test "
    "images it is judged on, an upper bound no deployment reaches (the F1-max and IoU columns of the summary are "
    "such oracles too). Parts TP/FP/TN/FN: defective parts flagged / good parts flagged / good parts passed / "
    "defective parts missed, summed over the categories (a part is flagged when any pixel is >= the threshold); "
    "rates and thresholds are unweighted means over the categories. * = the point predict and export use."
)


def operating_table(runs: list[tuple[tuple, int, list[dict], str | None]], order: list[str]) -> Table | None:
    """The operating points of each run: one row per (run, point), mean over the categories in ``order`` (their
    entries' mean by ``anoseg.engine.operating.mean_points``), then over seeds. ``runs`` holds, per evaluated file
    group, ``(run key (model, mode, generator), seed, per-category entries, deployed point name)``. None when no
    run has operating points (evals older than them)."""
    from anoseg.engine.operating import mean_points

    by_run: dict[tuple, dict[int, list[dict]]] = {}
    deployed: dict[tuple, str | None] = {}
    for key, seed, entries, point in runs:
        kept = [e for e in entries if e["category"] in order]
        if kept:
            by_run.setdefault(key, {}).setdefault(seed, []).extend(kept)
            deployed[key] = deployed.get(key) or point
    if not by_run:
        return None
    rows, index = [], []
    for key in sorted(by_run, key=lambda k: run_rank(*k)):
        seeds = by_run[key]
        means = {seed: {m["name"]: m for m in mean_points(entries)} for seed, entries in seeds.items()}
        names = list(dict.fromkeys(name for found in means.values() for name in found))
        for name in names:
            found = [m[name] for m in means.values() if name in m]
            row = {}
            for (level, field_name), (title, scale, _) in OPERATING_COLUMNS.items():
                values = [(m if level is None else m[level]).get(field_name) for m in found]
                values = [v for v in values if v is not None]
                row[title] = scale * sum(values) / len(values) if values else float("nan")
            rows.append(row)
            first = found[0]
            label = first["rule"] + (" *" if name == deployed.get(key) else "")
            index.append((run_label(*key), label, first["chosen_on"]))
    frame = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["Run", "Operating point", "Chosen on"]))
    seeded = any(len(s) > 1 for s in by_run.values())
    decimals = {title: digits if scale != 1.0 or field_name == "threshold" or seeded else 0
                for (_, field_name), (title, scale, digits) in OPERATING_COLUMNS.items()}  # one seed: whole counts
    frame = frame.apply(lambda c: c.round(decimals[c.name]))
    false = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    captions = [OPERATING_CAPTION + (" With seeds: the mean over seeds." if seeded else "")]
    return Table("Operating points", frame, false, false.copy(), decimals, captions, kind="operating")


#: Added under the summary of a report with operating points: its F1-max and IoU columns are oracle numbers.
ORACLE_NOTE = ("Image/Pixel F1-max and Pixel IoU take the best threshold on the test images themselves (per image "
               "for IoU): oracle numbers, as the papers report them. The operating points below are test results at "
               "thresholds fixed beforehand.")
