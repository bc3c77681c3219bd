"""The road/scene recipes' data: KITTI Road, Cityscapes and CamVid (docs/protocol.md §5).

    layouts.py   the three on-disk layouts → (image, label) pairs
    labels.py    label encodings → one class map (ignore 255); class names and display palettes
    options.py   the recipes' layout-specific ``options`` with defaults
    prepare.py   verification, the split/fold rules and the data report (``build_scene_manifest``)
    dataset.py   the augmented fixed-size training dataset (``scene_train_dataset``)

The dataset module needs torch; it is imported on first use so that ``anoseg prepare`` stays light.
"""

from typing import Any

from anoseg.data.scenes.labels import (
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    CLASSES,
    IGNORE,
    KITTI_CLASSES,
    LABEL_FORMATS,
    class_palette,
    colourize,
    read_kitti_gt,
    read_label,
)
from anoseg.data.scenes.layouts import read_layout, row_label_formats
from anoseg.data.scenes.options import SceneOptions, scene_options
from anoseg.data.scenes.prepare import build_scene_manifest, kitti_folds

_LAZY = ("SCENE_AUGMENTATIONS", "SceneTrainDataset", "fit_to_size", "scene_train_dataset")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from anoseg.data.scenes import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CAMVID_CLASSES",
    "CITYSCAPES_CLASSES",
    "CLASSES",
    "IGNORE",
    "KITTI_CLASSES",
    "LABEL_FORMATS",
    "SCENE_AUGMENTATIONS",
    "SceneOptions",
    "SceneTrainDataset",
    "build_scene_manifest",
    "class_palette",
    "colourize",
    "fit_to_size",
    "kitti_folds",
    "read_kitti_gt",
    "read_label",
    "read_layout",
    "row_label_formats",
    "scene_options",
    "scene_train_dataset",
]
