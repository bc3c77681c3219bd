"""A run's identity and its eval results: the one owner of both directions between a run and its folders.

* ``RunId`` (dataset, generator, model, category, seed, variant) ↔ folder: ``RunId.folder(output)`` is
  ``anoseg.paths.run_dir``; ``RunId.from_folder(path)`` reads a run folder, an eval folder
  (``<run>/eval/epoch_NNN[-variant]``) or a file in one back into the identity (``RunId.locate`` also gives the
  ``--output`` root). ``variant`` names the evaluation settings (``anoseg.paths.eval_variant``; ``""``: the recipe's
  protocol at model resolution), so an eval folder is a ``RunId`` plus an epoch.
* ``EvalRecord``: one ``metrics.json`` (schema ``anoseg.metrics/1``, docs/schemas.md) as a typed, schema-checked
  value. Evaluators build one and ``write`` it; every other module only reads (``read``, ``results``, ``latest``) and
  asks ``is_current`` (the checkpoint it names still has the hash it scored). Files written by anoseg 0.2, without
  ``seed`` and ``variant``, are read with both taken from their folder, as 0.2 did.

Nothing else parses a run's identity out of a path or re-reads ``metrics.json``; ``_load_json`` is the one place
that reads the file's bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anoseg.constants import ANOMALY, METRICS_FILE, METRICS_SCHEMA, TASKS
from anoseg.errors import AnosegError
from anoseg.paths import DEFAULT_SEED, eval_dir, eval_root, run_dir


class RecordError(AnosegError, ValueError):
    """A ``metrics.json`` that cannot be used: one line naming the file and why (``reason``: the why alone)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}; run `anoseg eval` again to rewrite it")
        self.path, self.reason = path, reason


_SEED_FOLDER = re.compile(r"seed_(\d+)")
_EVAL_FOLDER = re.compile(r"epoch_(\d+)(?:-(.+))?")
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks): how a result names the checkpoint file it scored."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RunId:
    """Which run: ``model`` trained on ``category`` (``all``: the unified model) of a (dataset, generator) pair with
    ``seed``, and ``variant``, the evaluation settings of its results (``""``: the default ones).

    Example:
        >>> run = RunId("demo", "seas", "lfd", "disk", seed=0)
        >>> run.folder("outputs").as_posix()
        'outputs/demo/seas/lfd/seed_0/disk'
        >>> RunId.from_folder(run.folder("outputs")) == run
        True
    """

    dataset: str
    generator: str
    model: str
    category: str
    seed: int = DEFAULT_SEED
    variant: str = ""

    def folder(self, output: str | Path) -> Path:
        """The run folder under ``output`` (``anoseg.paths.run_dir``; ``AnosegError`` for a name that cannot be a
        folder)."""
        return run_dir(output, self.dataset, self.generator, self.model, self.category, self.seed)

    def eval_folder(self, output: str | Path, epoch: int) -> Path:
        """The folder of this run's eval of ``epoch`` with this ``variant`` (``anoseg.paths.eval_dir``)."""
        return eval_dir(self.folder(output), epoch, self.variant)

    @classmethod
    def locate(cls, path: str | Path) -> tuple[RunId, Path, Path]:
        """``(identity, output root, run folder)`` of a run folder, of an eval folder ``<run>/eval/epoch_NNN[-v]``
        or of a file in one (``metrics.json``). ``ValueError`` for a path that is none of these (too short)."""
        run, variant = _run_folder(Path(path))
        seed_match = _SEED_FOLDER.fullmatch(run.parent.name)
        model_dir = run.parent.parent if seed_match else run.parent
        if len(model_dir.parents) < 3 or not all(p.name for p in (run, model_dir, model_dir.parent,
                                                                  model_dir.parent.parent)):
            raise ValueError(f"{run} is not a run folder (<output>/<dataset>/<generator>/<model>[/seed_<n>]/"
                             "<category>)")
        identity = cls(dataset=model_dir.parent.parent.name, generator=model_dir.parent.name, model=model_dir.name,
                       category=run.name, seed=int(seed_match.group(1)) if seed_match else DEFAULT_SEED,
                       variant=variant)
        return identity, model_dir.parent.parent.parent, run

    @classmethod
    def from_folder(cls, path: str | Path, output: str | Path | None = None) -> RunId:
        """``folder``'s inverse (see ``locate`` for the paths taken). With ``output``, the path must lie where
        ``folder(output)`` puts it; else ``ValueError``."""
        identity, root, _ = cls.locate(path)
        if output is not None and Path(root) != Path(output):
            raise ValueError(f"{path} is not a run folder under {output}")
        return identity


