"""Training data throughput: anoseg's decode-once uint8 cache vs decoding and resizing the PNGs every epoch.

Both sides serve the same (image, target) pairs of the built-in demo data at the same size in the same run; the
ratio is what to compare (the machine is shared).

    python bench/dataloader.py [--size 256] [--epochs 3] [--workers 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anoseg.data.build import build_manifest
from anoseg.data.dataset import SegmentationDataset, load_cached
from anoseg.data.images import read_image
from anoseg.data.protocols import resized_mask, train_target
from anoseg.data.synth import make_demo_data


class DecodeEveryTime(torch.utils.data.Dataset):
    """The naive loader: open, convert, resize image and mask on every access (what the reference code does)."""

    def __init__(self, rows, size: tuple[int, int]) -> None:
        self.rows, self.size = rows.reset_index(drop=True), size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        height, width = self.size
        image = Image.fromarray(read_image(self.rows.at[i, "image"])).resize((width, height), Image.Resampling.BILINEAR)
        mask = resized_mask(self.rows.at[i, "mask"], self.size, "clean")
        return (torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1),
                torch.from_numpy(train_target(mask, "clean")).long())


def epochs_per_second(dataset, epochs: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, num_workers=workers)
    start = time.perf_counter()
    for _ in range(epochs):
        for _batch in loader:
            pass
    return epochs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    size = (args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_demo_data(Path(tmp) / "data", seed=0)
        frame, _ = build_manifest(dataset="demo", layout="mvtec_ad", data_root=Path(paths["data_root"]),
                                  categories=None, generated_root=Path(paths["generated_root"]), generator="seas")
        rows = frame[frame["split"] == "train"]
        start = time.perf_counter()
        cached = load_cached(rows, size, Path(tmp) / "cache")
        build = time.perf_counter() - start
        fast = epochs_per_second(SegmentationDataset(cached), args.epochs, args.workers)
        slow = epochs_per_second(DecodeEveryTime(rows, size), args.epochs, args.workers)
    print(f"{len(rows)} training images at {args.size}², {args.epochs} epochs, {args.workers} workers")
    print(f"cache build (once):      {build:.2f} s")
    print(f"decode every epoch:      {1 / slow:.3f} s/epoch")
    print(f"anoseg cache:            {1 / fast:.3f} s/epoch")
    print(f"ratio: the cache serves an epoch {fast / slow:.1f}x faster")


if __name__ == "__main__":
    main()
