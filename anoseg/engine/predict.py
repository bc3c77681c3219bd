"""``anoseg predict``: anomaly maps, binary masks and overlays for new images — what a factory line runs.

The model comes from a training checkpoint or from an exported ONNX file with its JSON sidecar (``anoseg export``).
The decision threshold is ``--threshold`` or the pixel F1-max threshold that ``anoseg eval`` computed for the very
weights loaded (``anoseg.engine.results``). Outputs mirror the inputs' folders and never overwrite another run's.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from anoseg.errors import AnosegError
from anoseg.io import write_with
from anoseg.log import console, warn
from anoseg.paths import run_of_checkpoint

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
#: Folders of a dataset that hold ground-truth masks, not images to score (MVTec/VisA/generic layouts).
MASK_FOLDERS = {"ground_truth", "gt", "mask", "masks"}
DEFAULT_ROOT = Path("outputs/predict")


def collect_images(sources: list[Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in folders; mask folders (``MASK_FOLDERS``) below a
    given folder are not entered, so a dataset root can be given as is. Raises ``AnosegError`` when a source is
    missing or nothing is found."""
    found: list[Path] = []
    for source in sources:
        if source.is_dir():
            for folder, subfolders, names in os.walk(source):
                subfolders[:] = sorted(d for d in subfolders if d.lower() not in MASK_FOLDERS
                                       and not d.startswith("."))
                found += [Path(folder) / n for n in sorted(names)
                          if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith(".")]
        elif source.is_file():
            found.append(source)
        else:
            raise AnosegError(f"no such image or folder: {source}")
    found = list(dict.fromkeys(found))  # a file named twice (or in two overlapping sources) is scored once
    if not found:
        raise AnosegError(f"no images found in {', '.join(map(str, sources))}")
    return found


