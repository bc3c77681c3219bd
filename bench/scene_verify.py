"""Scene-data verification cost: the full decode ``prepare`` now does (``validation.inspect_file``) vs the header and
chunk-CRC check the scene stage did before (``PIL.Image.verify``).

Both sides check the same image/label PNG pairs (Cityscapes-like: an RGB photo-like image and an ``L`` label map) in
the same run, interleaved A, B, A, B…; min and median seconds per pass and their ratio are printed (the machine is
shared: compare the ratio, not the seconds). One thread; ``prepare`` spreads the files over 4 threads.

    python bench/scene_verify.py [--pairs 20] [--width 2048] [--height 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from anoseg.data.images import exif_orientation
from anoseg.data.validation import inspect_file


def header_check(path: Path) -> tuple[str, tuple[int, int]]:
    """The scene stage's former check: mode and size from the header, then ``verify()`` (chunk CRCs, truncation)."""
    with Image.open(path) as handle:
        mode, size = handle.mode, handle.size
        handle.verify()
    with Image.open(path) as handle:
        if exif_orientation(handle) in (5, 6, 7, 8):
            size = size[::-1]
    return mode, size


def full_decode(path: Path) -> tuple[str, tuple[int, int]]:
    info = inspect_file(path, "unreadable_image")
    return info.mode, info.size


def make_pairs(root: Path, n: int, width: int, height: int) -> list[tuple[Path, Path]]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    pairs = []
    for i in range(n):
        # smooth gradients plus noise: compresses like a photo, not like a flat or a random image
        base = (xx * (1 + i % 3) // 8 + yy // 4) % 256
        image = np.stack([base, (base + 85) % 256, (base + 170) % 256], axis=2).astype(np.int16)
        image = np.clip(image + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
        label = ((xx // 64 + yy // 64 + i) % 34).astype(np.uint8)
        pairs.append((root / f"{i:03d}_leftImg8bit.png", root / f"{i:03d}_gtFine_labelIds.png"))
        Image.fromarray(image).save(pairs[-1][0])
        Image.fromarray(label).save(pairs[-1][1])
    return pairs


def one_pass(check, pairs: list[tuple[Path, Path]]) -> float:
    start = time.perf_counter()
    for image, label in pairs:
        check(image)
        check(label)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = make_pairs(Path(tmp), args.pairs, args.width, args.height)
        for image, label in pairs[:2]:  # both sides agree on what they describe
            assert header_check(image) == full_decode(image) and header_check(label) == full_decode(label)
        times: dict[str, list[float]] = {"header": [], "full decode": []}
        for _ in range(args.rounds):
            times["header"].append(one_pass(header_check, pairs))
            times["full decode"].append(one_pass(full_decode, pairs))
    print(f"{args.pairs} pairs of {args.width}x{args.height} PNGs, {args.rounds} interleaved rounds, one thread")
    for name, values in times.items():
        print(f"{name:>12}: min {min(values):.3f} s  median {statistics.median(values):.3f} s per pass")
    ratio_min = min(times["full decode"]) / min(times["header"])
    ratio_median = statistics.median(times["full decode"]) / statistics.median(times["header"])
    print(f"ratio full decode / header check: {ratio_min:.1f}x (min), {ratio_median:.1f}x (median); "
          f"full decode per pair {1000 * min(times['full decode']) / args.pairs:.0f} ms (min)")


if __name__ == "__main__":
    main()
