"""``anoseg predict``: anomaly maps, binary masks and overlays for new images — what a factory line runs.

The model comes from a training checkpoint or from an exported ONNX file with its JSON sidecar (``anoseg export``).
The decision threshold is ``--threshold`` or the pixel F1-max threshold that ``anoseg eval`` stored for the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from anoseg.errors import AnosegError
from anoseg.io import write_with
from anoseg.log import console, warn
from anoseg.paths import run_of_checkpoint

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def collect_images(sources: list[Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in folders."""
    found: list[Path] = []
    for source in sources:
        if source.is_dir():
            found += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                            and not p.name.startswith("."))
        elif source.is_file():
            found.append(source)
        else:
            raise AnosegError(f"no such image or folder: {source}")
    if not found:
        raise AnosegError(f"no images found in {', '.join(map(str, sources))}")
    return found


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax over the class axis."""
    exp = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def _unique_stem(path: Path, used: set[str]) -> str:
    """The output name of an image: its stem, prefixed by its folder when another image already took the stem."""
    stem = path.stem if path.stem not in used else f"{path.parent.name}_{path.stem}"
    used.add(stem)
    return stem


def stored_threshold(run: Path) -> float | None:
    """The mean pixel F1-max threshold over the categories of the run's ``metrics.json``, if eval wrote one."""
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        return None
    categories = json.loads(metrics_file.read_text()).get("categories", {})
    values = [c["pixel_threshold"] for c in categories.values() if c.get("pixel_threshold") is not None]
    return float(np.mean(values)) if values else None