def result_variant(path: str | Path) -> str | None:
    """The ``variant`` of the eval folder a ``metrics.json`` lies in (``<run>/eval/epoch_NNN[-variant]/``; ``""``:
    the default settings), or None for a file anywhere else (an old layout, a stray copy)."""
    path = Path(path)
    match = _EVAL_FOLDER.fullmatch(path.parent.name)
    if path.name != METRICS_FILE or not match or path.parent.parent.name != "eval":
        return None
    return match.group(2) or ""


def result_folders(run: str | Path, variant: str | None = None) -> list[Path]:
    """The folders of a run's finished evals (``<run>/eval/epoch_NNN[-variant]/`` holding ``metrics.json``), sorted
    by name; only those of ``variant`` when given (``""``: the default settings). Hidden staging folders of an eval
    still running or interrupted are never among them."""
    root = eval_root(Path(run))
    if not root.is_dir():
        return []
    return [folder for folder in sorted(root.iterdir())
            if (match := _EVAL_FOLDER.fullmatch(folder.name)) and (folder / METRICS_FILE).is_file()
            and (variant is None or (match.group(2) or "") == variant)]


def run_of_result(path: str | Path) -> Path:
    """The run folder of an eval folder or of a file in one (``<run>/eval/epoch_NNN[-v][/metrics.json]``); a run
    folder itself is returned as given."""
    return _run_folder(Path(path))[0]


def _run_folder(path: Path) -> tuple[Path, str]:
    """``(run folder, variant)`` of a run folder, an eval folder or a file in one: the one place that climbs up."""
    if _EVAL_FOLDER.fullmatch(path.parent.name) and path.parent.parent.name == "eval":  # a file of an eval folder
        path = path.parent
    match = _EVAL_FOLDER.fullmatch(path.name)
    if match and path.parent.name == "eval":
        return path.parent.parent, match.group(2) or ""
    return path, ""


def _load_json(path: Path) -> Any:
    """The JSON document of one of anoseg's own files; ``ValueError`` with one line when it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable ({exc})") from None


def _number(value: Any, where: str) -> None:
    """A metric value must be a number or ``null``; else ``ValueError`` naming ``where``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"{where} is not a number ({value!r})")


def _numbers(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} is not an object")
    for name, number in value.items():
        _number(number, f"{where}.{name}" if where else name)
    return value


def _text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) and value else None


#: The keys ``EvalRecord`` types (every other key a file holds is kept in ``extra`` and written back).
_HEADER = ("schema", "task", "dataset", "generator", "model", "trained_on", "seed", "variant", "protocol",
           "precision", "device_kind", "eval_device_kind", "resolution", "epoch", "image_size", "created",
           "checkpoint", "checkpoint_sha256", "weights_sha256", "categories", "mean", "mean_excluded", "warnings")
_OPTIONAL = ("by_defect", "split", "validation", "checkpoint_selection", "operating_points", "deployed_point")


