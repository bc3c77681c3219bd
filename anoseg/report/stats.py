"""Statistics of the report: seeds (mean ± sample std, n), when a best row really beats the next, and bootstrap
confidence intervals of the image-level metrics over test images (docs/report.md).

* Seeds: a run trained with several seeds is one row; its value is the mean over seeds of each seed's value (the
  unweighted mean over categories), shown with the sample standard deviation over seeds (``ddof=1``) and n.
* Bold with seeds: the best row of a group is bold only if a two-sided paired t-test (``scipy.stats.ttest_rel``,
  α = 0.05) over the (seed, category) pairs both rows have says it differs from the next best row. Pairing by
  category removes the categories' difficulty from the noise; pairing by seed is harmless (a sweep trains every cell
  with the same seeds). Fewer than two shared pairs: no bold.
* ``--ci``: a stratified bootstrap over test images (anomalous and normal images resampled separately, so every
  resample has both classes and the metrics stay defined), percentile interval, 95 %, seeded. The percentile interval
  stays finite when every resample gives the same value (AUROC = 1 on an easy category), where BCa has none.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ALPHA = 0.05  # significance level of the "best row beats the next one" test
CI_LEVEL = 0.95
CI_RESAMPLES = 2000
CI_SEED = 0  # the bootstrap is seeded: the same scores give the same interval
IMAGE_METRICS = {"image_auroc": "auroc", "image_ap": "ap", "image_f1max": "f1max"}  # metrics.json key → binary key


def beats(best: pd.Series, other: pd.Series, alpha: float = ALPHA) -> bool:
    """Whether ``best`` differs from ``other`` beyond the noise: a two-sided paired t-test over the observations both
    have (same index, e.g. (seed, category)), p < ``alpha``.

    Missing values (NaN) are left out of the pairs. Fewer than two pairs: ``False`` (nothing to test). Pairs whose
    differences are all equal give p = 0 when the difference is not zero (``ttest_rel`` would divide by zero).

    Example:
        >>> index = pd.MultiIndex.from_product([[0, 1], ["bottle", "cable"]], names=["seed", "category"])
        >>> beats(pd.Series([0.9, 0.8, 0.91, 0.82], index), pd.Series([0.7, 0.6, 0.72, 0.59], index))
        True
    """
    from scipy.stats import ttest_rel

    pairs = pd.concat([best.rename("a"), other.rename("b")], axis=1, join="inner").dropna()
    if len(pairs) < 2:
        return False
    diff = (pairs["a"] - pairs["b"]).to_numpy(dtype=float)
    if np.ptp(diff) <= 1e-12 * max(1.0, float(np.abs(diff).max())):
        return bool(abs(diff[0]) > 1e-12)
    return bool(ttest_rel(pairs["a"].to_numpy(float), pairs["b"].to_numpy(float)).pvalue < alpha)


def significant_best(values: pd.DataFrame, samples: Sequence[pd.DataFrame], groups: pd.Series,
                     eligible: pd.DataFrame, lower: frozenset[str], alpha: float = ALPHA) -> pd.DataFrame:
    """The bold mask of a table with seeds: per column and group, the eligible row with the best shown value, if it
    is strictly better than the next eligible row and :func:`beats` it.

    Args:
        values: rows × columns, the values as shown (rounded means).
        samples: per row (same order as ``values``), observations × columns (e.g. (seed, category) × metric), the
            raw values behind the row's means.
        groups: per row, the group whose rows are compared (one bold per group and column at most).
        eligible: rows × columns, which cells may be bold (e.g. rows covering every category).
        lower: columns where lower is better.

    Returns:
        A boolean frame shaped like ``values``.
    """
    bold = pd.DataFrame(False, index=values.index, columns=values.columns)
    positions = pd.Series(range(len(values)))
    for column in values.columns:
        sign = -1.0 if column in lower else 1.0
        shown = values[column].to_numpy(dtype=float) * sign
        ok = eligible[column].to_numpy(dtype=bool) & ~np.isnan(shown)
        for _, members in positions.groupby(groups.to_numpy(), sort=False):
            rows = [i for i in members if ok[i]]
            if len(rows) < 2:
                continue
            ranked = sorted(rows, key=lambda i: -shown[i])
            first, second = ranked[0], ranked[1]
            if shown[first] > shown[second] and beats(samples[first][column], samples[second][column], alpha):
                bold.iloc[first, bold.columns.get_loc(column)] = True
    return bold


def seed_counts(data: pd.DataFrame, keys: list[str]) -> pd.Series:
    """The number of seeds behind each run (``keys``) of the tidy table."""
    return data.groupby(keys, sort=False)["seed"].nunique()


def seeds_line(counts: dict[str, int], seeds: Sequence[int], what: str = "run") -> str:
    """The line under a table with seeds: how many seeds stand behind its numbers.

    Example:
        >>> seeds_line({"LFD / SeaS": 2, "LFD / none": 2}, [0, 1])
        'Mean ± sample std over seeds: n = 2 seeds (0, 1) per run.'
    """
    seed_list = ", ".join(str(s) for s in sorted(seeds))
    distinct = set(counts.values())
    if len(distinct) == 1:
        n = distinct.pop()
        return f"Mean ± sample std over seeds: n = {n} seed{'s' if n != 1 else ''} ({seed_list}) per {what}."
    parts = ", ".join(f"{name} {n}" for name, n in counts.items())
    return f"Mean ± sample std over seeds (seeds {seed_list}); n per {what}: {parts}."


def weighted_image_metrics(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """AUROC, AP and F1-max of the same scored images under many weightings at once: ``weights[b, i]`` = how often
    image ``i`` is drawn in resample ``b``. Equal to ``anoseg.metrics.anomaly.binary_metrics`` of the resampled
    arrays (ties counted as there: AUROC with one half, AP and F1-max over the distinct scores).

    Args:
        scores: (N,) image scores.
        labels: (N,) bool image labels.
        weights: (B, N) non-negative integer counts; every row must draw both classes.

    Returns:
        ``{"auroc", "ap", "f1max"}``, each (B,) fractions.
    """
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # one group per distinct score, ascending
    w = weights[:, order].astype(np.float64)
    pos = np.add.reduceat(w * labels[order], starts, axis=1)  # (B, G) anomalous images drawn at each score
    neg = np.add.reduceat(w * ~labels[order], starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    below = np.cumsum(neg, axis=1) - neg
    auroc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    tp = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1]  # predicted positive at threshold = this score: score >= it
    fp = np.cumsum(neg[:, ::-1], axis=1)[:, ::-1]
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    ap = (pos * precision).sum(axis=1) / n_pos
    f1max = (2 * tp / (predicted + n_pos[:, None])).max(axis=1)
    return {"auroc": auroc, "ap": ap, "f1max": f1max}


def bootstrap_image_ci(
    categories: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]],
    level: float = CI_LEVEL,
    n_resamples: int = CI_RESAMPLES,
    seed: int = CI_SEED,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap interval of the image AUROC, AP and F1-max averaged over categories and seeds.

    Each category's test images are resampled with replacement, anomalous and normal apart (stratified: the class
    counts stay, so every resample has both classes); one resample draws the same images for every seed of the
    category (they share one test set), takes each seed's metric and averages over seeds and then over categories,
    as the report's value is averaged. Home-made rather than ``scipy.stats.bootstrap``, which refuses a class with a
    single image and calls the statistic once per resample; here all resamples are scored at once
    (:func:`weighted_image_metrics`).

    Args:
        categories: per category ``(labels, [scores of each seed])``: ``labels`` (N,) 0/1 image labels, each scores
            (N,) the image scores of one seed, aligned with ``labels``.
        level: confidence level.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling (the interval is reproducible).

    Returns:
        metrics.json key (``image_auroc``, ``image_ap``, ``image_f1max``) → ``(low, high)`` as fractions, each
        ``None`` when a category has only one class (the metric is undefined there).

    Raises:
        ValueError: a scores array does not match its labels.
    """
    rng = np.random.default_rng(seed)
    total = {key: np.zeros(n_resamples) for key in IMAGE_METRICS.values()}
    for labels, per_seed in categories:
        labels = np.asarray(labels).astype(bool).ravel()
        if labels.all() or not labels.any():
            return dict.fromkeys(IMAGE_METRICS)
        weights = np.zeros((n_resamples, labels.size), np.int64)
        rows = np.arange(n_resamples)[:, None]
        for stratum in (np.flatnonzero(labels), np.flatnonzero(~labels)):
            drawn = stratum[rng.integers(0, stratum.size, (n_resamples, stratum.size))]
            np.add.at(weights, (rows, drawn), 1)
        for scores in per_seed:
            scores = np.asarray(scores, dtype=np.float64).ravel()
            if scores.shape != labels.shape:
                raise ValueError(f"{scores.size} image scores for {labels.size} labels")
            values = weighted_image_metrics(scores, labels, weights)
            for key in total:
                total[key] += values[key] / len(per_seed) / len(categories)
    tail = (1 - level) / 2
    return {name: (float(np.quantile(total[key], tail)), float(np.quantile(total[key], 1 - tail)))
            for name, key in IMAGE_METRICS.items()}


