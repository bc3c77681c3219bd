"""``anoseg predict``: anomaly maps, binary masks and overlays for new images — what a factory line runs.

The model comes from a training checkpoint or from an exported ONNX file with its JSON sidecar (``anoseg export``).
The decision threshold is ``--threshold`` or the threshold of an operating point that ``anoseg eval`` fixed for the
very weights loaded (``anoseg.engine.results``): the eval's deployed point, or ``--operating-point``'s; the console
says which point and where its threshold was chosen (validation, or test: an oracle). Outputs mirror the inputs'
folders and never overwrite another run's.

The line runs as a pipeline: images are decoded and resized in ``DataLoader`` worker processes, the network runs on
batches (``anoseg.engine.inference``; torch or ONNX Runtime), and masks and overlays are encoded and written by a
thread pool while the next batch runs. ``prepare`` checks everything and loads the model; ``write_predictions`` runs
the line. Nothing here prints: the stage (``anoseg.stages.run_predict``) shows progress and results.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from anoseg.constants import ANOMALY, EXPORT_SCHEMA, IMAGE_EXTENSIONS, SIZE_MULTIPLE
from anoseg.data.images import read_image
from anoseg.engine import results
from anoseg.engine.inference import (
    CUDA_PROVIDER,
    Runner,
    dense_logits,
    normalise,
    onnx_runner,
    ort_has_cuda,
    ort_session,
    resize,
    softmax,
)
from anoseg.engine.rundir import run_lock
from anoseg.errors import AnosegError
from anoseg.io import NAME_ERRORS, TEXT_ENCODING, check_output, expect, is_number, read_json, write_with
from anoseg.jobs import PredictJob
from anoseg.paths import run_of_checkpoint

#: Folders of a dataset that hold ground-truth masks, not images to score (MVTec/VisA/generic layouts).
DEFAULT_ROOT = Path("outputs/predict")
#: Images per forward pass when not given: beyond 8 a CPU gains no throughput, only memory; a GPU wants more.
DEFAULT_BATCH = {"cpu": 8, "cuda": 32}
#: Overlays are pictures to look at: JPEG (quality 90, no chroma subsampling, so the 1-pixel outline stays sharp)
#: encodes ~15× faster than even the fastest PNG level and is 3× smaller; masks, which machines read, stay PNG.
OVERLAY_SUFFIX = "_overlay.jpg"
OVERLAY_JPEG = {"format": "JPEG", "quality": 90, "subsampling": 0}
#: zlib level of mask PNGs: lossless at any level; 1 encodes twice as fast as PIL's default 6, files a little larger.
MASK_PNG_LEVEL = 1
#: Inputs below this count are decoded in the main process: starting worker processes would cost more.
MIN_IMAGES_FOR_WORKERS = 16


@dataclass
class Prediction:
    """A checked predict job, its model loaded: what ``write_predictions`` runs."""

    job: PredictJob
    run: Runner
    meta: dict[str, Any]
    files: list[Path]
    names: dict[Path, Path]
    out: Path
    threshold: float | None
    why: str  # which threshold, and why (a sentence for the user)
    batch_size: int
    notes: list[str] = field(default_factory=list)
    point: str = ""  # the operating point and where it was chosen ("image FPR ≤ 1 % on validation"); "" if given

    @property
    def dense(self) -> bool:
        """A road/scene model: probabilities or class maps at native resolution, no threshold."""
        return self.meta.get("task", ANOMALY) != ANOMALY


@dataclass
class PredictResult:
    """What a predict run wrote: one row of ``predictions.csv`` per image, the skipped images, the folder."""

    rows: list[dict]
    skipped: list[dict]
    out: Path


def collect_images(sources: list[Path], masks: list[Path] | None = None) -> list[Path]:
    """Image files named directly or found (recursively, sorted, following symbolic links to folders, each real folder
    once, so a link loop ends) in folders. In given folders, mask folders and mask
    files by the layouts' naming rules (``anoseg.data.layouts.is_mask_folder`` / ``is_mask_file``: ``ground_truth/``,
    ``label/``, ``*_mask``, ``*_GT``, ``*_label`` ...) are not taken as images, so a dataset root can be given as is;
    the mask files passed over are appended to ``masks``. Raises ``AnosegError`` when a source is missing or nothing
    is found."""
    from anoseg.data.layouts import is_mask_file, is_mask_folder

    found: list[Path] = []
    for source in sources:
        if source.is_dir():
            seen = {os.path.realpath(source)}  # symbolic links to folders are followed, each real folder once
            for folder, subfolders, names in os.walk(source, followlinks=True):
                subfolders[:] = [d for d in sorted(subfolders) if not is_mask_folder(d) and not d.startswith(".")
                                 and _first_visit(os.path.join(folder, d), seen)]
                images = [Path(folder) / n for n in sorted(names)
                          if Path(n).suffix.lower() in IMAGE_EXTENSIONS and not n.startswith(".")]
                found += [p for p in images if not is_mask_file(p)]
                if masks is not None:
                    masks += [p for p in images if is_mask_file(p)]
        elif source.is_file():
            found.append(source)
        else:
            raise AnosegError(f"no such image or folder: {source}")
    found = list(dict.fromkeys(found))  # a file named twice (or in two overlapping sources) is scored once
    if not found:
        raise AnosegError(f"no images found in {', '.join(map(str, sources))}")
    return found


def _first_visit(folder: str, seen: set[str]) -> bool:
    """Whether the real folder behind ``folder`` is new to ``seen`` (and record it): a link back up the tree (a loop)
    or a second link to one folder is not walked again."""
    real = os.path.realpath(folder)
    if real in seen:
        return False
    seen.add(real)
    return True


def output_names(files: list[Path], sources: list[Path]) -> dict[Path, Path]:
    """Each input's output stem, relative to the output folder: its path relative to the common root of the inputs
    (the given folders, and the folders of the given files), without the suffix — or with it where two images of
    one folder share a stem (``a.png`` and ``a.jpg``). Distinct by construction; ``AnosegError`` if not.

    Example:
        >>> output_names([Path("d/bottle/test/good/000.png"), Path("d/cable/test/good/000.png")], [Path("d")])
        ... # doctest: +SKIP
        {PosixPath('d/bottle/test/good/000.png'): PosixPath('bottle/test/good/000'), ...}
    """
    # the paths as given (made absolute), not their link targets: a linked image or folder keeps its place
    bases = [Path(os.path.abspath(s)) if s.is_dir() else Path(os.path.abspath(s)).parent for s in sources]
    root = Path(os.path.commonpath(bases))
    relative = {f: Path(os.path.abspath(f)).relative_to(root) for f in files}
    stems = Counter((r.parent, r.stem) for r in relative.values())
    names = {f: r.parent / (r.stem if stems[(r.parent, r.stem)] == 1 else r.name) for f, r in relative.items()}
    if len(set(names.values())) != len(names):
        raise AnosegError("two inputs map to one output name; give them in separate predict runs")
    return names




def load_predictor(checkpoint: Path | None, model_file: Path | None, device: str = "auto"
                   ) -> tuple[Runner, dict]:
    """``(run, meta)``: ``run(float32 NCHW) → logits NCHW`` and the metadata (image_size, mean, std, ``thresholds``:
    the ``results.Thresholds`` computed for exactly these weights or None, ``eval_command`` to compute them,
    ``device``). Raises ``AnosegError`` for a missing or unreadable model."""
    if model_file is not None:
        return _onnx_predictor(model_file, device)
    from anoseg.engine.checkpoint import build_model, load_checkpoint, resolve_device
    from anoseg.engine.inference import torch_runner

    ckpt = load_checkpoint(checkpoint)
    target = resolve_device(device)
    run_folder = run_of_checkpoint(checkpoint)
    weights = results.weights_sha256(ckpt)
    meta = {**ckpt["meta"], "model": ckpt["model"], "thresholds": results.thresholds_for(run_folder, weights),
            "eval_command": results.eval_command(ckpt, run_folder), "device": target.type,
            "source": f"{checkpoint} (epoch {ckpt.get('epoch')}, weights {weights[:12]})"}
    return torch_runner(build_model(ckpt), target), meta


def _onnx_predictor(model_file: Path, device: str = "auto") -> tuple[Runner, dict]:
    """An exported ONNX file run by ONNX Runtime: on the GPU (CUDA provider) when ``device`` resolves to CUDA and
    onnxruntime has that provider, else on the CPU; ``AnosegError`` for an explicit ``--device cuda`` without it."""
    import torch

    from anoseg.engine.checkpoint import resolve_device

    target = resolve_device(device)
    if target.type == "cuda" and not ort_has_cuda():
        if device != "auto":
            raise AnosegError(f"--device {device}: this onnxruntime has no CUDAExecutionProvider for {model_file}; "
                              "install onnxruntime-gpu, or use --device cpu")
        target = torch.device("cpu")
    sidecar = model_file.with_suffix(".json")
    if not model_file.is_file():
        raise AnosegError(f"model file not found: {model_file}")
    if not sidecar.is_file():
        raise AnosegError(f"{model_file} has no sidecar {sidecar} (written by `anoseg export`)")
    meta = read_json(sidecar, f"run `anoseg export` again (it rewrites {model_file} and {sidecar.name})",
                     check_sidecar)
    if meta.get("model_sha256") not in (None, results.file_sha256(model_file)):  # older sidecars hold no digest
        raise AnosegError(f"{model_file} and its sidecar {sidecar} are not from the same `anoseg export` (it was "
                          "interrupted between them); run export again")
    if meta.get("thresholds"):  # per-category thresholds of the eval of the exported weights (anoseg export)
        document = {"epoch": (meta.get("source") or {}).get("epoch"), "categories": meta["thresholds"],
                    "mean": meta.get("threshold"), "operating_point": meta.get("operating_point"),
                    "operating_points": meta.get("operating_points")}
        meta["thresholds"] = results.thresholds_from_document(document, Path(str(meta.get("threshold_source"))),
                                                              str(meta.get("weights_sha256")))
    else:
        meta["thresholds"] = None
    meta["eval_command"] = "anoseg eval (for the checkpoint it came from) and `anoseg export` again"
    meta["source"] = str(model_file)
    try:
        session = ort_session(model_file, spin=False, device=str(target))  # decoding and writing share the cores
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise AnosegError(f"cannot load {model_file}: {str(exc).splitlines()[0]}") from None
    # ONNX Runtime falls back to the CPU, quietly, when the CUDA provider cannot start (e.g. CUDA libraries missing)
    meta["device"] = "cuda" if CUDA_PROVIDER in session.get_providers() else "cpu"
    if target.type == "cuda" and meta["device"] != "cuda" and device != "auto":
        raise AnosegError(f"--device {device}: onnxruntime could not start its CUDA provider for {model_file} (are "
                          "the CUDA libraries onnxruntime-gpu needs installed?); use --device cpu")
    shape = list(session.get_inputs()[0].shape)
    meta["image_size"], note = model_input_size(model_file, shape, list(session.get_outputs()[0].shape),
                                                meta.get("image_size"))
    meta["notes"] = [note] if note else []
    return _fixed_batch(onnx_runner(session), shape[0]), meta


def model_input_size(model_file: Path, shape: list, output_shape: list, sidecar_size: Any
                     ) -> tuple[list[int], str | None]:
    """The (height, width) images are resized to for an ONNX model whose input has ``shape`` (``[N, C, H, W]``, each
    an int or a name for a dynamic axis), and a note when that is not the sidecar's ``image_size``.

    A fixed side is the model's own, whatever the sidecar says (the note says so). A dynamic side takes the sidecar's
    value, which must then be a positive multiple of ``SIZE_MULTIPLE``; both sides dynamic and no sidecar size (a
    native-resolution model) gives ``[]``: each image is padded to a multiple of ``SIZE_MULTIPLE``. Raises
    ``AnosegError`` for an input that is not 4-D, a channel count other than 3 (naming the shape the model wants),
    an output with fewer than 2 classes, or a dynamic side with no usable sidecar size.
    """
    wanted = "[" + ", ".join(str(d) for d in shape) + "]"
    if len(shape) != 4:
        raise AnosegError(f"{model_file} takes input of shape {wanted}; predict feeds image batches "
                          "(batch, 3, height, width)")
    if isinstance(shape[1], int) and shape[1] != 3:
        raise AnosegError(f"{model_file} wants {shape[1]}-channel input of shape {wanted}; predict feeds RGB images "
                          "(3 channels): export a model with 3 input channels")
    if len(output_shape) == 4 and isinstance(output_shape[1], int) and output_shape[1] < 2:
        raise AnosegError(f"{model_file} outputs {output_shape[1]} channel(s); predict needs class logits (good, "
                          "defect, ...: at least 2)")
    sidecar = [int(v) for v in sidecar_size] if sidecar_size else []
    sides = shape[2:]
    if not any(isinstance(s, int) for s in sides) and not sidecar:
        return [], None
    size = []
    for axis, side in enumerate(sides):
        if isinstance(side, int) and side > 0:
            size.append(side)
            continue
        name = ("height", "width")[axis]
        if not sidecar or len(sidecar) != 2:
            raise AnosegError(f"{model_file} has a fixed and a dynamic side (input {wanted}) and its sidecar gives no "
                              f"image_size for the {name}; export it again with --image-size or --dynamic")
        if sidecar[axis] < SIZE_MULTIPLE or sidecar[axis] % SIZE_MULTIPLE:
            raise AnosegError(f"the sidecar of {model_file} gives image_size {sidecar}: the {name} of a dynamic "
                              f"model must be a positive multiple of {SIZE_MULTIPLE}")
        size.append(sidecar[axis])
    note = None
    if sidecar and size != sidecar:
        note = (f"{model_file} takes {size[0]}×{size[1]} images (input {wanted}) but its sidecar says "
                f"{sidecar[0]}×{sidecar[1]}: images are resized to the model's {size[0]}×{size[1]}")
    return size, note


def check_sidecar(doc: Any) -> None:
    """Validate the keys of an export sidecar (docs/schemas.md) that predict reads; ``ValueError`` saying which."""
    from anoseg.engine.checkpoint import check_preprocessing

    expect(isinstance(doc, dict), "not a JSON object")
    expect(doc.get("schema") == EXPORT_SCHEMA, f"schema {doc.get('schema')!r}, not {EXPORT_SCHEMA!r}")
    check_preprocessing(doc)
    expect(isinstance(doc.get("task", ANOMALY), str), "'task' is not a name")
    expect(doc.get("threshold") is None or is_number(doc["threshold"], 0.0, 1.0),
           "'threshold' is not a probability in [0, 1]")
    thresholds = doc.get("thresholds")
    expect(thresholds is None or isinstance(thresholds, dict), "'thresholds' is not an object")
    for name, value in (thresholds or {}).items():
        expect(is_number(value, 0.0, 1.0), f"the threshold of {name!r} is {value!r}, not a probability in [0, 1]")
    expect(isinstance(doc.get("source", {}), dict), "'source' is not an object")
    expect(doc.get("class_names") is None or isinstance(doc["class_names"], list), "'class_names' is not a list")


def _fixed_batch(run: Runner, batch: Any) -> Runner:
    """A runner that takes any batch for a model exported with a fixed batch size (run in slices of that size, the
    last one filled up with copies of its last image whose outputs are dropped; a dynamic batch axis takes the whole
    batch)."""
    if not isinstance(batch, int) or batch < 1:
        return run

    def sliced(x: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(x), batch):
            part = x[start:start + batch]
            filled = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)]) if len(part) < batch \
                else part
            outputs.append(run(filled)[:len(part)])
        return np.concatenate(outputs)

    return sliced


def prepare(job: PredictJob) -> Prediction:
    """Check the job, find the images and their output names, choose the output folder and the threshold, and load
    the model. Writes nothing.

    The threshold is ``job.threshold``, else the one ``anoseg eval`` computed for the very weights loaded: for a
    unified model the ``category``'s own, else the mean of its categories' (and ``why`` says so). Raises
    ``AnosegError`` when there is none (naming the ``anoseg eval`` command to run), for a threshold outside [0, 1],
    missing images, an unusable ``out`` or batch size.
    """
    results.check_threshold(job.threshold)
    if (job.checkpoint is None) == (job.model_file is None):
        raise AnosegError("give exactly one of --checkpoint and --model-file")
    if job.batch_size is not None and job.batch_size < 1:
        raise AnosegError(f"--batch-size must be at least 1, not {job.batch_size}")
    run, meta = load_predictor(job.checkpoint, job.model_file, job.device)
    sources = list(job.sources)
    masks: list[Path] = []
    files = collect_images(sources, masks)
    names = output_names(files, sources)
    out = _output_folder(job.out, job.overwrite, files)
    notes: list[str] = list(meta.get("notes") or [])
    if masks:
        notes.append(f"skipped {len(masks)} file(s) as masks (named as a dataset's masks), e.g. {masks[0]}")
    threshold, why, point = job.threshold, "", ""
    if job.threshold is not None and job.operating_point is not None:
        raise AnosegError("--threshold and --operating-point contradict each other: give one")
    if meta.get("task", ANOMALY) != ANOMALY:
        if job.threshold is not None or job.category is not None:
            notes.append("--threshold and --category are for anomaly models; road/scene models write probabilities "
                         "or class maps")
    elif threshold is not None:
        why = "given with --threshold"
    elif meta.get("thresholds") is None:
        raise AnosegError(f"no decision threshold computed for {meta['source']}: run `{meta['eval_command']}` "
                          f"first, or pass --threshold{_selected_hint(job.checkpoint)}")
    else:
        chosen = meta["thresholds"].select(job.operating_point)
        threshold, why = chosen.pick(job.category)
        point = chosen.label(job.category)
    batch_size = job.batch_size or DEFAULT_BATCH.get(meta["device"], DEFAULT_BATCH["cpu"])
    return Prediction(job, run, meta, files, names, out, threshold, why, batch_size, notes, point)


def _selected_hint(checkpoint: Path | None) -> str:
    """For the error of a checkpoint without thresholds: the end of the sentence naming the other checkpoint of its
    run that ``train --select`` chose (the one ``anoseg eval`` scores by default), or ``""``."""
    if checkpoint is None:
        return ""
    from anoseg.engine.runs import read_selection

    chosen = read_selection(run_of_checkpoint(checkpoint))
    if chosen is None or Path(chosen["path"]).resolve() == Path(checkpoint).resolve():
        return ""
    return (f" (the run's checkpoint chosen on validation by {chosen['metric']} is {chosen['path']}, epoch "
            f"{chosen['epoch']})")


def predict(sources: list[Path], **options: Any) -> list[dict]:
    """``prepare`` then ``write_predictions`` a ``PredictJob(sources, **options)``; the rows of ``predictions.csv``.

    Writes ``<name>_mask.png`` (0/255) and ``<name>_overlay.jpg`` per image and ``predictions.csv``. ``<name>``
    mirrors each input's path relative to the common root of the inputs (``output_names``). Outputs go to ``out`` —
    refused when it is not empty, unless ``overwrite`` and it holds an earlier predict run — or, by default, to a new
    folder ``outputs/predict/<date-time>``. Road/scene checkpoints write ``<name>_road.png`` / ``<name>_classes.png``
    instead of masks. Raises ``AnosegError`` as ``prepare`` and ``write_predictions`` do.

    Example:
        >>> rows = predict([Path("line/cam0")], checkpoint=Path("outputs/demo/seas/lfd/all/last.pt"), category="disk")
        ... # doctest: +SKIP
    """
    return write_predictions(prepare(PredictJob(tuple(sources), **options))).rows


def write_predictions(prediction: Prediction, progress: Callable[[int, int], None] | None = None) -> PredictResult:
    """Run the line: decode (worker processes) → batched forward → masks and overlays (thread pool).

    Everything is written to a hidden staging folder that replaces ``prediction.out`` at the end:
    ``predictions.csv`` always lists exactly the masks beside it. Images that cannot be read are skipped and listed
    in ``skipped.csv``; the run fails (writing nothing) if none can be read. ``progress(images done, total)`` is
    called after each batch.
    """
    files = prediction.files
    with run_lock(prediction.out):  # one predict at a time writes an output folder
        return _write_locked(prediction, files, progress)


def _write_locked(prediction: Prediction, files: list[Path], progress: Callable[[int, int], None] | None
                  ) -> PredictResult:
    import pandas as pd

    staging = results.staging_dir(prediction.out)
    try:
        with ThreadPoolExecutor(max_workers=_writer_threads()) as pool:
            try:
                written, skipped = _run_line(prediction, staging, pool, progress)
                rows = [future.result() for future in written]
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        if not rows:
            raise AnosegError(f"none of the {len(files)} image(s) could be read (first: {skipped[0]['reason']})")
        frame = pd.DataFrame(rows)
        write_with(staging / "predictions.csv", lambda tmp: frame.to_csv(tmp, index=False, encoding=TEXT_ENCODING,
                                                                         errors=NAME_ERRORS))
        if skipped:
            listed = pd.DataFrame(skipped)
            write_with(staging / "skipped.csv", lambda tmp: listed.to_csv(tmp, index=False, encoding=TEXT_ENCODING,
                                                                          errors=NAME_ERRORS))
        results.publish(staging, prediction.out)
    finally:
        results.discard(staging)
    return PredictResult(rows, skipped, prediction.out)


def _run_line(prediction: Prediction, staging: Path, pool: ThreadPoolExecutor,
              progress: Callable[[int, int], None] | None) -> tuple[list[Future], list[dict]]:
    """Feed decoded batches to the network and each image's outputs to the writer pool; in input order."""
    size = tuple(prediction.meta.get("image_size") or ()) or None
    written: list[Future] = []
    skipped: list[dict] = []
    in_flight: deque[Future] = deque()
    limit = 4 * prediction.batch_size  # outputs waiting to be written: bounds the memory they hold
    # anomaly models run at their image size; road/scene models and native-resolution anomaly models (no image
    # size) at each image's own size, padded to a multiple of 32, one image at a time
    resize_to, batch_size = (size, prediction.batch_size) if not prediction.dense and size else (None, 1)
    done = 0
    for batch in _decoded_batches(prediction, resize_to, batch_size):
        good = [item for item in batch if item[3] is None]
        skipped += [{"image": str(prediction.files[i]), "reason": reason} for i, _, _, reason in batch
                    if reason is not None]
        if good:
            for task in _forward(prediction, staging, good):
                future = pool.submit(*task)
                written.append(future)
                in_flight.append(future)
        while len(in_flight) > limit:
            in_flight.popleft().result()  # also surfaces a writer's error early
        done += len(batch)
        if progress:
            progress(done, len(prediction.files))
    return written, skipped


