"""``anoseg predict`` throughput vs its floor: decoding the same images and running the network on them in batches.

For each backend (torch eager from a checkpoint, ONNX Runtime from a dynamic ``anoseg export``), one round times:

* the floor: in one process, decode + resize every image (``read_image``) and run the network in batches of
  ``--batch-size`` (``anoseg.engine.inference``: the same normalisation and runner predict uses); nothing is written;
* ``predict`` as a user runs it (``prepare`` + ``write_predictions``: model load, decoding workers, batched forward,
  masks and predictions.csv written and published), with overlays and with ``overlays=False``.

Rounds interleave the variants (A, B, C, A, B, C, ...). Printed: min and median seconds of each, and predict's
throughput as a fraction of the floor's (floor time / predict time; 1.0 = at the floor), from the mins and from the
medians. The machine is shared: compare the ratios, not the seconds.

    python bench/predict.py [--images 96] [--size 512] [--model lfd] [--batch-size 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anoseg.constants import CHECKPOINT_FORMAT
from anoseg.data.images import read_image
from anoseg.engine.checkpoint import build_model, save_checkpoint
from anoseg.engine.inference import normalise, onnx_runner, ort_session, resize, softmax, torch_runner
from anoseg.engine.predict import prepare, write_predictions
from anoseg.export import export_model
from anoseg.jobs import PredictJob
from anoseg.models import create_model

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_images(folder: Path, count: int, size: int) -> list[Path]:
    """Textured RGB PNGs (smooth shading + noise, like a photographed part): realistic to decode and compress."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    paths = []
    for i in range(count):
        base = 90 + 80 * np.outer(ramp, ramp[::-1]) + 20 * np.sin(ramp * (6 + i % 5))[None]
        image = base[..., None] + rng.normal(0, 12, (size, size, 3))
        path = folder / f"{i:04d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def make_checkpoint(run: Path, model: str, size: int) -> Path:
    torch.manual_seed(0)
    meta = {"dataset": "bench", "task": "anomaly", "generator": "none", "trained_on": "all", "categories": ["part"],
            "image_size": [size, size], "mean": list(MEAN), "std": list(STD), "protocol": "clean", "seed": 0,
            "class_names": ["good", "defect"]}
    checkpoint = {"format": CHECKPOINT_FORMAT, "model": model, "num_classes": 2, "epoch": 1, "iteration": 1,
                  "state_dict": create_model(model).state_dict(), "optimizer": {}, "meta": meta, "history": []}
    save_checkpoint(run / "last.pt", checkpoint)
    return run / "last.pt"


def floor(files: list[Path], run, size: int, batch_size: int) -> float:
    """Seconds to decode + resize every image and run the network on them in batches (nothing written)."""
    start = time.perf_counter()
    for first in range(0, len(files), batch_size):
        batch = np.stack([resize(read_image(f), (size, size)) for f in files[first:first + batch_size]])
        softmax(run(normalise(batch, MEAN, STD)), axis=1)[:, 1]
    return time.perf_counter() - start


def predict_once(folder: Path, out: Path, batch_size: int, overlays: bool, **model) -> float:
    start = time.perf_counter()
    write_predictions(prepare(PredictJob((folder,), threshold=0.5, out=out, device="cpu", batch_size=batch_size,
                                         overlays=overlays, **model)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--image-size", type=int, default=512, help="side of the input PNGs")
    parser.add_argument("--size", type=int, default=256, help="the network's input side")
    parser.add_argument("--model", default="lfd")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        files = write_images(folder, args.images, args.image_size)
        checkpoint = make_checkpoint(tmp / "run", args.model, args.size)
        backends = {"torch": ({"checkpoint": checkpoint},
                              torch_runner(build_model(torch.load(checkpoint, weights_only=True)), "cpu"))}
        if not args.no_onnx:
            info = export_model(checkpoint, "onnx", dynamic=True, threshold=0.5)
            backends["onnx"] = ({"model_file": Path(info["path"])}, onnx_runner(ort_session(info["path"])))
        for _model, run in backends.values():  # untimed: first calls create the kernels' caches
            floor(files[:args.batch_size], run, args.size, args.batch_size)
        times: dict[str, list[float]] = {}
        n = 0
        for _ in range(args.rounds):
            for backend, (model, run) in backends.items():
                times.setdefault(f"{backend} floor", []).append(floor(files, run, args.size, args.batch_size))
                for overlays in (True, False):
                    n += 1
                    label = f"{backend} predict" + ("" if overlays else " --no-overlays")
                    times.setdefault(label, []).append(
                        predict_once(folder, tmp / f"out{n}", args.batch_size, overlays, **model))
    print(f"{args.images} PNGs of {args.image_size}² → {args.model} at {args.size}², batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads, {args.rounds} interleaved rounds")
    for label, values in times.items():
        print(f"  {label:<30} min {min(values):7.2f} s  median {statistics.median(values):7.2f} s  "
              f"({args.images / min(values):.1f} images/s at best)")
    for backend in backends:
        base = times[f"{backend} floor"]
        for suffix in ("", " --no-overlays"):
            values = times[f"{backend} predict{suffix}"]
            print(f"  {backend} predict{suffix}: {min(base) / min(values):.2f} of the floor's throughput (min), "
                  f"{statistics.median(base) / statistics.median(values):.2f} (median)")


if __name__ == "__main__":
    main()