def output_names(files: list[Path], sources: list[Path]) -> dict[Path, Path]:
    """Each input's output stem, relative to the output folder: its path relative to the common root of the inputs
    (the given folders, and the folders of the given files), without the suffix — or with it where two images of
    one folder share a stem (``a.png`` and ``a.jpg``). Distinct by construction; ``AnosegError`` if not.

    Example:
        >>> output_names([Path("d/bottle/test/good/000.png"), Path("d/cable/test/good/000.png")], [Path("d")])
        {PosixPath('d/bottle/test/good/000.png'): PosixPath('bottle/test/good/000'), ...}
    """
    bases = [s.resolve() if s.is_dir() else s.resolve().parent for s in sources]
    root = Path(os.path.commonpath(bases))
    relative = {f: f.resolve().relative_to(root) for f in files}
    stems = Counter((r.parent, r.stem) for r in relative.values())
    names = {f: r.parent / (r.stem if stems[(r.parent, r.stem)] == 1 else r.name) for f, r in relative.items()}
    if len(set(names.values())) != len(names):
        raise AnosegError("two inputs map to one output name; give them in separate predict runs")
    return names


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax over the class axis."""
    exp = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def check_threshold(threshold: float | None) -> None:
    """``--threshold`` must be a finite probability in [0, 1]; else ``AnosegError``."""
    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise AnosegError(f"--threshold must be a number in [0, 1] (a defect probability), not {threshold}")


def load_predictor(checkpoint: Path | None, model_file: Path | None, device: str = "auto"
                   ) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """``(run, meta)``: ``run(float32 NCHW) → logits NCHW`` and the metadata (image_size, mean, std, ``thresholds``:
    the ``results.Thresholds`` computed for exactly these weights or None, and ``eval_command`` to compute them)."""
    if model_file is not None:
        return _onnx_predictor(model_file)
    import torch

    from anoseg.engine import results
    from anoseg.engine.checkpoint import build_model, load_checkpoint, resolve_device

    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt).to(resolve_device(device))
    run_folder = run_of_checkpoint(checkpoint)
    weights = results.weights_sha256(ckpt)
    meta = {**ckpt["meta"], "model": ckpt["model"], "thresholds": results.thresholds_for(run_folder, weights),
            "eval_command": results.eval_command(ckpt, run_folder),
            "source": f"{checkpoint} (epoch {ckpt.get('epoch')}, weights {weights[:12]})"}

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

    from anoseg.engine.results import Thresholds

    meta = json.loads(sidecar.read_text())
    if meta.get("thresholds"):  # per-category thresholds of the eval of the exported weights (anoseg export)
        epoch = (meta.get("source") or {}).get("epoch")
        meta["thresholds"] = Thresholds(Path(str(meta.get("threshold_source"))), epoch, str(meta.get("weights_sha256")),
                                        dict(meta["thresholds"]), meta.get("threshold"))
    else:
        meta["thresholds"] = None
    meta["eval_command"] = "anoseg eval (for the checkpoint it came from) and `anoseg export` again"
    meta["source"] = str(model_file)
    try:
        session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise AnosegError(f"cannot load {model_file}: {str(exc).splitlines()[0]}") from None
    name = session.get_inputs()[0].name
    return (lambda batch: session.run(None, {name: batch})[0]), meta


def predict(sources: list[Path], *, checkpoint: Path | None = None, model_file: Path | None = None,
            threshold: float | None = None, out: Path | None = None, device: str = "auto",
            category: str | None = None, overwrite: bool = False) -> list[dict]:
    """Write ``<name>_mask.png`` (0/255) and ``<name>_overlay.png`` per image and ``predictions.csv``; print scores.

    ``<name>`` mirrors each input's path relative to the common root of the inputs (``output_names``). Outputs go to
    ``out`` — refused when it is not empty, unless ``overwrite`` and it holds an earlier predict run — or, by default,
    to a new folder ``outputs/predict/<date-time>``. Everything is written to a hidden staging folder that replaces
    ``out`` at the end: ``predictions.csv`` always lists exactly the masks beside it. Images that cannot be read are
    skipped, listed in ``skipped.csv`` and warned about; the run fails (writing nothing) if none can be read.

    The threshold is ``threshold``, else the one ``anoseg eval`` computed for the very weights loaded: for a unified
    model the ``category``'s own, else the mean of its categories' (and says so). Raises ``AnosegError`` when there is
    none (naming the ``anoseg eval`` command to run) or ``threshold`` is not in [0, 1].

    Road/scene checkpoints (``meta.task`` road/scene) write ``<name>_road.png`` / ``<name>_classes.png`` instead
    (see ``_predict_dense``).

    Example:
        >>> predict([Path("line/cam0")], checkpoint=Path("outputs/demo/seas/lfd/all/last.pt"), category="disk")
    """
    import pandas as pd
    from PIL import Image

    from anoseg.data.images import read_image
    from anoseg.engine import results as eval_results
    from anoseg.engine.visual import overlay_strip

    check_threshold(threshold)
    run, meta = load_predictor(checkpoint, model_file, device)
    files = collect_images(sources)
    names = output_names(files, sources)
    out = _output_folder(out, overwrite, files)
    dense = meta.get("task", "anomaly") != "anomaly"
    if dense:
        if threshold is not None or category is not None:
            warn("--threshold and --category are for anomaly models; road/scene models write probabilities or "
                 "class maps")
    elif threshold is not None:
        why = "given with --threshold"
    elif meta.get("thresholds") is None:
        raise AnosegError(f"no decision threshold computed for {meta['source']}: run `{meta['eval_command']}` "
                          "first, or pass --threshold")
    else:
        threshold, why = meta["thresholds"].pick(category)
    staging = eval_results.staging_dir(out)
    try:
        if dense:
            rows, skipped = _predict_dense(files, names, run, meta, staging, out)
        else:
            console.print(f"threshold {threshold:.4f}: {why}", highlight=False)
            rows, skipped = [], []
            height, width = meta["image_size"]
            mean = np.array(meta["mean"], np.float32).reshape(1, 3, 1, 1)
            std = np.array(meta["std"], np.float32).reshape(1, 3, 1, 1)
            for path in files:
                try:
                    original = read_image(path)
                except AnosegError as exc:
                    skipped.append({"image": str(path), "reason": str(exc)})
                    continue
                resized = np.asarray(Image.fromarray(original).resize((width, height), Image.Resampling.BILINEAR))
                batch = ((resized.transpose(2, 0, 1)[None].astype(np.float32) / 255.0) - mean) / std
                logits = run(np.ascontiguousarray(batch, dtype=np.float32))[0]
                anomaly = softmax(logits)[1].astype(np.float32)
                # back to the original size for the mask a person or a machine acts on
                full = np.asarray(Image.fromarray(anomaly).resize(original.shape[1::-1], Image.Resampling.BILINEAR))
                mask = full >= threshold
                name = names[path]
                mask_file, overlay_file = f"{name}_mask.png", f"{name}_overlay.png"
                write_with(staging / mask_file, Image.fromarray((mask * 255).astype(np.uint8)).save)
                picture = Image.fromarray(overlay_strip(original, full, outline_mask=mask))
                write_with(staging / overlay_file, picture.save)
                rows.append({"image": str(path), "score": float(anomaly.max()), "defect_fraction": float(mask.mean()),
                             "threshold": threshold, "mask": str(out / mask_file),
                             "overlay": str(out / overlay_file)})
                console.print(f"{path}  score {anomaly.max():.4f}  defect pixels {100 * mask.mean():.2f}%",
                              highlight=False)
        if not rows:
            raise AnosegError(f"none of the {len(files)} image(s) could be read (first: {skipped[0]['reason']})")
        frame = pd.DataFrame(rows)
        write_with(staging / "predictions.csv", lambda tmp: frame.to_csv(tmp, index=False))
        if skipped:
            listed = pd.DataFrame(skipped)
            write_with(staging / "skipped.csv", lambda tmp: listed.to_csv(tmp, index=False))
        eval_results.publish(staging, out)
    finally:
        eval_results.discard(staging)
    if skipped:
        warn(f"skipped {len(skipped)} unreadable image(s), listed in {out / 'skipped.csv'}: "
             + "; ".join(s["reason"] for s in skipped[:3]) + (" …" if len(skipped) > 3 else ""))
    what = "masks and overlays" if not dense else "maps and overlays"
    console.print(f"wrote {len(rows)} {what} and predictions.csv to {out}", highlight=False)
    return rows


def _output_folder(out: Path | None, overwrite: bool, files: list[Path]) -> Path:
    """The folder a predict run writes: ``out`` checked (see ``predict``), or a new dated one under the default root."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out, n = DEFAULT_ROOT / stamp, 1
        while out.exists():
            n += 1
            out = DEFAULT_ROOT / f"{stamp}-{n}"
        return out
    if out.exists() and not out.is_dir():
        raise AnosegError(f"--out {out} is a file, not a folder")
    resolved = out.resolve()
    if any(resolved == f.resolve().parent or resolved in f.resolve().parents for f in files):
        raise AnosegError(f"--out {out} contains input images; choose a folder outside the inputs")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise AnosegError(f"--out {out} is not empty; choose a new folder or pass --overwrite to replace it")
        if not (out / "predictions.csv").is_file():
            raise AnosegError(f"--out {out} holds files that are not an anoseg predict run; --overwrite only "
                              "replaces an earlier predict output")
    return out


