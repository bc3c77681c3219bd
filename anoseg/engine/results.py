"""Eval results keyed by the checkpoint they came from, and the decision thresholds predict/export take from them.

Layout (``anoseg.paths.eval_dir``): ``<run>/eval/epoch_NNN/`` holds everything one ``anoseg eval`` of that epoch's
checkpoint wrote: ``metrics.json``, ``metrics.csv``, ``thresholds.json``, ``scores/`` and ``overlays/``.
``metrics.json`` names the checkpoint (path relative to the run, ``checkpoint_sha256`` of the file and
``weights_sha256`` of its weights), so a result is matched to the weights it was computed with, whatever file they are
read from (``last.pt`` and ``checkpoints/epoch_003.pt`` of the last epoch hold the same weights but differ in bytes:
only ``last.pt`` keeps the optimiser state). An eval with another protocol than the recipe's or at native resolution
goes to ``eval/epoch_NNN-<variant>/`` (``anoseg.paths.eval_variant``): it never replaces the default result, which
alone supplies predict's and export's thresholds and the report's numbers.

An eval writes into a hidden staging folder (``.epoch_NNN.partial-*``) and renames it into place when everything is
written: an interrupted eval leaves no ``epoch_NNN`` folder that could be read as finished, and readers skip hidden
folders.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anoseg.constants import CHOSEN_ON_TEST, THRESHOLDS_FILE, THRESHOLDS_SCHEMA
from anoseg.errors import AnosegError
from anoseg.io import (
    check_output,
    check_removable,
    current_umask,
    expect,
    is_number,
    make_folder,
    output_error,
    read_json,
)
from anoseg.paths import DEFAULT_SEED
from anoseg.runid import RunId, file_sha256, result_folders  # noqa: F401  (file_sha256: its home is anoseg.runid)


def weights_sha256(checkpoint: dict[str, Any]) -> str:
    """Hex SHA-256 of a checkpoint's model (its name and every state-dict entry's name, dtype, shape and bytes).

    Independent of the file the weights came from (optimiser state, history and metadata are left out).
    """
    import torch

    digest = hashlib.sha256(str(checkpoint["model"]).encode())
    for name, tensor in checkpoint["state_dict"].items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def staging_dir(target: Path) -> Path:
    """A fresh hidden folder beside ``target`` to write a result into before ``publish``.

    Raises ``AnosegError`` naming the path when ``target`` cannot be written or replaced (``anoseg.io.check_output``:
    a read-only or immutable folder, a file in the way), before any work is done. The caller holds the lock of the
    folder the result belongs to (``anoseg.engine.rundir.run_lock``: the run for an eval, the output folder for
    predict), so what an interrupted writer of ``target`` left (``remove_leftovers``) is cleared first.
    """
    check_output(target, folder=True, replace=True)
    make_folder(target.parent)
    remove_leftovers(target)
    if target.is_dir():
        check_removable(target)  # the older result is deleted once the new one is in place
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as exc:
        raise output_error(exc, target.parent, inside=True) from None
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp creates 0o700; the result must look like any new folder
    return staging


def remove_leftovers(target: Path) -> list[Path]:
    """Clear what a killed writer of ``target`` left beside it; return the folders removed.

    Its staging folders (``.<name>.partial-*``) are deleted. A previous result that ``publish`` had moved aside
    (``.<name>.old-*``) is put back when ``target`` is missing (killed between ``publish``'s two renames), else
    deleted. Only for a caller holding the lock of ``target``'s folder: no live writer owns them.
    """
    removed = []
    for kind in ("partial", "old"):
        for folder in sorted(target.parent.glob(f".{target.name}.{kind}-*")):
            if not folder.is_dir():
                continue
            if kind == "old" and not os.path.lexists(target):
                folder.rename(target)
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def publish(staging: Path, target: Path) -> None:
    """Move a finished ``staging`` folder to ``target``, replacing an older result there.

    The old folder is first renamed aside (hidden), then the new one renamed in: at every moment ``target`` is either
    the old complete result, absent, or the new complete result. A rename the file system refuses is an
    ``AnosegError`` naming ``target``, with the old result put back.
    """
    old = None
    try:
        if os.path.lexists(target):
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            old.rmdir()
            target.rename(old)
        staging.rename(target)
    except OSError as exc:
        if old is not None and old.exists() and not os.path.lexists(target):
            old.rename(target)
        raise output_error(exc, target) from None
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def discard(staging: Path) -> None:
    """Remove an unfinished staging folder."""
    shutil.rmtree(staging, ignore_errors=True)


#: What a thresholds.json without operating points (written before they existed) holds: test-set pixel F1-max.
LEGACY_RULE = "pixel F1-max"


@dataclass(frozen=True)
class Thresholds:
    """The decision thresholds ``anoseg eval`` fixed for one checkpoint: one operating point's, per category.

    ``categories`` maps each evaluated category to its threshold (a probability in [0, 1]); ``mean`` is their mean
    (the threshold of a unified model when the image's category is unknown). ``point`` names the operating point
    (``pixel_f1max``, ``image_fpr@0.01``...; None in files older than operating points, which held the test-set
    pixel F1-max), ``rule`` says it in words, ``chosen_on`` maps each category to the split its threshold was chosen
    on (``validation`` or ``test (oracle)``), and ``points`` holds every operating point the eval stored
    (thresholds.json's ``operating_points``), for ``select``.
    """

    source: Path  # the eval folder
    epoch: int | None
    weights_sha256: str
    categories: dict[str, float]
    mean: float | None
    point: str | None = None
    rule: str = LEGACY_RULE
    chosen_on: dict[str, str] = field(default_factory=dict)
    points: dict[str, dict[str, Any]] = field(default_factory=dict)

    def label(self, category: str | None = None) -> str:
        """``image FPR ≤ 1 % on validation``: the operating point and where ``category``'s threshold was chosen
        (None: the categories' splits, joined with `` + `` where they differ)."""
        if category is not None and category in self.chosen_on:
            where = self.chosen_on[category]
        else:
            where = " + ".join(dict.fromkeys(self.chosen_on.values())) or CHOSEN_ON_TEST
        return f"{self.rule} on {where}"

    def select(self, name: str | None) -> Thresholds:
        """The thresholds of the stored operating point ``name`` (None: these). Raises ``AnosegError`` naming
        ``--operating-point`` when the eval stored no such point."""
        if name is None or name == self.point:
            return self
        if name not in self.points:
            raise AnosegError(f"--operating-point {name}: the eval of epoch {self.epoch} ({self.source}) stored "
                              f"{', '.join(self.points) or 'no operating points (run `anoseg eval` again)'}")
        return _from_point(self.source, self.epoch, self.weights_sha256, name, self.points)

    def pick(self, category: str | None) -> tuple[float, str]:
        """The threshold for ``category`` (None: unknown) and a sentence saying which threshold it is and why.

        Raises ``AnosegError`` when ``category`` was not evaluated or no threshold is defined.
        """
        where = f"eval of epoch {self.epoch} ({self.source})"
        if category is not None:
            if category not in self.categories:
                raise AnosegError(f"--category {category}: the {where} has thresholds for "
                                  f"{', '.join(self.categories) or 'no category'}")
            return self.categories[category], f"the {self.rule} threshold of {category} from the {where}"
        if len(self.categories) == 1:
            (name, value), = self.categories.items()
            return value, f"the {self.rule} threshold of {name} (the only category evaluated) from the {where}"
        if self.mean is None:
            raise AnosegError(f"the {where} found no pixel threshold (no defect pixels in the test split)")
        return self.mean, (f"the mean of the {len(self.categories)} per-category {self.rule} thresholds from the "
                           f"{where}; give --category for that category's own threshold")


def _from_point(source: Path, epoch: int | None, weights: str, name: str, points: dict[str, dict[str, Any]]
                ) -> Thresholds:
    point = points[name]
    return Thresholds(source, epoch, weights, {k: float(v) for k, v in (point.get("categories") or {}).items()},
                      point.get("mean"), name, str(point.get("rule") or name), dict(point.get("chosen_on") or {}),
                      points)


def thresholds_from_document(doc: dict[str, Any], source: Path, weights: str) -> Thresholds:
    """A thresholds.json document (or an export sidecar's threshold keys, same layout) as ``Thresholds``: its
    ``operating_point`` (the deployed one) when it names one, else its ``categories`` as the test-set pixel F1-max
    thresholds of older files."""
    points = doc.get("operating_points") or {}
    name = (doc.get("operating_point") or {}).get("name")
    if name in points:
        return _from_point(source, doc.get("epoch"), weights, name, points)
    categories = {k: float(v) for k, v in (doc.get("categories") or {}).items()}
    return Thresholds(source, doc.get("epoch"), weights, categories, doc.get("mean"),
                      chosen_on=dict.fromkeys(categories, CHOSEN_ON_TEST))


def check_threshold(threshold: float | None) -> None:
    """A given decision threshold (``--threshold``) must be a finite probability in [0, 1]; else ``AnosegError``."""
    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise AnosegError(f"--threshold must be a number in [0, 1] (a defect probability), not {threshold}")


def thresholds_document(metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``thresholds.json`` written beside an anomaly ``metrics.json``: ``categories`` and ``mean`` are the
    thresholds of the deployed operating point (``operating_point``; the pixel F1-max thresholds when the metrics
    have no operating points), ``operating_points`` every point's (docs/schemas.md)."""
    from anoseg.engine.operating import thresholds_points

    points = thresholds_points(metrics.get("operating_points") or [])
    deployed = metrics.get("deployed_point")
    if deployed in points:
        categories = dict(points[deployed]["categories"])
        point = {"name": deployed, "rule": points[deployed]["rule"], "chosen_on": points[deployed]["chosen_on"]}
    else:
        categories = {name: values["pixel_threshold"] for name, values in metrics["categories"].items()
                      if values.get("pixel_threshold") is not None}
        point = None
    return {"schema": THRESHOLDS_SCHEMA, "epoch": metrics.get("epoch"), "checkpoint": metrics.get("checkpoint"),
            "checkpoint_sha256": metrics.get("checkpoint_sha256"), "weights_sha256": metrics.get("weights_sha256"),
            "categories": categories,
            "mean": sum(categories.values()) / len(categories) if categories else None,
            "operating_point": point, "operating_points": points}


def thresholds_for(run: Path, weights: str) -> Thresholds | None:
    """The thresholds of the newest finished default-settings eval of ``run`` (``eval/epoch_NNN/``) computed with the
    weights whose hash is ``weights``; an eval at another protocol or resolution never supplies predict's threshold.

    A damaged ``thresholds.json`` (truncated, hand-edited: ``check_thresholds_document``) is an ``AnosegError``
    naming it, unless another eval of the same weights supplies the thresholds.
    """
    found, damaged = [], []
    for folder in result_folders(run, variant=""):
        try:
            doc = read_json(folder / THRESHOLDS_FILE, f"run `anoseg eval` again (it rewrites {folder.name})",
                            check_thresholds_document)
        except FileNotFoundError:
            continue
        except AnosegError as exc:
            damaged.append(exc)
            continue
        if doc["weights_sha256"] == weights:
            found.append(thresholds_from_document(doc, folder, weights))
    if not found and damaged:
        raise damaged[-1]
    return found[-1] if found else None


def check_thresholds_document(doc: Any) -> None:
    """Validate a ``thresholds.json`` document (docs/schemas.md); ``ValueError`` saying what is wrong."""
    expect(isinstance(doc, dict), "not a JSON object")
    expect(doc.get("schema") == THRESHOLDS_SCHEMA, f"schema {doc.get('schema')!r}, not {THRESHOLDS_SCHEMA!r}")
    expect(isinstance(doc.get("weights_sha256"), str), "no 'weights_sha256'")
    categories = doc.get("categories")
    expect(isinstance(categories, dict), "'categories' is not an object")
    for name, value in categories.items():
        expect(is_number(value, 0.0, 1.0), f"the threshold of {name!r} is {value!r}, not a probability in [0, 1]")
    expect(doc.get("mean") is None or is_number(doc["mean"], 0.0, 1.0), "'mean' is not a probability in [0, 1]")


def eval_command(checkpoint: dict[str, Any], run: Path) -> str:
    """The ``anoseg eval`` command that computes the thresholds of this checkpoint."""
    meta = checkpoint.get("meta") or {}
    parts = ["anoseg eval", f"--recipe {meta.get('dataset', '<recipe>')}", f"--model {checkpoint.get('model')}",
             f"--category {meta.get('trained_on', 'all')}", f"--generator {meta.get('generator', 'none')}"]
    try:
        output = RunId.locate(run)[1]
        if str(output) != "outputs":
            parts.append(f"--output {output}")
    except ValueError:  # a checkpoint outside any run folder: the user knows where its run is
        pass
    if isinstance(meta.get("seed"), int) and meta["seed"] != DEFAULT_SEED:
        parts.append(f"--seed {meta['seed']}")
    if checkpoint.get("epoch") is not None:
        parts.append(f"--epoch {checkpoint['epoch']}")
    return " ".join(parts)