@dataclass(frozen=True)
class EvalRecord:
    """One eval of one checkpoint of a run: ``metrics.json`` (docs/schemas.md), every value a fraction or ``None``.

    ``seed`` and ``variant`` are the run's (``RunId``); ``path`` is the file it was read from (``None`` for a record
    not yet written). ``by_defect`` … ``deployed_point`` are ``None`` where the file has no such key (road/scene
    results, files older than the key); ``split`` is ``None`` also when the file holds ``null`` (prepared before the
    split was recorded).
    """

    task: str
    dataset: str
    generator: str
    model: str
    trained_on: str
    protocol: str
    epoch: int | None
    categories: dict[str, dict[str, Any]]
    mean: dict[str, Any] = field(default_factory=dict)
    seed: int = DEFAULT_SEED
    variant: str = ""
    precision: str | None = None
    device_kind: str | None = None
    eval_device_kind: str | None = None
    resolution: str | None = None
    image_size: list[int] = field(default_factory=list)
    created: str | None = None
    checkpoint: str | None = None  # relative to the run folder when inside it
    checkpoint_sha256: str | None = None
    weights_sha256: str | None = None
    mean_excluded: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    by_defect: dict[str, dict[str, dict[str, Any]]] | None = None
    split: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    checkpoint_selection: dict[str, Any] | None = None
    operating_points: list[dict[str, Any]] | None = None
    deployed_point: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    # ---- identity --------------------------------------------------------------------------------------------------

    @property
    def run_id(self) -> RunId:
        """The run this record belongs to."""
        return RunId(self.dataset, self.generator, self.model, self.trained_on, self.seed, self.variant)

    @property
    def run(self) -> Path:
        """The run folder of the file read (``ValueError`` for a record never written)."""
        if self.path is None:
            raise ValueError("an EvalRecord not read from a file has no run folder")
        return run_of_result(self.path)

    # ---- the file --------------------------------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The ``metrics.json`` document: the header keys in their order, then the optional ones present, then any
        other key the record was read with."""
        doc: dict[str, Any] = {"schema": METRICS_SCHEMA}
        for key in _HEADER[1:]:
            if key == "resolution" and self.resolution is None:
                continue
            doc[key] = getattr(self, key)
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None or (key == "split" and self.task == ANOMALY):  # null: prepared before it was kept
                doc[key] = value
        return {**doc, **self.extra}

    @classmethod
    def from_document(cls, raw: Any, path: Path | None = None) -> EvalRecord:
        """Check ``raw`` against schema ``anoseg.metrics/1`` and type it; ``ValueError`` with one line saying why it
        cannot be used. ``seed`` and ``variant`` missing (a 0.2 file) are taken from ``path``'s folders."""
        if not isinstance(raw, dict) or raw.get("schema") != METRICS_SCHEMA:
            found = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"not an {METRICS_SCHEMA} file (schema: {found!r})")
        if raw.get("task") not in TASKS:
            raise ValueError(f"unknown task {raw.get('task')!r}")
        for key in ("dataset", "generator", "model", "trained_on"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ValueError(f"missing or invalid {key!r}")
        categories = raw.get("categories")
        if not isinstance(categories, dict) or not categories:
            raise ValueError("no 'categories'")
        for category, metrics in categories.items():
            if not isinstance(metrics, dict):
                raise ValueError(f"category {category!r} is not an object")
            _numbers(metrics, str(category))
        by_defect = raw.get("by_defect")
        if by_defect is not None:
            if not isinstance(by_defect, dict):
                raise ValueError("'by_defect' is not an object")
            for category, types in by_defect.items():
                if not isinstance(types, dict) or not all(isinstance(v, dict) for v in types.values()):
                    raise ValueError(f"by_defect.{category} is not an object of defect types")
                for defect, metrics in types.items():
                    _numbers(metrics, f"by_defect.{category}.{defect}")
        points = raw.get("operating_points")
        if points is not None:
            _check_points(points)
        seed, variant = raw.get("seed"), raw.get("variant")
        if seed is None or variant is None:  # written by anoseg 0.2: the run's folders say
            found = RunId.locate(path) if path is not None else None
            seed = found[0].seed if seed is None and found else DEFAULT_SEED if seed is None else seed
            variant = found[0].variant if variant is None and found else "" if variant is None else variant
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"'seed' is not an integer ({seed!r})")
        if not isinstance(variant, str):
            raise ValueError(f"'variant' is not a string ({variant!r})")
        epoch = raw.get("epoch")
        image_size = raw.get("image_size")
        known = set(_HEADER) | set(_OPTIONAL)
        extra = {k: v for k, v in raw.items() if k not in known}
        return cls(
            task=raw["task"], dataset=raw["dataset"], generator=raw["generator"], model=raw["model"],
            trained_on=raw["trained_on"], protocol=str(raw.get("protocol") or "unknown"),
            epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
            categories=categories, mean=raw.get("mean") if isinstance(raw.get("mean"), dict) else {},
            seed=seed, variant=variant,
            precision=_text(raw, "precision"), device_kind=_text(raw, "device_kind"),
            eval_device_kind=_text(raw, "eval_device_kind"), resolution=_text(raw, "resolution"),
            image_size=list(image_size) if isinstance(image_size, list) else [],
            created=_text(raw, "created"), checkpoint=_text(raw, "checkpoint"),
            checkpoint_sha256=_text(raw, "checkpoint_sha256"), weights_sha256=_text(raw, "weights_sha256"),
            mean_excluded=raw.get("mean_excluded") if isinstance(raw.get("mean_excluded"), dict) else {},
            warnings=[str(w) for w in raw.get("warnings") or []] if isinstance(raw.get("warnings") or [], list)
            else [],
            by_defect=by_defect, split=raw.get("split") if isinstance(raw.get("split"), dict) else None,
            validation=raw.get("validation") if isinstance(raw.get("validation"), dict) else None,
            checkpoint_selection=(raw.get("checkpoint_selection")
                                  if isinstance(raw.get("checkpoint_selection"), dict) else None),
            operating_points=points, deployed_point=_text(raw, "deployed_point"), extra=extra, path=path)

    def write(self, folder: str | Path) -> Path:
        """Write ``<folder>/metrics.json`` atomically (``anoseg.io.write_json``; NaN as ``null``); its path."""
        from anoseg.io import write_json

        target = Path(folder) / METRICS_FILE
        write_json(target, self.document())
        return target

    @classmethod
    def read(cls, path: str | Path) -> EvalRecord:
        """Read and check one ``metrics.json``. ``RecordError`` (an ``AnosegError`` and a ``ValueError``) with one
        line naming the file and saying why it cannot be used; ``FileNotFoundError`` when there is none."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no eval result {path}")
        try:
            return cls.from_document(_load_json(path), path)
        except ValueError as exc:
            raise RecordError(path, str(exc)) from None

    # ---- the results of a run --------------------------------------------------------------------------------------

    @classmethod
    def results(cls, run: str | Path, variant: str | None = None) -> list[EvalRecord]:
        """Every finished, readable eval of a run (``<run>/eval/epoch_NNN[-variant]/metrics.json``), by epoch then
        folder; only those of ``variant`` when given (``""``: the default settings, the ones whose thresholds
        predict and export use). Unfinished evals (hidden staging folders) and unreadable files are left out."""
        found = []
        for folder in result_folders(run, variant):
            try:
                found.append(cls.read(folder / METRICS_FILE))
            except (OSError, ValueError):
                continue
        return sorted(found, key=lambda r: (r.epoch if r.epoch is not None else -1, str(r.path)))

    @classmethod
    def at(cls, run: str | Path, epoch: int, variant: str = "") -> EvalRecord | None:
        """The record of the eval of ``epoch`` with ``variant`` (``anoseg.paths.eval_dir``), None when there is none
        or it cannot be read."""
        try:
            return cls.read(eval_dir(Path(run), epoch, variant) / METRICS_FILE)
        except (OSError, ValueError):
            return None

    @classmethod
    def latest(cls, run: str | Path, variant: str = "") -> EvalRecord | None:
        """The eval of the highest epoch with ``variant`` whose checkpoint has not changed since (``is_current``,
        a deleted checkpoint counting as unchanged), or None."""
        fresh = [r for r in cls.results(run, variant) if r.stale() is None]
        return fresh[-1] if fresh else None

    def stale(self, run: str | Path | None = None) -> str | None:
        """Why this result no longer belongs to the run's checkpoint (the file it scored was replaced since), or
        None. A checkpoint deleted since (to save space) does not make it stale: the record still names what it
        scored."""
        if not (self.checkpoint and self.checkpoint_sha256):
            return None
        checkpoint = Path(run if run is not None else self.run) / self.checkpoint
        if not checkpoint.is_file():
            return None
        if file_sha256(checkpoint) != self.checkpoint_sha256:
            return f"{self.checkpoint} has changed since this eval"
        return None

    def is_current(self, run: str | Path | None = None) -> bool:
        """Whether the checkpoint this record scored is still in the run (``run``: its folder, default the one the
        record was read from) with the SHA-256 it scored."""
        if not (self.checkpoint and self.checkpoint_sha256):
            return False
        checkpoint = Path(run if run is not None else self.run) / self.checkpoint
        return checkpoint.is_file() and file_sha256(checkpoint) == self.checkpoint_sha256


def _check_points(value: Any) -> None:
    """metrics.json's ``operating_points`` must be a list of entries with their keys and numbers (docs/schemas.md);
    else ``ValueError``."""
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise ValueError("'operating_points' is not a list of objects")
    for entry in value:
        for key in ("name", "category", "rule", "chosen_on"):
            if not isinstance(entry.get(key), str):
                raise ValueError(f"an operating point has no {key!r}")
        for level in ("image", "pixel"):
            if not isinstance(entry.get(level), dict):
                raise ValueError(f"operating point {entry['name']!r} has no {level!r} results")
            _numbers(entry[level], f"operating point {entry['name']}.{level}")
        _number(entry.get("threshold"), f"operating point {entry['name']}.threshold")
