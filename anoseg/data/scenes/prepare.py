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
from anoseg.data.layouts import Issue
from anoseg.data.manifest import manifest_frame
from anoseg.data.scenes.labels import CLASSES, KITTI_RGB, label_colour_mode
from anoseg.data.scenes.layouts import ScenePair, read_layout
from anoseg.data.scenes.options import SceneOptions, scene_options
from anoseg.errors import AnosegError

ERROR, WARNING, INFO = "error", "warning", "info"
MAX_EXAMPLES = 5

#: Every kind of issue the scene data stage reports: severity (ERROR raises in strict mode) and summary.
ISSUE_KINDS: dict[str, tuple[str, str]] = {
    "ignored_file": (INFO, "file(s) not matching the layout's names, ignored"),
    "lane_ground_truth": (INFO, "KITTI um_lane ground truth file(s) ignored (road only)"),
    "missing_category": (WARNING, "recipe categories not found in the data"),
    "image_without_label": (ERROR, "image(s) without a label file, dropped"),
    "label_without_image": (WARNING, "label file(s) without an image, ignored"),
    "ambiguous_label": (ERROR, "image(s) with two candidate label files, dropped"),
    "missing_file": (ERROR, "split-list entries whose image does not exist, skipped"),
    "unreadable_image": (ERROR, "unreadable or truncated image(s), dropped"),
    "unreadable_label": (ERROR, "unreadable or truncated label file(s), image dropped"),
    "size_mismatch": (ERROR, "image/label pair(s) of different size, dropped"),
    "label_mode": (ERROR, "label file(s) whose PIL mode does not fit the label format, dropped"),
    "alpha_image": (INFO, "image(s) with alpha: alpha dropped"),
}


class IssueLog:
    """Counts and examples per issue kind; in strict mode an error-severity issue raises at once."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[dict[str, str]]] = defaultdict(list)

    def add(self, issue: Issue) -> None:
        severity, _ = ISSUE_KINDS[issue.kind]
        if self.strict and severity == ERROR:
            raise AnosegError(issue.message + " (pass --lenient to drop such files and continue)")
        self.counts[issue.kind] += 1
        if len(self.examples[issue.kind]) < MAX_EXAMPLES:
            self.examples[issue.kind].append({"path": issue.path, "message": issue.message})

    def as_dict(self) -> dict[str, Any]:
        return {kind: {"severity": ISSUE_KINDS[kind][0], "summary": ISSUE_KINDS[kind][1], "count": n,
                       "examples": self.examples[kind]} for kind, n in sorted(self.counts.items())}

    def warnings(self) -> list[str]:
        return [f"{n} × {ISSUE_KINDS[kind][1]} (e.g. {self.examples[kind][0]['path']})"
                for kind, n in sorted(self.counts.items()) if ISSUE_KINDS[kind][0] != INFO]


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
    size: tuple[int, int]


def build_scene_manifest(recipe: Any, *, categories: list[str] | None = None,
                         strict: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read, verify and split a KITTI Road / Cityscapes / CamVid tree into manifest rows and a data report.

    ``categories`` (KITTI: um/umm/uu; Cityscapes: cities; CamVid: sequences) restrict the rows; an unknown one is an
    error. The frame has the manifest columns plus a trailing ``label_format`` column. Nothing is written.

    Example:
        >>> df, report = build_scene_manifest(load_recipe("kitti_road"))
        >>> df.groupby("split").size().to_dict(), report["folds"]["val_fold"]  # um 95, umm 96, uu 98 images
        ({'test': 59, 'train': 230}, 0)
    """
    options = scene_options(recipe)
    scan = read_layout(recipe.layout, Path(recipe.data_root), options.subsets)
    log = IssueLog(strict)
    for issue in scan.issues:
        log.add(issue)
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


def _select(pairs: list[ScenePair], requested: list[str] | None, expected: list[str], log: IssueLog
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


def _inspect(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and upright size (EXIF orientation applied, as every reader does) from the header, then a structural
    check of the whole file (PNG chunk CRCs, truncation)."""
    from PIL import Image

    from anoseg.data.images import exif_orientation

    with Image.open(path) as handle:
        mode, size = handle.mode, handle.size
        handle.verify()
    with Image.open(path) as handle:  # verify() must come first and leaves the handle unusable
        if exif_orientation(handle) in (5, 6, 7, 8):  # these orientations swap width and height
            size = size[::-1]
    return mode, size


def _verify(pairs: list[ScenePair], log: IssueLog) -> list[_Checked]:
    def check(pair: ScenePair) -> _Checked | Issue:
        try:
            mode, size = _inspect(pair.image)
        except Exception as exc:  # PIL raises many types for a broken file
            return Issue("unreadable_image", str(pair.image), f"cannot read image {pair.image}: {exc}")
        try:
            label_mode, label_size = _inspect(pair.label)
        except Exception as exc:
            return Issue("unreadable_label", str(pair.label), f"cannot read label file {pair.label}: {exc}")
        if label_size != size:
            return Issue("size_mismatch", str(pair.image), f"{pair.image} is {size[0]}x{size[1]} but its label "
                         f"{pair.label} is {label_size[0]}x{label_size[1]}")
        wants_colour = pair.label_format in (KITTI_RGB, "camvid_colour")
        if wants_colour != label_colour_mode(label_mode) and not (wants_colour and label_mode == "P"):
            return Issue("label_mode", str(pair.label), f"{pair.label}: PIL mode {label_mode} does not fit label "
                         f"format {pair.label_format}")
        return _Checked(pair, mode, size)

    checked = []
    pool = ThreadPoolExecutor(max_workers=4)  # file reading, mostly: threads overlap the waiting
    try:
        for result in pool.map(check, pairs):  # map keeps the order: the first bad file is the one reported
            if isinstance(result, Issue):
                log.add(result)
            else:
                if result.mode in ("RGBA", "LA", "PA"):
                    log.add(Issue("alpha_image", str(result.pair.image), f"alpha dropped: {result.pair.image}"))
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