def _predict_dense(files: list[Path], names: dict[Path, Path], run: Callable[[np.ndarray], np.ndarray], meta: dict,
                   staging: Path, out: Path) -> tuple[list[dict], list[dict]]:
    """Road/scene models at native resolution (padded to a multiple of 32, or resized to the run's ``image_size``).

    Two classes (road): ``<name>_road.png``, the road probability × 255 as 8-bit gray (the KITTI devkit's submission
    encoding). More classes: ``<name>_classes.png``, a palette PNG whose pixel values are the class ids and whose
    colours are the dataset's. Plus ``<name>_overlay.png``. Written into ``staging`` (published as ``out``); returns
    the rows of ``predictions.csv`` and of the skipped images.
    """
    from PIL import Image

    from anoseg.data.images import read_image
    from anoseg.data.scenes.labels import class_palette, colourize
    from anoseg.engine.evaluate_scene import dense_logits
    from anoseg.engine.visual import blend, overlay_strip, strip

    class_names = list(meta.get("class_names") or [])
    palette = class_palette(class_names)
    results, skipped = [], []
    for path in files:
        try:
            image = read_image(path)
        except AnosegError as exc:
            skipped.append({"image": str(path), "reason": str(exc)})
            continue
        logits = dense_logits(run, image, meta["mean"], meta["std"], meta.get("image_size") or None)
        if not class_names:
            class_names = [str(i) for i in range(len(logits))]
            palette = class_palette(class_names)
        name = names[path]
        if len(class_names) == 2:
            probability = softmax(logits)[1]
            target = f"{name}_road.png"
            encoded = np.clip(probability * 255.0 + 0.5, 0, 255).astype(np.uint8)
            write_with(staging / target, Image.fromarray(encoded).save)
            write_with(staging / f"{name}_overlay.png", Image.fromarray(overlay_strip(image, probability)).save)
            result = {"image": str(path), "road_fraction": float((probability >= 0.5).mean()),
                      "mask": str(out / target)}
            console.print(f"{path}  road pixels {100 * result['road_fraction']:.2f}%", highlight=False)
        else:
            classes = logits.argmax(axis=0).astype(np.uint8)
            target = f"{name}_classes.png"
            picture = Image.fromarray(classes)
            picture.putpalette(palette.reshape(-1).tolist())
            write_with(staging / target, picture.save)
            coloured = blend(image, colourize(classes, palette))
            write_with(staging / f"{name}_overlay.png", Image.fromarray(strip([image, coloured])).save)
            counts = np.bincount(classes.reshape(-1), minlength=len(class_names))
            top = int(counts.argmax())
            result = {"image": str(path), "dominant_class": class_names[top],
                      "dominant_fraction": float(counts[top] / classes.size), "mask": str(out / target)}
            console.print(f"{path}  mostly {class_names[top]} ({100 * result['dominant_fraction']:.1f}%)",
                          highlight=False)
        results.append(result)
    return results, skipped
