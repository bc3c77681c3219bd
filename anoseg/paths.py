"""Where every output lives. All output paths are computed here, nowhere else.

    <output>/<dataset>/<generator>/manifest.csv            prepare
    <output>/<dataset>/<generator>/data_report.json        prepare
    <output>/<dataset>/<generator>/<model>/<category>/     train (last.pt, checkpoints/epoch_NNN.pt)
    <output>/<dataset>/<generator>/<model>/<category>/eval/epoch_NNN/   eval of that epoch's checkpoint: metrics.json,
                                                           metrics.csv, thresholds.json, scores/, overlays/
    <output>/.../<category>/eval/epoch_NNN-<variant>/      the same, evaluated with other settings (eval_variant)
    <output>/<dataset>/<generator>/<model>/seed_<n>/<category>/   the same, for a seed other than DEFAULT_SEED
    <output>/<dataset>/<generator>/<model>/<category>/export/model.{onnx,ts}   export
    <output>/bench/bench.json                              bench
    <output>/sweeps/<name>/                                sweep (cell records, logs, derived recipes, summary)

The way back, from a folder to the run it belongs to, is ``anoseg.runid.RunId.from_folder``.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from anoseg.constants import BENCH_FILE, DATA_REPORT_FILE, MANIFEST_FILE, MODEL_RESOLUTION, SELECTION_FILE
from anoseg.errors import AnosegError

DEFAULT_SEED = 42  # runs trained with this seed keep the seed-free folder they always had


def dataset_dir(output: str | Path, dataset: str, generator: str) -> Path:
    """``<output>/<dataset>/<generator>``: one (dataset, generator) pair's manifest and runs."""
    return Path(output) / dataset / generator


def manifest_path(output: str | Path, dataset: str, generator: str) -> Path:
    """The split manifest written by ``anoseg prepare``."""
    return dataset_dir(output, dataset, generator) / MANIFEST_FILE


def data_report_path(output: str | Path, dataset: str, generator: str) -> Path:
    """The data-stage report (warnings with counts and example paths)."""
    return dataset_dir(output, dataset, generator) / DATA_REPORT_FILE


def folder_name(value: str, what: str) -> str:
    """``value`` if it can name one folder of the output tree: not empty, not ``.`` or ``..``, no ``/`` and no
    control character (newline, tab ...). Otherwise ``AnosegError`` naming ``what`` (e.g. ``--category``), so that no
    run path ever leaves its dataset's folder."""
    if (not value or value in (".", "..") or "/" in value or os.sep in value
            or any(unicodedata.category(c) == "Cc" for c in value)):
        raise AnosegError(f"{what} {value!r} cannot name a folder: give a name without '/', control characters, "
                          "and other than '.' or '..'")
    return value


def run_dir(output: str | Path, dataset: str, generator: str, model: str, category: str,
            seed: int = DEFAULT_SEED) -> Path:
    """One training run: ``category`` is a category name or ``all`` for the unified model.

    Each seed gets its own folder: ``<model>/<category>`` for ``DEFAULT_SEED`` (the folder runs always had),
    ``<model>/seed_<n>/<category>`` for any other seed. The seed level sits above the category so that no run
    folder is nested inside another (``train --fresh`` replaces a whole run folder).
    """
    for value, what in ((dataset, "dataset"), (generator, "--generator"), (model, "--model"),
                        (category, "--category")):
        folder_name(value, what)
    model_dir = dataset_dir(output, dataset, generator) / model
    return model_dir / category if seed == DEFAULT_SEED else model_dir / f"seed_{seed}" / category


def run_of_checkpoint(checkpoint: str | Path) -> Path:
    """The run directory a checkpoint belongs to (``<run>/last.pt`` or ``<run>/checkpoints/epoch_NNN.pt``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def eval_root(run: Path) -> Path:
    """``<run>/eval``: one sub-folder per evaluated checkpoint."""
    return Path(run) / "eval"


def selection_path(run: Path) -> Path:
    """``<run>/selection.json``: the checkpoint ``train --select`` chose on the validation split."""
    return Path(run) / SELECTION_FILE


def eval_dir(run: Path, epoch: int, variant: str = "") -> Path:
    """``<run>/eval/epoch_NNN[-variant]``: every result of evaluating the checkpoint of ``epoch`` (metrics,
    thresholds, scores, overlays) with one set of evaluation settings. ``variant`` is ``""`` for the recipe's own
    protocol at model resolution (the result predict, export and report read), else ``eval_variant``'s name, so that
    evaluating one checkpoint with other settings never replaces the default result. The folder appears complete or
    not at all (``anoseg.engine.results.publish``)."""
    return eval_root(run) / (f"epoch_{epoch:03d}" + (f"-{variant}" if variant else ""))


def eval_variant(protocol: str, recipe_protocol: str, resolution: str) -> str:
    """The name of a non-default evaluation setting (``""`` for the default one): the protocol when it is not the
    recipe's, and ``native`` for native-resolution scoring, joined by ``-`` (e.g. ``lfd-compat-native``)."""
    parts = [protocol] if protocol != recipe_protocol else []
    if resolution != MODEL_RESOLUTION:
        parts.append(resolution)
    return "-".join(parts)


def run_dirs(output: str | Path, dataset: str) -> list[Path]:
    """Every folder of ``dataset`` under ``output`` that sits where ``run_dir`` puts a run (whether or not it holds a
    checkpoint), sorted."""
    base = Path(output) / dataset
    if not base.is_dir():
        return []
    found = [p for p in base.glob("*/*/*") if p.is_dir() and not p.name.startswith(".")
             and not re.fullmatch(r"seed_\d+", p.name)]
    found += [p for p in base.glob("*/*/seed_*/*") if p.is_dir() and re.fullmatch(r"seed_\d+", p.parent.name)]
    return sorted(found)


def export_path(run: Path, suffix: str) -> Path:
    """Default file of ``anoseg export``: ``<run>/export/model<suffix>``."""
    return run / "export" / f"model{suffix}"


def sweep_dir(output: str | Path, name: str) -> Path:
    """``anoseg sweep``'s own records: one JSON per cell, the cells' logs, derived recipes and the summary."""
    return Path(output) / "sweeps" / name


def bench_path(output: str | Path) -> Path:
    """The latest ``anoseg bench`` results."""
    return Path(output) / "bench" / BENCH_FILE
