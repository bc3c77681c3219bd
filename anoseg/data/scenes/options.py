"""The layout-specific settings of the road/scene recipes (the recipe's ``options:`` mapping), with their defaults.

    kitti_road:  n_folds (5), val_fold (0), ignore_invalid (true), crop (center)
    cityscapes:  splits ({train: [train], test: [val]}), crop (random)
    camvid:      splits ({train: [train, val], test: [test]}), crop (random)

``splits`` maps the manifest's train/test to the dataset's own subsets; ``crop`` is how a rescaled training sample
becomes the fixed ``train.crop_size`` (``center``: LFD_RoadSeg's centre pad/crop; ``random``: pad bottom/right, then a
random window, as SANet/PIDNet); ``ignore_invalid`` false trains KITTI pixels outside the evaluation area as non-road
(LFD_RoadSeg) instead of ignoring them. Evaluation always uses the devkit's evaluation area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anoseg.errors import AnosegError

LAYOUTS = ("kitti_road", "cityscapes", "camvid")
CROP_MODES = ("center", "random")
_DEFAULT_SPLITS = {
    "kitti_road": {"train": (), "test": ()},  # folds decide
    "cityscapes": {"train": ("train",), "test": ("val",)},
    "camvid": {"train": ("train", "val"), "test": ("test",)},  # SANet and SFSegNets train on train+val
}
_KEYS = {"kitti_road": {"n_folds", "val_fold", "ignore_invalid", "crop"},
         "cityscapes": {"splits", "crop"}, "camvid": {"splits", "crop"}}


@dataclass(frozen=True)
class SceneOptions:
    """Validated ``options`` of a road/scene recipe."""

    layout: str
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    crop: str = "random"
    n_folds: int = 5
    val_fold: int = 0
    ignore_invalid: bool = True

    @property
    def subsets(self) -> tuple[str, ...]:
        """Every subset of the dataset that is read, train subsets first."""
        return tuple(dict.fromkeys(self.splits.get("train", ()) + self.splits.get("test", ())))


def scene_options(recipe: Any) -> SceneOptions:
    """The validated options of ``recipe`` (a ``Recipe`` with ``layout``, ``options`` and ``source``).

    Example:
        >>> scene_options(load_recipe("kitti_road")).val_fold  # doctest: +SKIP
        0
    """
    where = f"recipe {recipe.source or recipe.name}"
    if recipe.layout not in LAYOUTS:
        raise AnosegError(f"{where}: layout {recipe.layout!r} is not a road/scene layout ({', '.join(LAYOUTS)})")
    raw = dict(recipe.options or {})
    unknown = sorted(set(raw) - _KEYS[recipe.layout])
    if unknown:
        raise AnosegError(f"{where}: unknown option(s) {', '.join(unknown)} for layout {recipe.layout}; "
                          f"known: {', '.join(sorted(_KEYS[recipe.layout]))}")
    splits = {k: tuple(v) for k, v in _DEFAULT_SPLITS[recipe.layout].items()}
    if "splits" in raw:
        given = raw["splits"]
        if not isinstance(given, dict) or set(given) - {"train", "test"}:
            raise AnosegError(f"{where}: options.splits must map train and/or test to lists of subsets")
        splits.update({k: (v,) if isinstance(v, str) else tuple(v) for k, v in given.items()})
        overlap = set(splits["train"]) & set(splits["test"])
        if overlap:
            raise AnosegError(f"{where}: subset(s) {', '.join(sorted(overlap))} are in both train and test")
    crop = raw.get("crop", "center" if recipe.layout == "kitti_road" else "random")
    if crop not in CROP_MODES:
        raise AnosegError(f"{where}: options.crop must be one of {', '.join(CROP_MODES)}, not {crop!r}")
    options = SceneOptions(layout=recipe.layout, splits=splits, crop=crop, n_folds=int(raw.get("n_folds", 5)),
                           val_fold=int(raw.get("val_fold", 0)), ignore_invalid=bool(raw.get("ignore_invalid", True)))
    if options.n_folds < 2 or not 0 <= options.val_fold < options.n_folds:
        raise AnosegError(f"{where}: need n_folds >= 2 and 0 <= val_fold < n_folds, got n_folds {options.n_folds}, "
                          f"val_fold {options.val_fold}")
    return options
