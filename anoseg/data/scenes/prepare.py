"""``anoseg prepare`` for road/scene recipes: read the layout, verify every file, assign splits, report.

The split rules live here and nowhere else:

* KITTI Road has no official validation split, so anoseg defines a fixed one (LFD_RoadSeg's 5 folds were made offline
  and never published): per category, the image names sorted, fold = position mod ``n_folds`` (``kitti_folds``). The
  fold of every image is written to the manifest's ``fold`` column; fold ``val_fold`` is the test split.
* Cityscapes and CamVid: the recipe's ``options.splits`` maps the dataset's own subsets to train/test (defaults:
  Cityscapes train → train, val → test; CamVid train + val → train, test → test, as SANet and SFSegNets do).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from anoseg.constants import DATA_REPORT_SCHEMA
from anoseg.data.images import strict_decoding
from anoseg.data.layouts import Issue
from anoseg.data.manifest import manifest_frame
from anoseg.data.scenes.labels import CLASSES, KITTI_RGB, label_colour_mode
from anoseg.data.scenes.layouts import ScenePair, read_layout
from anoseg.data.scenes.options import SceneOptions, scene_options
from anoseg.data.validation import DataReport, image_notes, inspect_file
from anoseg.errors import AnosegError


def kitti_folds(names: Sequence[tuple[str, str]], n_folds: int = 5) -> dict[tuple[str, str], int]:
    """The fixed KITTI cross-validation folds: per category, names sorted, fold = position mod ``n_folds``.

    ``names`` are ``(category, image name)`` pairs; the result maps each to its fold. Deterministic: it depends only on
    the set of names, not on their order or the file system.

    Example:
        >>> kitti_folds([("um", "um_000001.png"), ("uu", "uu_000000.png"), ("um", "um_000000.png")], 5)
        {('um', 'um_000000.png'): 0, ('um', 'um_000001.png'): 1, ('uu', 'uu_000000.png'): 0}
    """
    by_category: dict[str, list[str]] = defaultdict(list)
    for category, name in names:
        by_category[category].append(name)
    return {(category, name): index % n_folds
            for category in sorted(by_category) for index, name in enumerate(sorted(by_category[category]))}


@dataclass(frozen=True)
class _Checked:
    pair: ScenePair
    mode: str
    size: tuple[int, int]  # (width, height), upright
    notes: list[Issue]  # what reading the image changes (added to the report in file order)


def build_scene_manifest(recipe: Any, *, categories: list[str] | None = None,
                         strict: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read, verify and split a KITTI Road / Cityscapes / CamVid tree into manifest rows and a data report.

    ``categories`` (KITTI: um/umm/uu; Cityscapes: cities; CamVid: sequences) restrict the rows; an unknown one is an
    error. The frame has the manifest columns plus a trailing ``label_format`` column. Nothing is written.

    Example:
        >>> df, report = build_scene_manifest(load_recipe("kitti_road"))  # doctest: +SKIP
        >>> df.groupby("split").size().to_dict(), report["folds"]["val_fold"]  # um 95, umm 96, uu 98 images
        ... # doctest: +SKIP
        ({'test': 59, 'train': 230}, 0)
    """
    options = scene_options(recipe)
    scan = read_layout(recipe.layout, Path(recipe.data_root), options.subsets)
    log = DataReport(strict)
    log.extend(scan.issues)
    pairs = _select(scan.pairs, categories, list(recipe.categories), log)
    checked = _verify(pairs, log)
    if not checked:
        raise AnosegError(f"no usable image/label pairs found below {recipe.data_root} for layout {recipe.layout}")
    label_format = _one_format(checked, recipe)

    folds = {}
    if recipe.layout == "kitti_road":
        folds = kitti_folds([(c.pair.category, c.pair.image.name) for c in checked], options.n_folds)
    rows = [_row(c, recipe.name, _split(c.pair, folds, options), folds, recipe.data_root) for c in checked]
    _number_rows(rows)
    frame = manifest_frame(rows)
    formats = {os.path.abspath(c.pair.image): c.pair.label_format for c in checked}
    frame["label_format"] = frame["image"].map(formats)

    report: dict[str, Any] = {
        "schema": DATA_REPORT_SCHEMA, "dataset": recipe.name, "task": recipe.task, "layout": recipe.layout,
        "variant": scan.variant, "label_format": label_format, "class_names": list(CLASSES[label_format]),
        "data_root": os.path.abspath(recipe.data_root), "strict": strict,
        "splits": {k: list(v) for k, v in options.splits.items()} if not folds else None,
        "categories": sorted(frame["category"].unique()), "n_rows": len(frame),
        "counts": {c: {s: int(n) for s, n in g.groupby("split").size().items()}
                   for c, g in frame.groupby("category")},
        "image_sizes": dict(Counter(f"{c.size[1]}x{c.size[0]}" for c in checked).most_common()),
        "image_modes": dict(sorted(Counter(c.mode for c in checked).items())),
    }
    if folds:
        report["folds"] = _fold_report(frame, options)
    if label_format.startswith("camvid"):
        report["note"] = ("CamVid conventions differ (SegNet labels merge classes, colour labels ignore them): "
                          "compare scores only within one label_format")
    report["issues"] = log.as_dict()
    report["warnings"] = log.warnings()
    return frame, report


