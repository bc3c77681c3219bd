"""Recipes: one YAML per dataset family (``recipes/*.yaml``) with its layout, roots, categories and training defaults.

A recipe is validated when it is made and frozen after. Every change to one, a command-line option (``train
--lr``) or a sweep's ``--set train.lr=...``, goes through ``Recipe.override``: the new values are written into the
recipe's settings under their dotted keys and the whole is validated again exactly as a YAML file is
(``_from_dict``), so a value refused in a file is refused everywhere, with the same message naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le, Lt

from anoseg.constants import ANOMALY, CLEAN, NO_GENERATOR, PROTOCOL_REAL_FRACTION, PROTOCOLS, SIZE_MULTIPLE, TASKS
from anoseg.errors import AnosegError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Constraints in the annotations below are checked by pydantic when a recipe is loaded (``_validate``).
PositiveInt = Annotated[int, Ge(1)]
Count = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
Fraction = Annotated[float, Ge(0), Le(1)]


@dataclass(frozen=True)
class TrainSettings:
    """The training recipe. Defaults are the LFD paper's (SGD, cosine lr per iteration, OHEM CE with weights 1:4)."""

    epochs: PositiveInt = 150
    eval_epoch: PositiveInt | None = 100  # the checkpoint the papers report (None = the last one)
    checkpoint_every: PositiveInt = 10
    batch_size: PositiveInt = 8
    lr: PositiveFloat = 0.01
    min_lr: Annotated[float, Ge(0)] = 1e-5
    warmup_iters: Count = 0  # linear warm-up steps before the cosine (0 = none, as the paper)
    momentum: Fraction = 0.9
    weight_decay: Annotated[float, Ge(0)] = 1e-4
    ohem_thresh: Fraction = 0.7
    ohem_min_kept: Count = 100_000
    class_weights: tuple[PositiveFloat, ...] | None = (1.0, 4.0)  # a zero weight: that class never learns
    unified: bool = True  # one model over every category (the paper's default)
    augment: tuple[str, ...] = ()  # any of: hflip, vflip, affine, color, scale (road/scene)
    workers: Count = 2
    crop_size: tuple[PositiveInt, PositiveInt] | None = None  # road/scene: random crop (pad) size after scaling
    scale_range: tuple[PositiveFloat, PositiveFloat] | None = None  # road/scene: random rescale range


@dataclass(frozen=True)
class SplitSettings:
    """How ``prepare`` splits anomaly data (``anoseg.data.split``; docs/protocol.md §2.1). The defaults are the
    papers' protocol exactly: no validation part, the first ⌊n/3⌋ real defects of each type train.

    ``val``: the fraction of the training side (``train/good``, the real training defects, the generated pairs) held
    out as the ``val`` split, chosen per file by a hash of its path. ``real_fraction``: how many of each defect
    type's real images may train, as a fraction of the type's n (0 = generated pairs only); the test part is the
    protocol's other 2/3 for every value, so above 1/3 it is capped at ⌊n/3⌋.
    """

    val: Annotated[float, Ge(0), Lt(1)] = 0.0
    real_fraction: Fraction = PROTOCOL_REAL_FRACTION

    @property
    def is_protocol(self) -> bool:
        """Whether this is the papers' split (no validation part, ⌊n/3⌋ real training defects)."""
        return self.val == 0 and self.real_fraction == PROTOCOL_REAL_FRACTION


@dataclass(frozen=True)
class Recipe:
    """Everything a stage needs to know about a dataset family."""

    name: str
    task: str = ANOMALY
    layout: str = "mvtec_ad"
    data_root: Path = Path("data")
    generated_root: Path = Path("data/generated")  # generated pairs live in <generated_root>/<generator>
    generator: str = NO_GENERATOR
    categories: tuple[str, ...] = ()
    image_size: tuple[PositiveInt, PositiveInt] | None = (256, 256)  # None = native resolution (road/scene)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = IMAGENET_STD  # divided by
    num_classes: Annotated[int, Ge(2)] = 2
    class_names: tuple[str, ...] = ("good", "defect")
    ignore_index: Count = 255
    protocol: str = CLEAN
    options: dict[str, Any] = field(default_factory=dict)  # layout-specific settings (e.g. KITTI folds)
    train: TrainSettings = field(default_factory=TrainSettings)
    split: SplitSettings = field(default_factory=SplitSettings)  # anomaly data: validation part, real defects used
    source: Path | None = field(default=None, compare=False)  # the YAML file this came from (not a setting)

    def override(self, settings: Mapping[str, Any] | None = None, /, **values: Any) -> Recipe:
        """A new recipe with some settings replaced, validated exactly as a recipe file is.

        ``settings`` maps dotted keys (``"train.lr"``, ``"image_size"``) to values as a YAML file holds them
        (``None`` is YAML's ``null``; ``image_size: 64`` means 64×64, as in a file). Keyword ``values`` are the same
        with ``__`` for the dot (``train__lr=1e-3``); there a ``None`` means "not given" and is skipped. The result
        equals the recipe loaded from a file holding the same values. Raises ``AnosegError`` in one line naming the
        key for an unknown setting or a value a recipe file could not hold (``train.lr`` below ``train.min_lr``).

        Example:
            >>> recipe = load_recipe("demo").override({"train.lr": 0.02}, train__epochs=2)
            >>> recipe.train.lr, recipe.train.epochs
            (0.02, 2)
        """
        changes = dict(settings or {})
        changes.update({key.replace("__", "."): value for key, value in values.items() if value is not None})
        if not changes:
            return self
        raw = recipe_values(self)
        for key, value in changes.items():
            set_dotted(raw, key, value)
        shown = ", ".join(f"{key}={_shown(value)}" for key, value in changes.items())
        return dataclasses.replace(_from_dict(raw, f"{self.name} with {shown}"), source=self.source)

    def generated_dir(self, generator: str | None = None) -> Path | None:
        """The default folder of a generator's pairs, or None for generator ``none``."""
        name = generator or self.generator
        return None if name == NO_GENERATOR else self.generated_root / name


