"""Torch datasets over a manifest: images and masks decoded and resized once into a uint8 cache, then served fast.

The cache lives beside the manifest (``<dataset dir>/cache/<key>.{images,masks}.npy``); its key hashes the file list,
file sizes and times, the image size and the protocol, so a changed dataset never serves stale arrays. Workers read
the arrays memory-mapped, so the CPU trains instead of decoding PNGs. Images stay uint8 until the batch reaches the
device (``normalize``), which keeps worker traffic 4× smaller.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from anoseg.constants import CLEAN
from anoseg.data.protocols import resized_mask, train_target
from anoseg.io import name_bytes, write_with

AUGMENTATIONS = ("hflip", "vflip", "affine", "color")
#: Bumped whenever decoding or resizing changes (2: masks resized by ``masks.resize_mask``, files read upright), so
#: arrays cached by an older anoseg are never served.
CACHE_VERSION = 2


@dataclass(frozen=True)
class CachedSplit:
    """Resized arrays of some manifest rows: ``images`` (N, H, W, 3) uint8, ``masks`` (N, H, W) uint8."""

    rows: pd.DataFrame
    images: np.ndarray
    masks: np.ndarray


def cache_key(rows: pd.DataFrame, size: tuple[int, int], protocol: str, mask_threshold: int | None) -> str:
    """A digest of everything the cached arrays depend on."""
    digest = hashlib.sha1(f"v{CACHE_VERSION}|{size}|{protocol}|{mask_threshold}".encode())
    for image, mask in zip(rows["image"], rows["mask"], strict=True):
        for path in (image, mask):
            stat = os.stat(path) if path else None
            digest.update(name_bytes(f"{path}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}\n"))
    return digest.hexdigest()[:20]


def load_cached(
    rows: pd.DataFrame,
    size: tuple[int, int],
    cache_dir: Path,
    protocol: str = CLEAN,
    mask_threshold: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CachedSplit:
    """Resized uint8 arrays for ``rows``, decoded once and memory-mapped afterwards.

    Example:
        >>> split = load_cached(manifest[manifest.split == "test"], (256, 256), Path("outputs/demo/seas/cache"))
        ... # doctest: +SKIP
        >>> split.images.shape  # doctest: +SKIP
        (45, 256, 256, 3)
    """
    rows = rows.reset_index(drop=True)
    key = cache_key(rows, size, protocol, mask_threshold)
    image_file = cache_dir / f"{key}.images.npy"
    mask_file = cache_dir / f"{key}.masks.npy"
    if not (image_file.is_file() and mask_file.is_file()):
        images, masks = _decode_all(rows, size, protocol, mask_threshold, progress)
        write_with(image_file, lambda tmp: np.save(tmp, images))
        write_with(mask_file, lambda tmp: np.save(tmp, masks))
    return CachedSplit(rows, np.load(image_file, mmap_mode="r"), np.load(mask_file, mmap_mode="r"))


def _decode_all(rows, size, protocol, mask_threshold, progress) -> tuple[np.ndarray, np.ndarray]:
    from anoseg.data.images import read_image

    height, width = size
    images = np.zeros((len(rows), height, width, 3), np.uint8)
    masks = np.zeros((len(rows), height, width), np.uint8)

    def decode(i: int) -> None:
        # PIL bilinear with antialias: what torchvision's Resize does on a PIL image in the reference code
        image = Image.fromarray(read_image(rows.at[i, "image"]))
        images[i] = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
        masks[i] = resized_mask(rows.at[i, "mask"], size, protocol, mask_threshold)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for done, _ in enumerate(pool.map(decode, range(len(rows))), start=1):
            if progress:
                progress(done, len(rows))
    return images, masks


class SegmentationDataset(torch.utils.data.Dataset):
    """``(image uint8 (3, H, W), target int64 (H, W))`` pairs from a ``CachedSplit``.

    ``augment`` names joint image/mask augmentations from torchvision transforms v2 (``AUGMENTATIONS``); the
    paper's default is none.
    """

    def __init__(self, split: CachedSplit, protocol: str = CLEAN, augment: Sequence[str] = ()) -> None:
        self.split = split
        self.protocol = protocol
        self.transform = build_augmentation(augment)

    def __len__(self) -> int:
        return len(self.split.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.array(self.split.images[index])).permute(2, 0, 1)
        target = torch.from_numpy(train_target(np.asarray(self.split.masks[index]), self.protocol))
        if self.transform is not None:
            from torchvision import tv_tensors

            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(target))
            image, target = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        return image, target.long()


def build_augmentation(names: Sequence[str]) -> Callable | None:
    """A torchvision v2 transform applied jointly to image and mask, or None for no augmentation."""
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        from anoseg.errors import AnosegError

        raise AnosegError(f"unknown augmentation {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
    if not names:
        return None
    from torchvision.transforms import v2

    steps = []
    if "hflip" in names:
        steps.append(v2.RandomHorizontalFlip())
    if "vflip" in names:
        steps.append(v2.RandomVerticalFlip())
    if "affine" in names:  # small: defects must stay inside the frame
        steps.append(v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)))
    if "color" in names:  # acts on the image only; masks pass through untouched
        steps.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
    return v2.Compose(steps)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float32, scaled to [0, 1] and normalised per channel (on the batch's device).

    Always float32 arithmetic, whatever the default dtype (Fabric's ``64-true`` sets it to float64): the same inputs
    as inference's ``normalise`` and the authors' ``ToTensor`` + ``Normalize``.
    """
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t
