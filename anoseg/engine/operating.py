"""Operating points of an anomaly eval: which thresholds are fixed, on which split, and the test results at them.

An operating point is a rule that fixes one decision threshold (``PointSpec``: level, criterion, target), e.g.
"image level, FPR <= 1 %" (``eval --target-fpr image:0.01``). The threshold is chosen on the validation split
(manifest rows with ``split == "val"``) when the category has the images the rule needs there, else on the test
split, and then labelled ``test (oracle)``: a number tuned on the images that judge it. Every point is then scored
on the test split at its threshold, at both levels, because one threshold decides both in ``anoseg predict``: a part
is flagged when its image score (the max of its map) is >= the threshold, i.e. when any pixel is.

Definitions of the numbers: ``anoseg.metrics.operating``; the metrics.json and thresholds.json keys:
docs/schemas.md; why and how to read them: docs/operating-points.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anoseg.constants import (
    CHOSEN_ON_TEST,
    CHOSEN_ON_VAL,
    F1MAX,
    FPR,
    IMAGE_LEVEL,
    LEVELS,
    METRICS,
    PIXEL_LEVEL,
    RECALL,
    SPLIT_VAL,
)
from anoseg.errors import AnosegError

#: The keys of each level's results in an operating point (metrics.json ``operating_points``).
RATE_KEYS = ("precision", "recall", "f1", "iou", "fpr")
COUNT_KEYS = ("tp", "fp", "tn", "fn")
#: ``eval --select val:<metric>``: the prefix naming the split the metric is computed on.
SELECT_PREFIX = f"{SPLIT_VAL}:"
#: The name prefix of the test-set F1-max points added beside validation-chosen ones.
ORACLE_PREFIX = "oracle_"


@dataclass(frozen=True)
class PointSpec:
    """A rule fixing one threshold: ``level`` (image or pixel scores), ``criterion`` (f1max, fpr, recall) and its
    ``target`` (a fraction; None for f1max)."""

    level: str
    criterion: str
    target: float | None = None

    @property
    def name(self) -> str:
        """``pixel_f1max``, ``image_fpr@0.01``, ``image_recall@0.95``: the point's key in the result files."""
        return f"{self.level}_{self.criterion}" + ("" if self.target is None else f"@{self.target:g}")

    def rule(self) -> str:
        """``image FPR ≤ 1 %``, ``pixel recall ≥ 95 %``, ``pixel F1-max``: the rule in words."""
        if self.criterion == F1MAX:
            return f"{self.level} F1-max"
        sign = "≤" if self.criterion == FPR else "≥"
        return f"{self.level} {'FPR' if self.criterion == FPR else 'recall'} {sign} {100 * self.target:g} %"


def describe(spec_rule: str, chosen_on: str) -> str:
    """``image FPR ≤ 1 % on validation``: a point's rule and where its threshold was chosen."""
    return f"{spec_rule} on {chosen_on}"


DEFAULT_POINTS = (PointSpec(PIXEL_LEVEL, F1MAX), PointSpec(IMAGE_LEVEL, F1MAX))


def _parse_one(text: str, option: str, criterion: str) -> PointSpec:
    level, sep, value = text.partition(":")
    try:
        target = float(value)
    except ValueError:
        target = math.nan
    low_ok = target >= 0 if criterion == FPR else target > 0
    if not sep or level not in LEVELS or not (math.isfinite(target) and low_ok and target <= 1):
        bounds = "[0, 1]" if criterion == FPR else "(0, 1]"
        raise AnosegError(f"{option} {text!r}: give LEVEL:FRACTION with LEVEL one of {', '.join(LEVELS)} and a "
                          f"fraction in {bounds}, e.g. {option} image:0.01")
    return PointSpec(level, criterion, target)


