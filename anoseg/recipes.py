"""Recipes: one YAML per dataset family (``recipes/*.yaml``) with its layout, roots, categories and training defaults.

Command-line options override recipe values through ``Recipe.override``; nothing else reads the YAML files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anoseg.errors import AnosegError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TASKS = ("anomaly", "road", "scene")


@dataclass(frozen=True)
class TrainSettings:
    """The training recipe. Defaults are the LFD paper's (SGD, cosine lr per iteration, OHEM CE with weights 1:4)."""

    epochs: int = 150
    eval_epoch: int | None = 100  # the checkpoint the papers report (None = the last one)
    checkpoint_every: int = 10
    batch_size: int = 8
    lr: float = 0.01
    min_lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 1e-4
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100_000
    class_weights: tuple[float, ...] | None = (1.0, 4.0)
    unified: bool = True  # one model over every category (the paper's default)
    augment: tuple[str, ...] = ()  # any of: hflip, vflip, affine, color, scale (road/scene)
    workers: int = 2
    crop_size: tuple[int, int] | None = None  # road/scene: random crop (pad) size after scaling
    scale_range: tuple[float, float] | None = None  # road/scene: random rescale range


@dataclass(frozen=True)
class Recipe:
    """Everything a stage needs to know about a dataset family."""

    name: str
    task: str = "anomaly"
    layout: str = "mvtec_ad"
    data_root: Path = Path("data")
    generated_root: Path = Path("data/generated")  # generated pairs live in <generated_root>/<generator>
    generator: str = "none"
    categories: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = (256, 256)  # None = native resolution (road/scene)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 2
    class_names: tuple[str, ...] = ("good", "defect")
    ignore_index: int = 255
    protocol: str = "clean"
    options: dict[str, Any] = field(default_factory=dict)  # layout-specific settings (e.g. KITTI folds)
    train: TrainSettings = field(default_factory=TrainSettings)
    source: Path | None = None  # the YAML file this came from

    def override(self, **values: Any) -> Recipe:
        """A copy with the given fields replaced; ``None`` values are ignored. ``train__epochs=5`` sets train.epochs."""
        top: dict[str, Any] = {}
        train: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                continue
            if key.startswith("train__"):
                train[key.removeprefix("train__")] = value
            else:
                top[key] = value
        if train:
            top["train"] = dataclasses.replace(self.train, **train)
        return dataclasses.replace(self, **top)

    def generated_dir(self, generator: str | None = None) -> Path | None:
        """The default folder of a generator's pairs, or None for generator ``none``."""
        name = generator or self.generator
        return None if name == "none" else self.generated_root / name


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
        >>> load_recipe("demo").override(train__epochs=2).train.epochs
        2
    """
    import yaml

    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        found = [d / f"{name_or_path}.yaml" for d in recipe_dirs() if (d / f"{name_or_path}.yaml").is_file()]
        if not found:
            raise AnosegError(f"unknown recipe {str(name_or_path)!r}; choose one of: {', '.join(list_recipes())}")
        path = found[0]
    if not path.is_file():
        raise AnosegError(f"recipe file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AnosegError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise AnosegError(f"recipe {path} must be a mapping of settings")
    return _from_dict(raw, path)


def _from_dict(raw: dict[str, Any], path: Path) -> Recipe:
    raw = dict(raw)
    train_raw = dict(raw.pop("train", {}) or {})
    normalize = raw.pop("normalize", None)
    if normalize:
        raw.update(mean=normalize["mean"], std=normalize["std"])
    known = {f.name for f in dataclasses.fields(Recipe)} - {"train", "source"}
    known_train = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = sorted(set(raw) - known) + [f"train.{k}" for k in sorted(set(train_raw) - known_train)]
    if unknown:
        raise AnosegError(f"recipe {path}: unknown setting(s) {', '.join(unknown)}")
    for key in ("categories", "mean", "std", "class_names"):
        if key in raw:
            raw[key] = tuple(raw[key])
    for key in ("data_root", "generated_root"):
        if key in raw:
            raw[key] = Path(raw[key])
    if raw.get("image_size") is not None:
        raw["image_size"] = _size(raw["image_size"])
    for key in ("class_weights", "augment", "scale_range"):
        if train_raw.get(key) is not None:
            train_raw[key] = tuple(train_raw[key])
    if train_raw.get("crop_size") is not None:
        train_raw["crop_size"] = _size(train_raw["crop_size"])
    recipe = Recipe(**raw, train=TrainSettings(**train_raw), source=path)
    if recipe.task not in TASKS:
        raise AnosegError(f"recipe {path}: task must be one of {', '.join(TASKS)}, not {recipe.task!r}")
    return recipe


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))