def read_image_scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_scores, image_labels, names)`` of a ``scores/<category>.npz`` (``eval --save-scores``), without
    reading its pixel maps; ``ValueError`` says what is wrong with the file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("image_scores", "image_labels", "names") if k in npz.files}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # truncated or not an npz
        raise ValueError(f"unreadable: {exc}") from None
    missing = [k for k in ("image_scores", "image_labels", "names") if k not in arrays]
    if missing:
        raise ValueError(f"missing arrays {missing}")
    scores, labels, names = arrays["image_scores"], arrays["image_labels"], arrays["names"]
    if scores.ndim != 1 or labels.shape != scores.shape or names.shape != scores.shape:
        raise ValueError(f"inconsistent shapes {scores.shape}, {labels.shape}, {names.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("non-finite image scores")
    return scores, labels, names


def run_intervals(data: pd.DataFrame, run: tuple[str, str, str], scores_path: Callable[[str, str], Path],
                  **bootstrap: Any) -> tuple[dict[str, tuple[float, float] | None] | None, str | None]:
    """The bootstrap intervals (:func:`bootstrap_image_ci`) of one run (``(model, mode, generator)`` of the tidy
    table), from the saved scores of each of its (seed, category): ``(intervals, None)``, or ``(None, why not)``.

    ``scores_path(eval_dir, category)`` names a scores file. Every seed of a category must have scored the same
    test images (same names and labels, in the same order), and each file must give the image metrics its
    ``metrics.json`` holds (to 1e-6): else the interval would not be about the number shown.
    """
    from anoseg.metrics.anomaly import binary_metrics

    rows = data[(data["model"] == run[0]) & (data["mode"] == run[1]) & (data["generator"] == run[2])]
    sources = rows.drop_duplicates(["category", "seed"])[["category", "seed", "run_dir"]]
    categories = []
    for category, group in sources.groupby("category", sort=False):
        labels, names, per_seed = None, None, []
        for source in group.sort_values("seed").itertuples(index=False):
            path = scores_path(source.run_dir, category)
            if not path.is_file():
                return None, f"no {path} (run `anoseg eval --save-scores`)"
            try:
                scores, these_labels, these_names = read_image_scores(path)
            except ValueError as exc:
                return None, f"{path}: {exc}"
            if labels is None:
                labels, names = these_labels, these_names
            elif not (np.array_equal(labels, these_labels) and np.array_equal(names, these_names)):
                return None, f"the seeds of category {category!r} scored different test images"
            recorded = rows[(rows["category"] == category) & (rows["seed"] == source.seed)]
            recorded = recorded.set_index("metric")["value"]
            computed = binary_metrics(scores, labels)
            for key, name in IMAGE_METRICS.items():
                value = recorded.get(key)
                if value is not None and not pd.isna(value) and abs(computed[name] - value) > 1e-6:
                    return None, f"{path} gives {key} {computed[name]:.6f}, its metrics.json {value:.6f}"
            per_seed.append(scores)
        categories.append((labels, per_seed))
    return bootstrap_image_ci(categories, **bootstrap), None