def recipe_dirs() -> list[Path]:
    """Where named recipes are looked up: ``./recipes`` first, then the recipes shipped beside the package."""
    shipped = Path(__file__).resolve().parent.parent / "recipes"
    return [Path("recipes"), shipped]


def list_recipes() -> list[str]:
    """Names of the recipes that ``load_recipe`` can find by name."""
    return sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a recipe by name (``mvtec_ad``) or from a YAML path.

    Example:
        >>> load_recipe("demo").override({"train.epochs": 2}).train.epochs
        2
    """

    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        found = [d / f"{name_or_path}.yaml" for d in recipe_dirs() if (d / f"{name_or_path}.yaml").is_file()]
        if not found:
            raise AnosegError(f"unknown recipe {str(name_or_path)!r}; choose one of: {', '.join(list_recipes())}")
        path = found[0]
    return _from_dict(read_yaml_mapping(path, "recipe"), path)


#: Numbers in exponent form that YAML 1.1 (PyYAML) reads as strings: ``1e-6``, ``5E3``, ``1.5e6`` (YAML 1.2 floats).
_EXPONENT_FLOAT = r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"


@cache
def _yaml_loader():
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that also reads ``1e-6`` as a number, as YAML 1.2 and Python do."""

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_EXPONENT_FLOAT), list("-+0123456789."))
    return Loader


def load_yaml(text: str) -> Any:
    """``text`` read as YAML by ``yaml.safe_load``, except that ``1e-6`` is the number (YAML 1.1 makes it a
    string, so ``lr: 1e-6`` in a recipe and ``--set train.lr=1e-6`` would be refused as "not a number").

    Example:
        >>> load_yaml("{lr: 1e-6, epochs: 12, name: 1e3x}")
        {'lr': 1e-06, 'epochs': 12, 'name': '1e3x'}
    """
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no arbitrary objects


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping of settings in the YAML file ``path`` (empty file: ``{}``).

    Raises ``AnosegError`` in one line naming ``what`` (``"recipe"``, ``"sweep"``) when the file is missing, is not
    valid YAML, or holds something other than a mapping.
    """
    import yaml

    if not path.is_file():
        raise AnosegError(f"{what} file not found: {path}")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AnosegError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise AnosegError(f"{what} {path} must be a mapping of settings")
    return raw


def _shown(value: Any) -> str:
    """A value as the user wrote it: ``seas``, ``0.02``, ``[64, 64]``."""
    import json

    return str(value) if isinstance(value, str | Path) else json.dumps(value, default=str)


def recipe_values(recipe: Recipe) -> dict[str, Any]:
    """The settings of ``recipe`` as a recipe file holds them (plain lists, numbers and strings; no ``source``):
    read back (``load_recipe`` of the file ``yaml.safe_dump`` writes) they give ``recipe`` again."""
    import json

    values = dataclasses.asdict(recipe)
    values.pop("source")
    return json.loads(json.dumps(values, default=str))


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted: ``train.lr``) in the nested settings ``raw``; a mapping value is merged key by key
    (``train={"lr": 0.1}`` changes ``train.lr`` only). Raises ``AnosegError`` when a part of the key is not a group."""
    if isinstance(value, Mapping) and value and isinstance(raw.get(key), dict):
        for inner, inner_value in value.items():
            set_dotted(raw[key], str(inner), inner_value)
        return
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise AnosegError(f"override {key}: {part!r} is not a group of settings")
    node[last] = value