def _forward(prediction: Prediction, staging: Path, good: list) -> list[tuple]:
    """The network on one decoded batch; a writer task per image: ``(function, *arguments)``."""
    meta, files, names, out = prediction.meta, prediction.files, prediction.names, prediction.out
    if prediction.dense:
        tasks = []
        for i, original, _, _ in good:
            logits = dense_logits(prediction.run, original, meta["mean"], meta["std"], meta.get("image_size") or None)
            tasks.append((_write_dense, staging, out, files[i], names[files[i]], original, logits,
                          list(meta.get("class_names") or []), prediction.job.overlays))
        return tasks
    if good[0][2] is None:  # a native-resolution model: one image, padded (``dense_logits``)
        anomaly = [softmax(dense_logits(prediction.run, original, meta["mean"], meta["std"]))[1]
                   for _, original, _, _ in good]
    else:
        resized = np.stack([item[2] for item in good])
        logits = prediction.run(normalise(resized, meta["mean"], meta["std"]))
        anomaly = softmax(logits.astype(np.float32, copy=False), axis=1)[:, 1]
    return [(_write_anomaly, staging, out, files[i], names[files[i]], original, anomaly[k], prediction.threshold,
             prediction.job.overlays) for k, (i, original, _, _) in enumerate(good)]


class _Decoder:
    """``DataLoader`` dataset: item ``i`` = ``(i, image (H, W, 3) uint8, resized or None, None)``, or
    ``(i, None, None, reason)`` for an unreadable file (skipped, not fatal)."""

    def __init__(self, files: list[Path], size: tuple[int, int] | None) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple:
        try:
            image = read_image(self.files[index])
        except AnosegError as exc:
            return index, None, None, str(exc)
        return index, image, resize(image, self.size) if self.size else None, None


