"""The one inference path: uint8 RGB images → normalised float32 NCHW → a model → logits or probabilities.

A model is run through a ``Runner``: ``run(float32 (N, 3, H, W) normalised) → float32 logits (N, C, H, W)``, built
around a torch module (``torch_runner``) or an ONNX Runtime session (``onnx_runner`` over ``ort_session``, the one
session factory that predict, export and bench use). Eval, predict, export and bench all go through this module, so
preprocessing (resize, ImageNet-style normalisation, padding to a multiple of 32) is written once.

This module imports nothing from the rest of ``anoseg.engine``; torch and onnxruntime are imported where they are used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anoseg.constants import SIZE_MULTIPLE

#: float32 (N, 3, H, W) normalised images → float32 logits (N, C, H, W).
Runner = Callable[[np.ndarray], np.ndarray]


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 images (N, H, W, 3) → float32 (N, 3, H, W), scaled to [0, 1] and normalised per channel.

    The same float32 arithmetic as training's ``anoseg.data.dataset.normalize`` (``(x / 255 − mean) / std``).

    Example:
        >>> normalise(np.full((1, 2, 2, 3), 255, np.uint8), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))[0, :, 0, 0]
        array([1., 1., 1.], dtype=float32)
    """
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    batch = (np.asarray(images).astype(np.float32) / np.float32(255.0) - mean_a) / std_a
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # one copy into NCHW, after the arithmetic


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax over the class axis (float32 in, float32 out)."""
    exp = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def defect_probability(logits: np.ndarray) -> np.ndarray:
    """Class-1 softmax probability (N, H, W) float32 of logits (N, C, H, W): the anomaly map, or road probability."""
    return softmax(logits.astype(np.float32, copy=False), axis=1)[:, 1]


def resize(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """A uint8 RGB image (H, W, 3) resized (bilinear, PIL) to ``size`` = (height, width)."""
    from PIL import Image

    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR))


def torch_runner(model: Any, device: Any = "cpu") -> Runner:
    """A ``Runner`` around a torch module: eval mode, on ``device``, under ``torch.inference_mode``."""
    import torch

    device = torch.device(device)
    model = model.to(device).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run


CUDA_PROVIDER = "CUDAExecutionProvider"


def ort_has_cuda() -> bool:
    """Whether the installed ONNX Runtime can run on a GPU (``onnxruntime-gpu``: ``CUDAExecutionProvider``)."""
    import onnxruntime

    return CUDA_PROVIDER in onnxruntime.get_available_providers()


def ort_session(model: bytes | str | Path, threads: int | None = None, spin: bool = True,
                device: str = "cpu") -> Any:
    """An ONNX Runtime ``InferenceSession`` for an ONNX file or its bytes: the one session factory of anoseg.

    ``device="cuda"`` (or ``cuda:N``) runs it on that GPU with ONNX Runtime's CUDA provider (CPU for the operators
    it lacks); callers check ``ort_has_cuda()`` first. Otherwise the CPU provider alone.

    ``threads`` (default: as many as PyTorch uses, ``torch.get_num_threads()``, so timings compare fairly) bounds
    the intra-op thread pool; ONNX Runtime's own log is silenced (a failing run raises, its C++ log line would only
    repeat the message). ``spin=False`` stops idle intra-op threads from busy-waiting for the next run: what a
    pipeline wants whose decoding and writing share the cores with the network (ONNX Runtime spins by default,
    which suits back-to-back runs alone on a machine). Raises whatever onnxruntime raises for a bad model (callers
    turn it into one line).
    """
    import onnxruntime

    if threads is None:
        import torch

        threads = torch.get_num_threads()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 4
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        providers.insert(0, (CUDA_PROVIDER, {"device_id": int(device.partition(":")[2] or 0)}))
    return onnxruntime.InferenceSession(source, options, providers=providers)


def onnx_runner(session: Any) -> Runner:
    """A ``Runner`` around an ONNX Runtime session with one image input."""
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: np.ascontiguousarray(batch, np.float32)})[0]


def probability_maps(run: Runner, images: np.ndarray, mean: Sequence[float], std: Sequence[float],
                     batch_size: int = 8) -> np.ndarray:
    """Class-1 probability maps (N, H, W) float32 of uint8 images (N, H, W, 3) already at the model's size.

    Images are normalised and run ``batch_size`` at a time (a memory-mapped array is read one batch at a time).
    """
    maps = np.empty(images.shape[:3], np.float32)
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start:start + batch_size])
        maps[start:start + len(chunk)] = defect_probability(run(normalise(chunk, mean, std)))
    return maps


def dense_logits(run: Runner, image: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 size: Sequence[int] | None = None, multiple: int = SIZE_MULTIPLE) -> np.ndarray:
    """Logits (C, H, W) float32 for one uint8 RGB image (H, W, 3) at its native size.

    ``size`` None: the image is padded with black at the bottom/right to a multiple of ``multiple`` and the logits are
    cropped back. ``size`` (h, w): the image is resized (bilinear) to it and the logits resized back (bilinear).

    Example:
        >>> logits = dense_logits(torch_runner(model), np.zeros((375, 1242, 3), np.uint8), IMAGENET_MEAN,
        ...                       IMAGENET_STD)
        ... # doctest: +SKIP
        >>> logits.shape  # doctest: +SKIP
        (2, 375, 1242)
    """
    height, width = image.shape[:2]
    if size:
        model_input = resize(image, size)
    else:
        padded_h, padded_w = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        model_input = np.zeros((padded_h, padded_w, 3), np.uint8)
        model_input[:height, :width] = image
    logits = run(normalise(model_input[None], mean, std))[0]
    if size or logits.shape[1:] != model_input.shape[:2]:
        import torch

        # a model whose logits are coarser than its input (an exported file need not upsample) is brought to the
        # padded input first, so that the crop keeps the image's own region
        target = (height, width) if size else model_input.shape[:2]
        resized = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(logits))[None], size=target,
                                                  mode="bilinear", align_corners=False)[0].numpy()
        return resized if size else np.ascontiguousarray(resized[:, :height, :width])
    return np.ascontiguousarray(logits[:, :height, :width])
