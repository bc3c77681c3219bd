"""``anoseg export``: a training checkpoint → one self-contained ONNX or TorchScript file and a JSON sidecar, verified.

The conversion and its verification against PyTorch eager mode (tolerances, exporters tried) are
``anoseg.engine.conversion``'s; this module picks the checkpoint, the size and the decision threshold, and writes the
model file and its sidecar atomically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import torch

from anoseg.constants import ANOMALY, EXPORT_FORMATS, EXPORT_SCHEMA, EXPORTERS, SIZE_MULTIPLE
from anoseg.engine import results
from anoseg.engine.checkpoint import build_model, load_checkpoint
from anoseg.engine.conversion import (
    INPUT_NAME,
    OUTPUT_NAME,
    example_input,
    export_onnx,
    export_torchscript,
)
from anoseg.errors import AnosegError
from anoseg.io import atomic_open, check_output, write_json
from anoseg.paths import export_path, run_of_checkpoint

# Trace size for a dynamic export of a checkpoint trained at native resolution (no image_size in its meta).
DEFAULT_TRACE_SIZE = (256, 256)


def export_model(checkpoint: str | Path, fmt: str = "onnx", out: Path | None = None,
                 image_size: tuple[int, int] | None = None, dynamic: bool = False, exporter: str = "auto",
                 threshold: float | None = None, operating_point: str | None = None) -> dict:
    """Export a checkpoint to ``out`` (default ``<run>/export/model.onnx`` or ``.ts``) plus ``<out stem>.json``.

    ``image_size`` defaults to the checkpoint's ``meta["image_size"]``. ``exporter`` (ONNX only) is ``auto``,
    ``dynamo`` or ``legacy``. Returns the sidecar's content plus ``path`` and ``sidecar`` (the written files) and
    ``max_abs_diff`` (the verification's, also in ``verification``).

    The sidecar's ``threshold`` (and per-category ``thresholds``) are those ``anoseg eval`` computed for exactly these
    weights (``anoseg.engine.results``: the eval's deployed operating point, or ``operating_point``'s; the sidecar's
    ``operating_point`` says which and where it was chosen, ``operating_points`` holds every stored one), or
    ``threshold`` when given. An anomaly checkpoint with neither is refused
    (naming the ``anoseg eval`` to run) before anything is written.
    Raises ``AnosegError`` for a bad path or option and when the exported model does not reproduce PyTorch.

    Example:
        >>> info = export_model(Path("outputs/demo/seas/lfd/all/last.pt"), "onnx")  # doctest: +SKIP
        >>> info["verification"]["max_abs_diff"] < 1e-4  # doctest: +SKIP
        True
    """
    if fmt not in EXPORT_FORMATS:
        raise AnosegError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if exporter not in EXPORTERS:
        raise AnosegError(f"--exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    meta = dict(ckpt.get("meta") or {})
    run = run_of_checkpoint(checkpoint)
    results.check_threshold(threshold)
    weights = results.weights_sha256(ckpt)
    decision = _decision_threshold(ckpt, run, weights, threshold, operating_point)
    model_file = _model_path(out, run, fmt)
    for written in (model_file, model_file.with_suffix(".json")):  # both or neither: checked before converting
        check_output(written)
    size = _trace_size(image_size, meta, dynamic, checkpoint)
    model = build_model(ckpt)

    example = example_input(size)
    if fmt == "onnx":
        data, info = export_onnx(model, example, dynamic=dynamic, exporter=exporter)
    else:
        data, info = export_torchscript(model, example, dynamic=dynamic)
    sidecar = {
        "schema": EXPORT_SCHEMA, "format": fmt, "model": ckpt["model"], "num_classes": ckpt["num_classes"],
        "class_names": meta.get("class_names") or None, "task": meta.get("task", ANOMALY),
        # what predict resizes to: the requested/trained size; [] keeps a native-resolution model native
        "image_size": list(image_size) if image_size else list(meta.get("image_size") or []),
        "mean": meta.get("mean"), "std": meta.get("std"), **decision, "weights_sha256": weights,
        "dynamic": dynamic, "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
        "input_shape": ["batch", 3, "height", "width"] if dynamic else [1, 3, *size],
        **info,
        "source": {"checkpoint": str(checkpoint), "epoch": ckpt.get("epoch"), "torch": torch.__version__,
                   "created": datetime.now().isoformat(timespec="seconds")},
        "training": meta,
    }
    # The sidecar names the model file's bytes (model_sha256) and is written first, the model last: killed (or out of
    # space) in between, the new sidecar and the old model disagree and predict refuses the pair instead of running
    # the old model with the new sidecar's threshold and normalisation.
    sidecar["model_sha256"] = hashlib.sha256(data).hexdigest()
    sidecar_file = model_file.with_suffix(".json")
    write_json(sidecar_file, sidecar)
    with atomic_open(model_file, "wb") as handle:
        handle.write(data)
    return {**sidecar, "path": str(model_file), "sidecar": str(sidecar_file),
            "max_abs_diff": info["verification"]["max_abs_diff"]}


def _decision_threshold(ckpt: dict, run: Path, weights: str, threshold: float | None,
                        operating_point: str | None = None) -> dict:
    """The sidecar's threshold keys: ``threshold`` (the mean over categories for a unified model), ``thresholds`` (per
    category), ``threshold_source`` (the eval folder, or ``--threshold``), ``operating_point`` (name, rule, where
    each category's threshold was chosen, ``label``) and ``operating_points`` (every point the eval stored)."""
    none = {"operating_point": None, "operating_points": None}
    if threshold is not None:
        if operating_point is not None:
            raise AnosegError("--threshold and --operating-point contradict each other: give one")
        return {"threshold": threshold, "thresholds": None, "threshold_source": "--threshold", **none}
    if (ckpt.get("meta") or {}).get("task", ANOMALY) != ANOMALY:
        return {"threshold": None, "thresholds": None, "threshold_source": None, **none}
    found = results.thresholds_for(run, weights)
    if found is None:
        raise AnosegError(f"no decision threshold computed for these weights (epoch {ckpt.get('epoch')}): run "
                          f"`{results.eval_command(ckpt, run)}` first, or pass --threshold")
    found = found.select(operating_point)
    return {"threshold": found.mean, "thresholds": found.categories, "threshold_source": str(found.source),
            "operating_point": {"name": found.point, "rule": found.rule, "chosen_on": found.chosen_on,
                                "label": found.label()},
            "operating_points": found.points or None}


def default_export_path(run: Path, fmt: str) -> Path:
    """``<run>/export/model.onnx`` or ``<run>/export/model.ts``."""
    return export_path(run, EXPORT_FORMATS[fmt])


def _model_path(out: Path | None, run: Path, fmt: str) -> Path:
    if out is None:
        return default_export_path(run, fmt)
    out = Path(out)
    if out.is_dir():
        return out / f"model{EXPORT_FORMATS[fmt]}"
    if out.suffix == ".json":
        raise AnosegError(f"--out {out}: .json is the sidecar's suffix; name the model file, e.g. "
                          f"model{EXPORT_FORMATS[fmt]}")
    return out


def _trace_size(image_size: Sequence[int] | None, meta: dict, dynamic: bool, checkpoint: Path) -> tuple[int, int]:
    size = tuple(image_size or meta.get("image_size") or ())
    if not size:
        if dynamic:
            return DEFAULT_TRACE_SIZE
        raise AnosegError(f"{checkpoint} was trained at native resolution (no image_size); pass --image-size H W "
                          "or --dynamic")
    if len(size) != 2 or any(int(s) != s or s <= 0 or s % SIZE_MULTIPLE for s in size):
        raise AnosegError(f"--image-size {' '.join(map(str, size))}: give H W, both positive multiples of "
                          f"{SIZE_MULTIPLE}")
    return int(size[0]), int(size[1])