def _as_list(batch: list) -> list:
    return batch


def _decoded_batches(prediction: Prediction, size: tuple[int, int] | None, batch_size: int):
    """Batches (lists of ``_Decoder`` items, in input order), decoded in worker processes when it pays."""
    decoder = _Decoder(prediction.files, size)
    workers = prediction.job.workers
    if workers is None:
        workers = _decoding_workers() if len(decoder) >= MIN_IMAGES_FOR_WORKERS else 0
    if workers == 0:
        for start in range(0, len(decoder), batch_size):
            yield [decoder[i] for i in range(start, min(start + batch_size, len(decoder)))]
        return
    from torch.utils.data import DataLoader

    # numpy arrays travel from the workers by pickling: a few MB per batch, small next to decoding them
    yield from DataLoader(decoder, batch_size=batch_size, num_workers=workers, collate_fn=_as_list,
                          prefetch_factor=2, persistent_workers=False)


def _decoding_workers() -> int:
    """Decoding processes: half the cores (the network's threads use the rest), at least 1, at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2))


def _writer_threads() -> int:
    """Threads encoding PNGs: PIL and zlib release the GIL while they work."""
    return 2


def _write_anomaly(staging: Path, out: Path, path: Path, name: Path, original: np.ndarray, anomaly: np.ndarray,
                   threshold: float, overlays: bool) -> dict:
    """The mask (at the image's own size) and overlay of one image; its row of ``predictions.csv``."""
    from PIL import Image

    from anoseg.engine.visual import overlay_strip

    # back to the original size for the mask a person or a machine acts on
    full = np.asarray(Image.fromarray(anomaly).resize(original.shape[1::-1], Image.Resampling.BILINEAR))
    mask = full >= threshold
    mask_file = f"{name}_mask.png"
    picture = Image.fromarray((mask * 255).astype(np.uint8))
    write_with(staging / mask_file, lambda tmp: picture.save(tmp, format="PNG", compress_level=MASK_PNG_LEVEL))
    row = {"image": str(path), "score": float(anomaly.max()), "defect_fraction": float(mask.mean()),
           "threshold": threshold, "mask": str(out / mask_file)}
    if overlays:
        overlay_file = f"{name}{OVERLAY_SUFFIX}"
        _write_overlay(staging / overlay_file, overlay_strip(original, full, outline_mask=mask))
        row["overlay"] = str(out / overlay_file)
    return row


def _write_overlay(path: Path, picture: np.ndarray) -> None:
    from PIL import Image

    image = Image.fromarray(picture)
    write_with(path, lambda tmp: image.save(tmp, **OVERLAY_JPEG))


def _write_dense(staging: Path, out: Path, path: Path, name: Path, image: np.ndarray, logits: np.ndarray,
                 class_names: list[str], overlays: bool) -> dict:
    """Road/scene outputs of one image. Two classes (road): ``<name>_road.png``, the road probability × 255 as
    8-bit gray (the KITTI devkit's submission encoding). More classes: ``<name>_classes.png``, a palette PNG whose
    pixel values are the class ids and whose colours are the dataset's. Plus ``<name>_overlay.jpg``."""
    from PIL import Image

    from anoseg.data.scenes.labels import class_palette, colourize
    from anoseg.engine.visual import blend, overlay_strip, strip

    class_names = class_names or [str(i) for i in range(len(logits))]
    if len(class_names) == 2:
        probability = softmax(logits)[1]
        target = f"{name}_road.png"
        encoded = np.clip(probability * 255.0 + 0.5, 0, 255).astype(np.uint8)
        write_with(staging / target, Image.fromarray(encoded).save)
        if overlays:
            _write_overlay(staging / f"{name}{OVERLAY_SUFFIX}", overlay_strip(image, probability))
        return {"image": str(path), "road_fraction": float((probability >= 0.5).mean()), "mask": str(out / target)}
    palette = class_palette(class_names)
    classes = logits.argmax(axis=0).astype(np.uint8)
    target = f"{name}_classes.png"
    picture = Image.fromarray(classes)
    picture.putpalette(palette.reshape(-1).tolist())
    write_with(staging / target, picture.save)
    if overlays:
        coloured = blend(image, colourize(classes, palette))
        _write_overlay(staging / f"{name}{OVERLAY_SUFFIX}", strip([image, coloured]))
    counts = np.bincount(classes.reshape(-1), minlength=len(class_names))
    top = int(counts.argmax())
    return {"image": str(path), "dominant_class": class_names[top],
            "dominant_fraction": float(counts[top] / classes.size), "mask": str(out / target)}


def _output_folder(out: Path | None, overwrite: bool, files: list[Path]) -> Path:
    """The folder a predict run writes: ``out`` checked (see ``predict``), or a new dated one under the default root."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out, n = DEFAULT_ROOT / stamp, 1
        while out.exists():
            n += 1
            out = DEFAULT_ROOT / f"{stamp}-{n}"
        check_output(out, folder=True)
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
    check_output(out, folder=True)  # the staging folder goes beside it: a read-only place is refused before work
    return out