def _select(pairs: list[ScenePair], requested: list[str] | None, expected: list[str], log: DataReport
            ) -> list[ScenePair]:
    found = sorted({p.category for p in pairs})
    if requested:
        unknown = sorted(set(requested) - set(found))
        if unknown:
            raise AnosegError(f"category {', '.join(unknown)} not found; the data has: {', '.join(found)}")
        return [p for p in pairs if p.category in requested]
    if expected:
        for category in sorted(set(expected) - set(found)):
            log.add(Issue("missing_category", category, f"category {category} of the recipe has no images"))
        return [p for p in pairs if p.category in expected]
    return pairs


def _verify(pairs: list[ScenePair], log: DataReport) -> list[_Checked]:
    """Decode every image and label file completely (``validation.inspect_file``, the policy of anomaly data too)."""
    def check(pair: ScenePair) -> _Checked | list[Issue]:
        image = inspect_file(pair.image, "unreadable_image")
        if isinstance(image, Issue):
            return [image]
        label = inspect_file(pair.label, "unreadable_label", what="label file")
        if isinstance(label, Issue):
            return [label]
        if label.size != image.size:
            return [Issue("label_size_mismatch", str(pair.image), f"{pair.image} is {image.size[0]}x{image.size[1]} "
                          f"but its label {pair.label} is {label.size[0]}x{label.size[1]}")]
        wants_colour = pair.label_format in (KITTI_RGB, "camvid_colour")
        if wants_colour != label_colour_mode(label.mode) and not (wants_colour and label.mode == "P"):
            return [Issue("label_mode", str(pair.label), f"{pair.label}: PIL mode {label.mode} does not fit label "
                          f"format {pair.label_format}")]
        return _Checked(pair, image.mode, image.size, image_notes(pair.image, image))

    checked = []
    pool = ThreadPoolExecutor(max_workers=4)  # decoding releases the GIL: threads overlap it and the file reads
    # One strict-decoding block around the pool: the per-file blocks inside the threads then all find (and restore)
    # the strict setting, whatever their interleaving.
    try:
        with strict_decoding():
            for result in pool.map(check, pairs):  # map keeps the order: the first bad file is the one reported
                if isinstance(result, list):
                    log.extend(result)
                else:
                    log.extend(result.notes)
                    checked.append(result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a strict-mode error must not wait for every other file
    return checked


def _one_format(checked: list[_Checked], recipe: Any) -> str:
    formats = Counter(c.pair.label_format for c in checked)
    if len(formats) > 1:
        examples = {f: next(str(c.pair.label) for c in checked if c.pair.label_format == f) for f in formats}
        raise AnosegError("mixed label conventions in one dataset (scores would not be comparable): "
                          + "; ".join(f"{n} × {f} (e.g. {examples[f]})" for f, n in formats.items()))
    label_format = next(iter(formats))
    classes = CLASSES[label_format]
    if recipe.num_classes != len(classes) or tuple(recipe.class_names) != classes:
        raise AnosegError(f"recipe {recipe.source or recipe.name}: {label_format} labels have {len(classes)} classes "
                          f"({', '.join(classes)}); set num_classes and class_names to match")
    return label_format


def _split(pair: ScenePair, folds: dict[tuple[str, str], int], options: SceneOptions) -> str:
    if folds:
        return "test" if folds[(pair.category, pair.image.name)] == options.val_fold else "train"
    return "train" if pair.subset in options.splits["train"] else "test"


def _row(c: _Checked, dataset: str, split: str, folds: dict[tuple[str, str], int], root: Path) -> dict[str, Any]:
    pair = c.pair
    return {
        "dataset": dataset, "generator": "", "category": pair.category, "split": split, "source": "real",
        "defect": pair.subset, "root": os.path.abspath(root), "image": os.path.abspath(pair.image),
        "mask": os.path.abspath(pair.label),
        "label": 1,  # every row has a label map
        "index_in_defect": 0, "n_in_defect": 0,  # filled by _number_rows
        "orig_mode": c.mode, "fold": str(folds[(pair.category, pair.image.name)]) if folds else "",
    }


def _number_rows(rows: list[dict[str, Any]]) -> None:
    """``index_in_defect``/``n_in_defect``: position in the name-sorted list of the row's (category, subset)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["category"], row["defect"])].append(row)
    for group in groups.values():
        group.sort(key=lambda r: r["image"])
        for index, row in enumerate(group):
            row["index_in_defect"], row["n_in_defect"] = index, len(group)


def _fold_report(frame: pd.DataFrame, options: SceneOptions) -> dict[str, Any]:
    counts = frame.groupby(["fold", "category"]).size()
    return {"n_folds": options.n_folds, "val_fold": options.val_fold,
            "rule": "per category: image names sorted, fold = position mod n_folds; fold val_fold = test",
            "counts": {str(f): {c: int(counts[(f, c)]) for c in frame["category"].unique() if (f, c) in counts}
                       for f in sorted(frame["fold"].unique(), key=int)}}
