"""The training dataset of the road/scene recipes: native-size images, random rescale, flip, then a fixed-size crop.

Each sample is ``(image uint8 (3, H, W), target int64 (H, W))`` of exactly ``train.crop_size``, so the default
collation batches it; ignored pixels (and padding) carry the recipe's ``ignore_index``. The order of operations
follows LFD_RoadSeg / SANet: (optional fixed resize) → rescale by U(scale_range) (image bilinear, label nearest) →
horizontal flip → brightness/colour (image only) → pad (image 0, label ignore) and crop to ``crop_size``. Randomness
comes from torch's generator only, which the training loop seeds per epoch (and per worker), so runs repeat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from anoseg.data.images import read_image
from anoseg.data.scenes.labels import IGNORE, read_label
from anoseg.data.scenes.layouts import row_label_formats
from anoseg.data.scenes.options import scene_options
from anoseg.errors import AnosegError

#: hflip: p = 0.5; scale: × U(train.scale_range); brightness: × U(0.9, 1.1) (LFD_RoadSeg); color: ColorJitter 0.25.
SCENE_AUGMENTATIONS = ("hflip", "scale", "brightness", "color")
DEFAULT_SCALE_RANGE = (0.5, 2.0)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def fit_to_size(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int], mode: str = "random",
                ignore_index: int = IGNORE) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (image 0, label ``ignore_index``) and crop ``image`` (3, H, W) and ``label`` (H, W) to ``size``.

    ``center``: symmetric padding or a centred window (LFD_RoadSeg); ``random``: padding at the bottom/right, then a
    random window (SANet).

    Example:
        >>> image = torch.zeros(3, 10, 40, dtype=torch.uint8)
        >>> image, label = fit_to_size(image, torch.ones(10, 40, dtype=torch.uint8), (16, 32), "center")
        >>> image.shape, label[0, 0].item(), label[3, 0].item()
        (torch.Size([3, 16, 32]), 255, 1)
    """
    height, width = size
    pad_h, pad_w = max(height - image.shape[1], 0), max(width - image.shape[2], 0)
    if pad_h or pad_w:
        top, left = (pad_h // 2, pad_w // 2) if mode == "center" else (0, 0)
        padding = (left, pad_w - left, top, pad_h - top)
        image = torch.nn.functional.pad(image, padding, value=0)
        label = torch.nn.functional.pad(label, padding, value=ignore_index)
    extra_h, extra_w = image.shape[1] - height, image.shape[2] - width
    if mode == "center":
        top, left = extra_h // 2, extra_w // 2
    else:
        top = int(torch.randint(extra_h + 1, ()))
        left = int(torch.randint(extra_w + 1, ()))
    return image[:, top:top + height, left:left + width], label[top:top + height, left:left + width]


class SceneTrainDataset(torch.utils.data.Dataset):
    """Augmented fixed-size training samples decoded from image/label files (see the module docstring)."""

    def __init__(self, images: Sequence[str], labels: Sequence[str], label_formats: Sequence[str], *,
                 crop_size: tuple[int, int], crop: str = "random", augment: Sequence[str] = (),
                 scale_range: tuple[float, float] = DEFAULT_SCALE_RANGE, ignore_index: int = IGNORE,
                 ignore_invalid: bool = True, resize_to: tuple[int, int] | None = None) -> None:
        unknown = sorted(set(augment) - set(SCENE_AUGMENTATIONS))
        if unknown:
            raise AnosegError(f"unknown augmentation {', '.join(unknown)} for road/scene recipes; choose from "
                              f"{', '.join(SCENE_AUGMENTATIONS)}")
        if not len(images) == len(labels) == len(label_formats):
            raise ValueError("images, labels and label_formats must have the same length")
        self.images, self.labels, self.formats = list(images), list(labels), list(label_formats)
        self.crop_size, self.crop, self.augment = tuple(crop_size), crop, frozenset(augment)
        self.scale_range, self.ignore_index = scale_range, ignore_index
        self.ignore_invalid, self.resize_to = ignore_invalid, resize_to
        self.jitter = None
        if "color" in self.augment:
            from torchvision.transforms import v2

            self.jitter = v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoded, un-augmented sample: uint8 image (3, H, W) and uint8 label (H, W), 255 = ignore."""
        image = torch.from_numpy(np.ascontiguousarray(read_image(self.images[index]).transpose(2, 0, 1)))
        label = torch.from_numpy(read_label(self.labels[index], self.formats[index],
                                            ignore_invalid=self.ignore_invalid))
        if image.shape[1:] != label.shape:
            raise AnosegError(f"{self.images[index]} and its label {self.labels[index]} differ in size")
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        image, label = self.load(index)
        size = self.resize_to
        if "scale" in self.augment:
            base = size or tuple(image.shape[1:])
            factor = _uniform(*self.scale_range)
            size = (max(round(base[0] * factor), 1), max(round(base[1] * factor), 1))
        if size is not None and tuple(size) != tuple(image.shape[1:]):
            image = F.resize(image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)
            label = F.resize(label[None], list(size), interpolation=InterpolationMode.NEAREST)[0]
        if "hflip" in self.augment and float(torch.rand(())) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        if "brightness" in self.augment:
            image = (image.float() * _uniform(0.9, 1.1)).clamp_(0, 255).to(torch.uint8)
        if self.jitter is not None:
            image = self.jitter(image)
        image, label = fit_to_size(image, label, self.crop_size, self.crop, IGNORE)
        target = label.long()
        if self.ignore_index != IGNORE:
            target[label == IGNORE] = self.ignore_index
        return image.contiguous(), target


def scene_train_dataset(rows, recipe) -> SceneTrainDataset:
    """The training dataset of a road/scene recipe over manifest ``rows`` (train split).

    Example:
        >>> dataset = scene_train_dataset(manifest[manifest.split == "train"], load_recipe("kitti_road"))
        ... # doctest: +SKIP
        >>> [t.shape for t in dataset[0]]  # doctest: +SKIP
        [torch.Size([3, 384, 1248]), torch.Size([384, 1248])]
    """
    settings = recipe.train
    if settings.crop_size is None:
        raise AnosegError(f"recipe {recipe.source or recipe.name}: road/scene recipes need train.crop_size "
                          "(the fixed size of a training batch)")
    options = scene_options(recipe)
    return SceneTrainDataset(
        rows["image"].tolist(), rows["mask"].tolist(), row_label_formats(rows, recipe.layout),
        crop_size=settings.crop_size, crop=options.crop, augment=tuple(settings.augment),
        scale_range=tuple(settings.scale_range or DEFAULT_SCALE_RANGE), ignore_index=recipe.ignore_index,
        ignore_invalid=options.ignore_invalid, resize_to=recipe.image_size)