def parse_points(target_fpr: Iterable[str] = (), target_recall: Iterable[str] = ()) -> list[PointSpec]:
    """The operating points of an eval: the two F1-max points, then each ``--target-fpr`` and ``--target-recall``
    (``LEVEL:FRACTION``, e.g. ``image:0.01``) in the order given, duplicates once.

    Raises ``AnosegError`` naming the option for a malformed value.
    """
    specs = list(DEFAULT_POINTS)
    specs += [_parse_one(t, "--target-fpr", FPR) for t in target_fpr]
    specs += [_parse_one(t, "--target-recall", RECALL) for t in target_recall]
    return list(dict.fromkeys(specs))


def deployed_point(specs: Sequence[PointSpec]) -> PointSpec:
    """The point ``predict`` and ``export`` use by default: the first FPR target, else the first recall target,
    else the pixel F1-max (the threshold anoseg always used)."""
    for criterion in (FPR, RECALL):
        for spec in specs:
            if spec.criterion == criterion:
                return spec
    return DEFAULT_POINTS[0]


def parse_select(text: str | None) -> str | None:
    """The metric of ``--select val:<metric>`` (any key of ``METRICS``), or None when not given.

    Raises ``AnosegError`` naming ``--select`` for another form or metric.
    """
    if text is None:
        return None
    metric = text.removeprefix(SELECT_PREFIX)
    if not text.startswith(SELECT_PREFIX) or metric not in METRICS:
        raise AnosegError(f"--select {text!r}: give {SELECT_PREFIX}<metric> with a metric of {', '.join(METRICS)}, "
                          f"e.g. --select {SELECT_PREFIX}pixel_ap")
    return metric


@dataclass
class SplitScores:
    """One category's scored images of one split: image scores (N,) and labels (N,) bool; pixel maps (M, H, W) of
    the M images with pixel ground truth, their pixel labels and IoU masks (M, H, W) bool."""

    image_scores: np.ndarray
    image_labels: np.ndarray
    maps: np.ndarray
    pixel_labels: np.ndarray
    iou_masks: np.ndarray


def choose_threshold(spec: PointSpec, data: SplitScores) -> float | None:
    """The threshold ``spec`` picks on ``data``, or None where it is undefined there (one class only)."""
    from anoseg.metrics.anomaly import binary_metrics
    from anoseg.metrics.operating import threshold_at_fpr, threshold_at_recall

    scores, labels = ((data.image_scores, data.image_labels) if spec.level == IMAGE_LEVEL
                      else (data.maps, data.pixel_labels))
    if spec.criterion == F1MAX:
        n_pos = int(np.count_nonzero(labels))
        if n_pos == 0 or n_pos == labels.size:
            return None
        threshold = binary_metrics(scores, labels)["threshold"]
        return None if threshold is None else float(threshold)
    choose = threshold_at_fpr if spec.criterion == FPR else threshold_at_recall
    return choose(scores, labels, spec.target)


def results_at(threshold: float, data: SplitScores) -> dict[str, dict[str, Any]]:
    """Both levels' numbers at ``threshold`` on ``data``: ``{"image": {...}, "pixel": {...}}`` with ``RATE_KEYS``
    and ``COUNT_KEYS`` (``anoseg.metrics.operating.metrics_at``); the pixel level adds ``mean_iou`` (the mean
    per-image IoU at the threshold, the fixed-threshold counterpart of the oracle ``iou`` metric)."""
    from anoseg.metrics.operating import mean_image_iou, metrics_at

    image = metrics_at(data.image_scores, data.image_labels, threshold)
    image.pop("iou")  # the Jaccard of flagged parts and defective parts is no figure anyone reads
    pixel = metrics_at(data.maps, data.pixel_labels, threshold)
    pixel["mean_iou"] = mean_image_iou(data.maps, data.iou_masks, threshold)
    return {IMAGE_LEVEL: image, PIXEL_LEVEL: pixel}


def _entry(spec: PointSpec, name: str, category: str, chosen_on: str, threshold: float,
           test: SplitScores) -> dict[str, Any]:
    return {"name": name, "category": category, "level": spec.level, "criterion": spec.criterion,
            "target": spec.target, "chosen_on": chosen_on, "rule": spec.rule(), "threshold": threshold,
            **results_at(threshold, test)}


