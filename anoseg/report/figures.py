"""Figures of one category: pixel-level PR curves of every run, and test images with ground truth and heatmaps.

Read from ``scores/<category>.npz`` (docs/schemas.md). The PR legend gives AP as a fraction, the unit of its axes;
heatmaps share one fixed 0–1 colour scale with a colour bar (red = defect probability near 1). Drawn with
matplotlib's object API (``Figure``, Agg canvas), so nothing touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from anoseg.io import drawable, make_folder, write_with

N_EXAMPLES = 4
_PLOT_POINTS = 5000  # points drawn per curve (the curve itself is computed on every pixel)
FIGURE_KINDS = {"pr": "pixel-level PR curves", "examples": "test images, ground truth and heatmaps",
                "loss": "training loss per iteration"}  # file suffix → what the figure shows
SCORE_KEYS = ("image_labels", "pixel_scores", "gt_masks", "images", "names")


@dataclass
class _Scores:
    label: str
    pixel_scores: np.ndarray
    gt_masks: np.ndarray
    images: np.ndarray
    image_labels: np.ndarray
    names: list[str]


def figure_stem(category: str) -> str:
    """A file-name-safe stem for a category: ``"metal nut/x"`` → ``"metal_nut_x"``."""
    return re.sub(r"[^\w.-]+", "_", category)


def load_scores(label: str, path: Path) -> _Scores:
    """Read the arrays a figure needs from a ``scores.npz``; ``ValueError`` says what is wrong with the file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in SCORE_KEYS if k in npz.files}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # truncated or not an npz
        raise ValueError(f"unreadable: {exc}") from None
    missing = [k for k in SCORE_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"missing arrays {missing}")
    scores = _Scores(
        label,
        arrays["pixel_scores"].astype(np.float32, copy=False),
        arrays["gt_masks"],
        arrays["images"],
        arrays["image_labels"],
        [str(n) for n in arrays["names"]],
    )
    n = len(scores.names)
    if scores.pixel_scores.ndim != 3 or scores.gt_masks.shape != scores.pixel_scores.shape or len(scores.images) != n:
        raise ValueError(f"inconsistent shapes {scores.pixel_scores.shape}, {scores.gt_masks.shape}")
    return scores


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Pixel-level precision/recall over every pixel, exact (``anoseg.metrics.pr_curve``), and the curve's AP.

    Returns ``(precision, recall, ap)`` in ``sklearn.metrics.precision_recall_curve`` layout (thresholds ascending,
    closed by the point precision 1, recall 0); ``ap`` is the step-wise average precision, the sum
    ``average_precision_score`` takes. Raises ``ValueError`` without a positive pixel.

    Example:
        >>> precision, recall, ap = pr_curve(np.array([0.1, 0.9]), np.array([0, 1]))
        >>> float(ap)
        1.0
    """
    from anoseg.metrics.anomaly import pr_curve as exact_pr_curve

    precision, recall, _ = exact_pr_curve(scores, labels)
    ap = float(-np.sum(np.diff(recall) * precision[:-1]))
    return precision, recall, ap


def category_figures(
    category: str,
    runs: list[tuple[str, Path]],
    out_dir: Path,
    n_examples: int = N_EXAMPLES,
) -> tuple[list[Path], list[str]]:
    """Write ``<category>_pr.png`` and ``<category>_examples.png`` for the runs ``(label, scores.npz)`` given.

    Returns the written paths and a warning per unreadable scores file. Nothing is written if none is readable.

    Example:
        >>> category_figures("bottle", [("LFD / SeaS", Path("…/scores/bottle.npz"))], Path("report_figures"))
        ... # doctest: +SKIP
        ([PosixPath('report_figures/bottle_pr.png'), PosixPath('report_figures/bottle_examples.png')], [])
    """
    warnings, loaded = [], []
    for label, path in runs:
        try:
            loaded.append(load_scores(label, path))
        except ValueError as exc:
            warnings.append(f"figures of {category!r}: skipped {path} ({exc})")
    if not loaded:
        return [], warnings
    stem = figure_stem(category)
    pr_path, grid_path = out_dir / f"{stem}_pr.png", out_dir / f"{stem}_examples.png"
    _save(_pr_figure(category, loaded), pr_path)
    _save(_examples_figure(category, loaded, n_examples), grid_path)
    return [pr_path, grid_path], warnings


def _pr_figure(category: str, runs: list[_Scores]) -> Figure:
    fig = Figure(figsize=(5.5, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for run in runs:
        if not run.gt_masks.any():
            ax.plot([], [], label=f"{run.label} (no anomalous pixels)")
            continue
        precision, recall, ap = pr_curve(run.pixel_scores, run.gt_masks)
        idx = _corners(recall)
        ax.plot(recall[idx], precision[idx], drawstyle="steps-post", linewidth=1.5,
                label=f"{run.label} (AP {ap:.3f})")  # fmt: skip  (the axes' unit: fractions, not percent)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title(f"{drawable(category)}: pixel-level PR (every pixel)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def _corners(recall: np.ndarray) -> np.ndarray:
    """Indices to draw: the best-precision point of each recall level, thinned evenly to ``_PLOT_POINTS``.

    Thresholds come in increasing order, so within one recall level the last point has the highest precision;
    these corners are the staircase itself. Each corner adds one positive pixel, so taking every k-th is even in
    recall and drops nothing visible (thinning all thresholds instead would skip short, steep stretches).
    """
    corners = np.r_[np.flatnonzero(recall[:-1] != recall[1:]), len(recall) - 1]
    step = max(1, len(corners) // _PLOT_POINTS)
    return np.unique(np.r_[corners[::step], corners[-1]])


def _examples_figure(category: str, runs: list[_Scores], n_examples: int) -> Figure:
    first = runs[0]
    # anomalous images first (in file order), then normal ones
    order = np.argsort(first.image_labels == 0, kind="stable")[:n_examples]
    names = [first.names[i] for i in order]
    n_cols = 2 + len(runs)
    fig = Figure(figsize=(1.9 * n_cols, 2.0 * len(names) + 0.4), dpi=100, layout="constrained")
    axes = fig.subplots(len(names), n_cols, squeeze=False)
    shown = None
    for row, (i, name) in enumerate(zip(order, names, strict=True)):
        axes[row, 0].imshow(first.images[i])
        axes[row, 0].set_ylabel(drawable(name), fontsize=7)
        axes[row, 1].imshow(first.gt_masks[i], cmap="gray", vmin=0, vmax=1)
        for col, run in enumerate(runs, start=2):
            if name in run.names:
                j = run.names.index(name)
                axes[row, col].imshow(run.images[j])
                # one fixed scale for every run and image: red = defect probability near 1, not "this run's maximum"
                shown = axes[row, col].imshow(run.pixel_scores[j], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
            else:
                axes[row, col].text(0.5, 0.5, "not scored", ha="center", va="center", fontsize=8)
    for col, title in enumerate(["image", "ground truth", *[r.label for r in runs]]):
        axes[0, col].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if shown is not None:
        bar = fig.colorbar(shown, ax=axes, shrink=0.6, ticks=[0, 0.5, 1])
        bar.set_label("defect probability", fontsize=8)
        bar.solids.set_alpha(1.0)
    fig.suptitle(f"{drawable(category)}: test images (anomalous first) and heatmaps", fontsize=10)
    return fig


def loss_curve_figures(runs: list[tuple[str, Path]], out_dir: Path) -> dict[str, list[Path]]:
    """One small figure per training run folder: its loss at every iteration (``<run>/logs/csv/metrics.csv``, see
    ``anoseg.engine.curves``) and a moving mean over an epoch's worth of steps where there are enough.

    ``runs`` are (label, run folder) pairs; a folder is drawn once, runs without a log are left out. Returns
    ``{"training loss": [paths]}``, or ``{}`` when no run has a log.
    """
    from anoseg.engine.curves import read_loss_curve

    paths, seen = [], set()
    for label, run in runs:
        steps, losses = read_loss_curve(run)
        if not steps or run in seen:
            continue
        seen.add(run)
        name = f"{label} · {run.parent.name}/{run.name}" if run.parent.name.startswith("seed_") else \
            f"{label} · {run.name}"
        fig = Figure(figsize=(4.0, 2.6), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(steps, losses, lw=0.6, color="0.6", label="batch")
        window = max(len(steps) // 50, 1)
        if window > 1:
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, lw=1.2, color="C0", label=f"mean of {window}")
            ax.legend(fontsize=7, frameon=False)
        ax.set(xlabel="iteration", ylabel="loss")
        ax.set_title(drawable(name), fontsize=8)
        ax.tick_params(labelsize=7)
        path = out_dir / f"{figure_stem(name)}_loss.png"
        make_folder(out_dir)
        _save(fig, path)
        paths.append(path)
    return {"training loss": paths} if paths else {}


def _save(fig: Figure, path: Path) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
