"""Where every output lives. All output paths are computed here, nowhere else.

    <output>/<dataset>/<generator>/manifest.csv            prepare
    <output>/<dataset>/<generator>/data_report.json        prepare
    <output>/<dataset>/<generator>/<model>/<category>/     train (checkpoints) and eval (metrics, scores, overlays)
    <output>/<dataset>/<generator>/<model>/<category>/export/model.{onnx,ts}   export
    <output>/bench/bench.json                              bench
"""

from __future__ import annotations

from pathlib import Path

ALL_CATEGORIES = "all"


def dataset_dir(output: str | Path, dataset: str, generator: str) -> Path:
    """``<output>/<dataset>/<generator>``: one (dataset, generator) pair's manifest and runs."""
    return Path(output) / dataset / generator


def manifest_path(output: str | Path, dataset: str, generator: str) -> Path:
    """The split manifest written by ``anoseg prepare``."""
    return dataset_dir(output, dataset, generator) / "manifest.csv"


def data_report_path(output: str | Path, dataset: str, generator: str) -> Path:
    """The data-stage report (warnings with counts and example paths)."""
    return dataset_dir(output, dataset, generator) / "data_report.json"


def run_dir(output: str | Path, dataset: str, generator: str, model: str, category: str) -> Path:
    """One training run: ``category`` is a category name or ``all`` for the unified model."""
    return dataset_dir(output, dataset, generator) / model / category


def run_of_checkpoint(checkpoint: str | Path) -> Path:
    """The run directory a checkpoint belongs to (``<run>/last.pt`` or ``<run>/checkpoints/epoch_NNN.pt``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def export_path(run: Path, suffix: str) -> Path:
    """Default file of ``anoseg export``: ``<run>/export/model<suffix>``."""
    return run / "export" / f"model{suffix}"


def bench_path(output: str | Path) -> Path:
    """The latest ``anoseg bench`` results."""
    return Path(output) / "bench" / "bench.json"