def category_points(specs: Sequence[PointSpec], category: str, val: SplitScores | None, test: SplitScores,
                    known: Mapping[str, float | None] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The operating points of one category: each spec's threshold chosen on ``val`` (None: no validation images)
    or, where undefined there, on ``test``; then its test results. When some threshold came from validation, the
    test-chosen F1-max points follow as ``oracle_<level>_f1max`` (the papers' numbers, labelled as such).
    ``known``: test-set thresholds already computed, by point name (the eval's pixel F1-max threshold: it saves a
    second sort of every test pixel). Returns ``(entries, warnings)``; a point undefined on both splits is left out
    with a warning."""
    entries, warnings = [], []
    any_val = False
    known = dict(known or {})

    def on_test(spec: PointSpec) -> float | None:
        if spec.name not in known:
            known[spec.name] = choose_threshold(spec, test)
        return known[spec.name]

    for spec in specs:
        threshold, chosen_on = None, CHOSEN_ON_TEST
        if val is not None:
            threshold = choose_threshold(spec, val)
            if threshold is not None:
                chosen_on, any_val = CHOSEN_ON_VAL, True
            else:
                warnings.append(f"{spec.rule()} is undefined on the validation images (one class only); its "
                                "threshold is chosen on test (oracle)")
        if threshold is None:
            threshold = on_test(spec)
        if threshold is None:
            warnings.append(f"operating point {spec.rule()} undefined (one class only); left out")
            continue
        entries.append(_entry(spec, spec.name, category, chosen_on, threshold, test))
    if any_val:
        for spec in DEFAULT_POINTS:
            threshold = on_test(spec)
            if threshold is not None:
                entries.append(_entry(spec, ORACLE_PREFIX + spec.name, category, CHOSEN_ON_TEST, threshold, test))
    return entries, warnings


MEAN = "mean"


def mean_points(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``mean`` entry of each point over its categories: thresholds and rates averaged (unweighted, over the
    categories where defined, like every metric's mean), counts summed; ``chosen_on`` the categories' one, or both
    names joined with `` + `` where they differ."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        by_name.setdefault(entry["name"], []).append(entry)
    means = []
    for _name, group in by_name.items():
        first = group[0]
        chosen = list(dict.fromkeys(e["chosen_on"] for e in group))
        mean: dict[str, Any] = {key: first[key] for key in ("name", "level", "criterion", "target", "rule")}
        mean.update(category=MEAN, chosen_on=" + ".join(chosen),
                    threshold=math.fsum(e["threshold"] for e in group) / len(group))
        for level in LEVELS:
            values: dict[str, Any] = {}
            for key in (*RATE_KEYS, "mean_iou"):
                found = [e[level][key] for e in group if e[level].get(key) is not None]
                if key in first[level]:
                    values[key] = math.fsum(found) / len(found) if found else None
            for key in COUNT_KEYS:
                values[key] = sum(int(e[level][key]) for e in group)
            mean[level] = values
        means.append({"name": mean.pop("name"), "category": mean.pop("category"), **mean})
    return means


def thresholds_points(points: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``operating_points`` of thresholds.json: per point name its rule, per-category thresholds and where each
    was chosen, and the mean threshold (what a unified model uses when the image's category is unknown)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in points:
        if entry["category"] == MEAN:
            continue
        point = found.setdefault(entry["name"], {"level": entry["level"], "criterion": entry["criterion"],
                                                 "target": entry["target"], "rule": entry["rule"],
                                                 "categories": {}, "chosen_on": {}})
        point["categories"][entry["category"]] = entry["threshold"]
        point["chosen_on"][entry["category"]] = entry["chosen_on"]
    for point in found.values():
        values = list(point["categories"].values())
        point["mean"] = math.fsum(values) / len(values) if values else None
    return found