def _from_dict(raw: dict[str, Any], path: Path | str) -> Recipe:
    """The recipe the settings ``raw`` describe, validated: the one way a recipe is made from values (a file's, or
    the settings of ``Recipe.override``). ``path`` names them in errors (``recipe <path>: ...``) and becomes the
    recipe's ``source``. Raises ``AnosegError`` in one line naming the setting."""
    raw = dict(raw)
    train_raw = raw.pop("train", {})
    if train_raw is None:
        train_raw = {}
    if not isinstance(train_raw, dict):
        raise AnosegError(f"recipe {path}: train must be a mapping of settings")
    normalize = raw.pop("normalize", None)
    if normalize:
        if not isinstance(normalize, dict) or set(normalize) != {"mean", "std"}:
            raise AnosegError(f"recipe {path}: normalize must be a mapping with mean and std")
        raw.update(mean=normalize["mean"], std=normalize["std"])
    split_raw = raw.pop("split", None)
    if split_raw is None:
        split_raw = {}
    if not isinstance(split_raw, dict):
        raise AnosegError(f"recipe {path}: split must be a mapping of settings (e.g. split: {{val: 0.2}})")
    known = {f.name for f in dataclasses.fields(Recipe)} - {"train", "split", "source"}
    known_train = {f.name for f in dataclasses.fields(TrainSettings)}
    known_split = {f.name for f in dataclasses.fields(SplitSettings)}
    unknown = (sorted(set(raw) - known) + [f"train.{k}" for k in sorted(set(train_raw) - known_train)]
               + [f"split.{k}" for k in sorted(set(split_raw) - known_split)])
    if unknown:
        raise AnosegError(f"recipe {path}: unknown setting(s) {', '.join(unknown)}")
    if isinstance(raw.get("image_size"), int) and not isinstance(raw["image_size"], bool):
        raw["image_size"] = [raw["image_size"]] * 2  # `image_size: 256` means 256×256
    if isinstance(train_raw.get("crop_size"), int) and not isinstance(train_raw["crop_size"], bool):
        train_raw["crop_size"] = [train_raw["crop_size"]] * 2
    recipe = _validate({**raw, "train": train_raw, "split": split_raw}, path)
    return dataclasses.replace(recipe, source=path)


def non_finite(values: Any, where: str = "") -> tuple[str, float] | None:
    """``(dotted key, value)`` of the first nan or infinite number in the nested settings ``values``, else None."""
    if isinstance(values, float) and not math.isfinite(values):
        return where, values
    items = values.items() if isinstance(values, Mapping) else enumerate(values) if isinstance(values, list | tuple) \
        else ()
    for key, value in items:
        found = non_finite(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


@cache
def _adapter(kind: type):
    import pydantic

    return pydantic.TypeAdapter(kind)


def check_values(kind: type, values: Mapping[str, Any], where: str):
    """``values`` validated against the annotations of the dataclass ``kind`` (types and ranges) with pydantic.

    Validation is strict as in JSON: "12" is not an int and 1.5 is not one either; a YAML list fills a tuple, and
    nan or infinite numbers are refused. Raises ``AnosegError`` ``"<where>: <key>: <problem>, got <value>"`` for the
    first problem (with the count of the others).
    """
    import json

    import pydantic

    bad = non_finite(values)
    if bad is not None:
        raise AnosegError(f"{where}: {bad[0]}: must be a finite number, got {bad[1]!r}")
    try:
        return _adapter(kind).validate_json(json.dumps(values, default=str), strict=True)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise AnosegError(f"{where}: {key}: {first['msg'].lower()}, got {first['input']!r}{more}") from None


def _validate(values: dict[str, Any], path: Path | str) -> Recipe:
    """Check every value against the dataclass annotations (``check_values``), then the rules across settings."""
    recipe = check_values(Recipe, values, f"recipe {path}")
    problems = []
    if recipe.task not in TASKS:
        problems.append(f"task must be one of {', '.join(TASKS)}, not {recipe.task!r}")
    if recipe.protocol not in PROTOCOLS:
        problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}, not {recipe.protocol!r}")
    if recipe.image_size is not None and any(side % SIZE_MULTIPLE for side in recipe.image_size):
        problems.append(f"image_size sides must be multiples of {SIZE_MULTIPLE}, not {list(recipe.image_size)}")
    if recipe.task != ANOMALY and not recipe.split.is_protocol:
        problems.append("split (val, real_fraction) applies to anomaly recipes only")
    if recipe.task == ANOMALY and recipe.image_size is None:
        problems.append("image_size is required for anomaly recipes")
    if recipe.train.class_weights is not None and len(recipe.train.class_weights) != recipe.num_classes:
        problems.append(f"train.class_weights needs {recipe.num_classes} values")
    if recipe.train.min_lr > recipe.train.lr:  # the cosine would rise from lr to min_lr
        problems.append(f"train.min_lr ({recipe.train.min_lr}) must not exceed train.lr ({recipe.train.lr})")
    if len(recipe.class_names) != recipe.num_classes:
        problems.append(f"class_names has {len(recipe.class_names)} names for {recipe.num_classes} classes")
    if problems:
        raise AnosegError(f"recipe {path}: {'; '.join(problems)}")
    return recipe
