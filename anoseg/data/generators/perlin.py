"""Perlin-noise defects: anomalib's ``PerlinAnomalyGenerator`` (the DRAEM recipe, Zavrtanik et al., ICCV 2021) on
uint8 arrays, deterministic per seed.

A thresholded, rotated Perlin noise mask, filled with an augmented texture (a ``textures`` folder, e.g. DTD) or,
without one, with augmented Perlin noise, blended into the image with a random factor. torch and anomalib are
imported when a ``PerlinDefects`` is made, not with this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anoseg.data.images import is_image_file

TEXTURE_EXTENSIONS = (".png", ".jpg", ".jpeg")  # what anomalib's texture reader (torchvision.io) decodes



class PerlinDefects:
    """anomalib's ``PerlinAnomalyGenerator`` (DRAEM) on uint8 arrays, deterministic per seed.

    anomalib draws everything from torch's global RNG (noise, rotation, the choice of 3 of its 10 augmentations,
    blend factor, texture choice), and its constructor fixes the solarisation threshold, so both are run under a
    forked RNG seeded here, leaving the caller's RNG state untouched. ``probability=1`` (its default 0.5 returns half
    of the images unchanged). Its mask is binary and the image is blended only under it (checked in the tests); the
    output is still composed as ``where(mask, anomalib's image, source)`` so that the contract cannot drift.
    Example:
        >>> maker = PerlinDefects(seed=0)
        >>> out, mask = maker(np.zeros((64, 64, 3), np.uint8), 7)
        >>> out.shape, mask.dtype
        ((64, 64, 3), dtype('bool'))
    """

    def __init__(self, textures: Path | None = None, *, seed: int = 0) -> None:
        import torch  # lazy: torch + anomalib take seconds to import
        from anomalib.data.utils.generators import PerlinAnomalyGenerator

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = PerlinAnomalyGenerator(anomaly_source_path=None, probability=1.0)
        if textures is not None:
            # anomalib would list anomaly_source_path in file-system order and by lower-case suffix only (a DTD copy
            # with .JPG files would look empty): list the textures ourselves, sorted, so that a texture index means
            # the same file everywhere, and only in the formats its reader (torchvision.io.read_image) decodes
            self.generator.anomaly_source_paths = sorted(
                p for p in Path(textures).rglob("*") if p.is_file() and is_image_file(p)
                and p.suffix.lower() in TEXTURE_EXTENSIONS)

    @property
    def n_textures(self) -> int:
        return len(self.generator.anomaly_source_paths)

    def __call__(self, image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            tensor = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div(255.0)
            augmented, mask = self.generator(tensor)
        mask = mask[0].numpy() > 0.5
        augmented = np.rint(augmented.clamp(0, 1).mul(255.0).permute(1, 2, 0).numpy()).astype(np.uint8)
        return np.where(mask[..., None], augmented, image), mask