def load_predictor(checkpoint: Path | None, model_file: Path | None, device: str = "auto"
                   ) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """``(run, meta)``: ``run(float32 NCHW) → logits NCHW`` and the metadata (image_size, mean, std, threshold)."""
    if model_file is not None:
        return _onnx_predictor(model_file)
    import torch

    from anoseg.engine.checkpoint import build_model, load_checkpoint, resolve_device

    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt).to(resolve_device(device))
    meta = {**ckpt["meta"], "model": ckpt["model"], "threshold": stored_threshold(run_of_checkpoint(checkpoint))}

    def predict_torch(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(next(model.parameters()).device)
            return model(x).float().cpu().numpy()

    return predict_torch, meta


def _onnx_predictor(model_file: Path):
    sidecar = model_file.with_suffix(".json")
    if not model_file.is_file():
        raise AnosegError(f"model file not found: {model_file}")
    if not sidecar.is_file():
        raise AnosegError(f"{model_file} has no sidecar {sidecar} (written by `anoseg export`)")
    import onnxruntime

    meta = json.loads(sidecar.read_text())
    try:
        session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise AnosegError(f"cannot load {model_file}: {str(exc).splitlines()[0]}") from None
    name = session.get_inputs()[0].name
    return (lambda batch: session.run(None, {name: batch})[0]), meta


def predict(sources: list[Path], *, checkpoint: Path | None = None, model_file: Path | None = None,
            threshold: float | None = None, out: Path = Path("outputs/predict"), device: str = "auto") -> list[dict]:
    """Write ``<stem>_mask.png`` (0/255) and ``<stem>_overlay.png`` per image and ``predictions.csv``; print scores.

    Road/scene checkpoints (``meta.task`` road/scene) write ``<stem>_road.png`` / ``<stem>_classes.png`` instead
    (see ``_predict_dense``).

    Example:
        >>> predict([Path("line/cam0")], checkpoint=Path("outputs/demo/seas/lfd/all/last.pt"))
    """
    import pandas as pd
    from PIL import Image

    from anoseg.data.images import read_image
    from anoseg.engine.visual import overlay_strip

    run, meta = load_predictor(checkpoint, model_file, device)
    files = collect_images(sources)
    if meta.get("task", "anomaly") != "anomaly":
        if threshold is not None:
            warn("--threshold is for anomaly models; road/scene models write probabilities or class maps")
        return _predict_dense(files, run, meta, out)
    threshold = threshold if threshold is not None else meta.get("threshold")
    if threshold is None:
        raise AnosegError("no decision threshold: run `anoseg eval` on this run first, or pass --threshold")
    height, width = meta["image_size"]
    mean = np.array(meta["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.array(meta["std"], np.float32).reshape(1, 3, 1, 1)
    results, used = [], set()
    for path in files:
        original = read_image(path)
        resized = np.asarray(Image.fromarray(original).resize((width, height), Image.Resampling.BILINEAR))
        batch = ((resized.transpose(2, 0, 1)[None].astype(np.float32) / 255.0) - mean) / std
        logits = run(np.ascontiguousarray(batch, dtype=np.float32))[0]
        anomaly = softmax(logits)[1].astype(np.float32)
        # back to the original size for the mask a person or a machine acts on
        full = np.asarray(Image.fromarray(anomaly).resize(original.shape[1::-1], Image.Resampling.BILINEAR))
        mask = full >= threshold
        stem = _unique_stem(path, used)
        write_with(out / f"{stem}_mask.png", Image.fromarray((mask * 255).astype(np.uint8)).save)
        write_with(out / f"{stem}_overlay.png", Image.fromarray(overlay_strip(original, full)).save)
        results.append({"image": str(path), "score": float(anomaly.max()), "defect_fraction": float(mask.mean()),
                        "mask": str(out / f"{stem}_mask.png")})
        console.print(f"{path}  score {anomaly.max():.4f}  defect pixels {100 * mask.mean():.2f}%", highlight=False)
    frame = pd.DataFrame(results)
    write_with(out / "predictions.csv", lambda tmp: frame.to_csv(tmp, index=False))
    console.print(f"threshold {threshold:.4f}; wrote {len(results)} masks and overlays to {out}")
    return results


def _predict_dense(files: list[Path], run: Callable[[np.ndarray], np.ndarray], meta: dict, out: Path) -> list[dict]:
    """Road/scene models at native resolution (padded to a multiple of 32, or resized to the run's ``image_size``).

    Two classes (road): ``<stem>_road.png``, the road probability × 255 as 8-bit gray (the KITTI devkit's submission
    encoding). More classes: ``<stem>_classes.png``, a palette PNG whose pixel values are the class ids and whose
    colours are the dataset's. Plus ``<stem>_overlay.png`` and ``predictions.csv``.
    """
    import pandas as pd
    from PIL import Image

    from anoseg.data.images import read_image
    from anoseg.data.scenes.labels import class_palette, colourize
    from anoseg.engine.evaluate_scene import dense_logits
    from anoseg.engine.visual import blend, overlay_strip, strip

    names = list(meta.get("class_names") or [])
    palette = class_palette(names)
    results, used = [], set()
    for path in files:
        image = read_image(path)
        logits = dense_logits(run, image, meta["mean"], meta["std"], meta.get("image_size") or None)
        if not names:
            names = [str(i) for i in range(len(logits))]
            palette = class_palette(names)
        stem = _unique_stem(path, used)
        if len(names) == 2:
            probability = softmax(logits)[1]
            target = out / f"{stem}_road.png"
            encoded = np.clip(probability * 255.0 + 0.5, 0, 255).astype(np.uint8)
            write_with(target, Image.fromarray(encoded).save)
            write_with(out / f"{stem}_overlay.png", Image.fromarray(overlay_strip(image, probability)).save)
            result = {"image": str(path), "road_fraction": float((probability >= 0.5).mean()), "mask": str(target)}
            console.print(f"{path}  road pixels {100 * result['road_fraction']:.2f}%", highlight=False)
        else:
            classes = logits.argmax(axis=0).astype(np.uint8)
            target = out / f"{stem}_classes.png"
            picture = Image.fromarray(classes)
            picture.putpalette(palette.reshape(-1).tolist())
            write_with(target, picture.save)
            coloured = blend(image, colourize(classes, palette))
            write_with(out / f"{stem}_overlay.png", Image.fromarray(strip([image, coloured])).save)
            counts = np.bincount(classes.reshape(-1), minlength=len(names))
            top = int(counts.argmax())
            result = {"image": str(path), "dominant_class": names[top],
                      "dominant_fraction": float(counts[top] / classes.size), "mask": str(target)}
            console.print(f"{path}  mostly {names[top]} ({100 * result['dominant_fraction']:.1f}%)", highlight=False)
        results.append(result)
    frame = pd.DataFrame(results)
    write_with(out / "predictions.csv", lambda tmp: frame.to_csv(tmp, index=False))
    console.print(f"wrote {len(results)} {'road maps' if len(names) == 2 else 'class maps'} and overlays to {out}")
    return results
