"""A torch module → verified ONNX or TorchScript bytes (what ``anoseg export`` writes and ``anoseg bench`` times).

Every conversion is checked before it is returned: the bytes are loaded back (ONNX Runtime through
``anoseg.engine.inference.ort_session``, or ``torch.jit.load``) and run on a fixed random input, and their logits are
compared with PyTorch eager mode. A ``dynamic`` conversion (any batch, any height/width that is a multiple of 32) is
checked at a second, different size too, because shape-specialised code (sizes baked in at trace time) only shows at
another size.

The pass criterion is ``max|exported − eager| < 1e-4 · max(1, max|eager|)``: 1e-4 absolute for ordinary logits, and
relative to the output scale when logits are large (an untrained SANet-L reaches ~1e7, where 1e-4 absolute is below
float32 resolution). Some untrained networks are so ill-conditioned that even PyTorch's own float32 result is that far
from the exact one; when the check fails, the float32 error of eager itself is measured (against a float64 run) and the
export passes if it is within ``NOISE_FACTOR`` times that error, but never beyond ``NOISE_CAP`` (1 %) of the output
scale. A semantic export bug (wrong op, baked size) is orders of magnitude above these bounds.

ONNX exporters, tried in order until one verifies (``exporter="auto"``):

* ``dynamo`` (``torch.export``, opset 18): exports all 14 registered models at any fixed size. For a dynamic export,
  ``nn.AdaptiveAvgPool2d`` with an output larger than 1×1 (the PSP pyramid in SFNet/UperNet) is swapped, in a copy of
  the model, for ``_SlicedAdaptiveAvgPool2d``, because the exporter bakes the pooling indices of the example size.
* ``legacy`` (TorchScript-based, opset 17): needed only for dynamic SFNet/SFNet-Lite, whose ``flow_warp`` grid uses
  ``torch.linspace`` that ``torch.export`` specialises to the example size. It gets the same pool swap always (it
  refuses adaptive pools whose bins do not divide the map), so it can export all 14 models as well.
"""

from __future__ import annotations

import copy
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from anoseg.constants import EXPORTERS, SIZE_MULTIPLE
from anoseg.engine.inference import ort_session
from anoseg.errors import AnosegError

ONNX_OPSETS = {"dynamo": 18, "legacy": 17}  # exporter → the opset it is asked for (the written one is read back)
INPUT_NAME, OUTPUT_NAME = "image", "logits"
TOLERANCE = 1e-4
NOISE_FACTOR = 10.0
NOISE_CAP = 1e-2  # relative to the output scale: the loosest tolerance the float32-noise allowance can reach
# A dynamic export is also verified at batch 2 and (H + 32, W + 64): another batch, another aspect ratio.
SECOND_SIZE_OFFSET = (SIZE_MULTIPLE, 2 * SIZE_MULTIPLE)


def onnx_session(model: nn.Module, example: torch.Tensor, device: str = "cpu") -> tuple[Any, str, float]:
    """Export an eval-mode ``model`` (on the CPU) in memory, open it in onnxruntime (CPU) and verify it on
    ``example``; with ``device="cuda"`` the returned session runs the verified bytes with ONNX Runtime's CUDA provider
    instead, and ``max_abs_diff`` is that session's difference from eager on ``example`` (GPU kernels round
    otherwise: reported, not refused).

    Returns ``(session, input_name, max_abs_diff)``; raises ``AnosegError`` if no exporter reproduces eager mode.
    The session comes from ``anoseg.engine.inference.ort_session`` (as many threads as PyTorch).

    Example:
        >>> model = create_model("lfd").eval()  # doctest: +SKIP
        >>> session, name, diff = onnx_session(model, torch.randn(1, 3, 256, 256))  # doctest: +SKIP
        >>> session.run(None, {name: np.zeros((1, 3, 256, 256), np.float32)})[0].shape  # doctest: +SKIP
        (1, 2, 256, 256)
    """
    data, info, session = _export_onnx(model, example, dynamic=False, exporter="auto")
    if not device.startswith("cuda"):
        return session, INPUT_NAME, info["verification"]["max_abs_diff"]
    gpu = ort_session(data, device=device)
    with torch.no_grad():
        reference = model(example).numpy()
    difference = float(np.abs(gpu.run(None, {INPUT_NAME: example.numpy()})[0] - reference).max())
    return gpu, INPUT_NAME, difference


def export_onnx(model: nn.Module, example: torch.Tensor, *, dynamic: bool = False,
                exporter: str = "auto") -> tuple[bytes, dict]:
    """Serialized ONNX bytes of an eval-mode ``model`` and ``{"exporter", "opset", "fallback_from", "verification"}``.

    ``auto`` tries ``dynamo`` then ``legacy`` and keeps the first whose output verifies; the error lists why each
    one failed, and ``fallback_from`` why the ones before the chosen exporter did.

    Example:
        >>> data, info = export_onnx(create_model("lfd").eval(), torch.randn(1, 3, 64, 64), dynamic=True)
        ... # doctest: +SKIP
        >>> info["exporter"], info["opset"]  # doctest: +SKIP
        ('dynamo', 18)
    """
    data, info, _ = _export_onnx(model, example, dynamic=dynamic, exporter=exporter)
    return data, info


def _export_onnx(model: nn.Module, example: torch.Tensor, *, dynamic: bool, exporter: str) -> tuple[bytes, dict, Any]:
    _require_eval(model)
    if exporter not in EXPORTERS:
        raise AnosegError(f"--exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    inputs = verification_inputs(example, dynamic)
    failures = []
    for name in ONNX_OPSETS if exporter == "auto" else (exporter,):
        try:
            # the copy is what gets exported; the untouched original is the reference it is verified against
            exportable = _with_sliced_pools(model) if dynamic or name == "legacy" else model
            data = _ONNX_EXPORTERS[name](exportable, example, dynamic)
            session = ort_session(data)
            verification = verify(model, lambda x, s=session: s.run(None, {INPUT_NAME: x.numpy()})[0], inputs)
        except Exception as exc:  # exporters and onnxruntime raise many types; each becomes one line of the report
            failures.append(f"{name}: {_first_line(exc)}")
            continue
        info = {"exporter": name, "opset": _onnx_opset(data), "fallback_from": failures, "verification": verification}
        return data, info, session
    raise AnosegError(f"cannot export {type(model).__name__} to ONNX{' with dynamic axes' if dynamic else ''}: "
                      + "; ".join(failures))


def export_torchscript(model: nn.Module, example: torch.Tensor, *, dynamic: bool = False) -> tuple[bytes, dict]:
    """A ``torch.jit.trace`` of an eval-mode ``model``, saved to bytes, reloaded with ``torch.jit.load`` and verified.

    Scripting is not tried: none of the registered models is scriptable, and tracing gives the same graph.

    Example:
        >>> data, info = export_torchscript(create_model("lfd").eval(), torch.randn(1, 3, 64, 64))  # doctest: +SKIP
        >>> info["exporter"]  # doctest: +SKIP
        'torch.jit.trace'
    """
    _require_eval(model)
    inputs = verification_inputs(example, dynamic)
    try:
        # TracerWarnings flag Python values frozen at trace time (the check below shows whether any matter), and
        # torch 2.14 flags TorchScript itself as deprecated; neither is actionable for the user
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
            data = buffer.getvalue()
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # the tracer raises many types for unsupported code
        raise AnosegError(f"cannot trace {type(model).__name__} to TorchScript: {_first_line(exc)}") from None

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return data, {"exporter": "torch.jit.trace", "opset": None, "verification": verify(model, run, inputs)}


def verify(model: nn.Module, run: Callable[[torch.Tensor], np.ndarray], inputs: Sequence[torch.Tensor]) -> dict:
    """Compare ``run(x)`` with eager ``model(x)`` on each input; raise ``AnosegError`` if any differs too much.

    Returns ``{"max_abs_diff", "output_scale", "tolerance", "float32_noise", "shapes"}`` (worst case over the inputs;
    ``float32_noise`` is null unless the plain tolerance failed and eager's own float32 error had to be measured).

    Example:
        >>> verify(model, lambda x: model(x).numpy(), [torch.randn(1, 3, 64, 64)])["max_abs_diff"]  # doctest: +SKIP
        0.0
    """
    worst = {"max_abs_diff": 0.0, "output_scale": 0.0, "tolerance": 0.0, "float32_noise": None,
             "shapes": [list(x.shape) for x in inputs]}
    for x in inputs:
        with torch.inference_mode():
            reference = model(x)
        output = torch.from_numpy(np.asarray(run(x)))
        if output.shape != reference.shape:
            raise AnosegError(f"exported model returns shape {tuple(output.shape)} for input {tuple(x.shape)}; "
                              f"PyTorch returns {tuple(reference.shape)}")
        diff = (output - reference).abs().max().item()
        scale = reference.abs().max().item()
        tolerance = TOLERANCE * max(1.0, scale)
        noise = None
        if not diff < tolerance:  # also catches NaN
            noise = float32_noise(model, x, reference)
            # capped: a model whose float32 result is that far off (or that is not deterministic) cannot be checked
            tolerance = max(tolerance, min(NOISE_FACTOR * noise, NOISE_CAP * max(1.0, scale)))
        if not diff < tolerance:
            raise AnosegError(f"exported model differs from PyTorch at input {tuple(x.shape)}: max abs diff "
                              f"{diff:.3e} ≥ tolerance {tolerance:.1e} (output scale {scale:.2e})")
        worst["max_abs_diff"] = max(worst["max_abs_diff"], diff)
        worst["output_scale"] = max(worst["output_scale"], scale)
        worst["tolerance"] = max(worst["tolerance"], tolerance)
        if noise is not None:
            worst["float32_noise"] = max(worst["float32_noise"] or 0.0, noise)
    return worst


def float32_noise(model: nn.Module, x: torch.Tensor, reference: torch.Tensor) -> float:
    """``max|eager float32 − eager float64|``: how far PyTorch's own float32 result is from the exact one."""
    exact_model = copy.deepcopy(model).double()
    with torch.inference_mode():
        exact = exact_model(x.double())
    return (reference.double() - exact).abs().max().item()


def example_input(size: Sequence[int], batch: int = 1) -> torch.Tensor:
    """A fixed N(0, 1) input ``(batch, 3, H, W)`` (normalised images are roughly standard normal)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, *size, generator=generator)


def verification_inputs(example: torch.Tensor, dynamic: bool) -> list[torch.Tensor]:
    """``[example]``, plus for a dynamic export one more at batch 2 and ``(H + 32, W + 64)``."""
    if not dynamic:
        return [example]
    height, width = example.shape[-2:]
    return [example, example_input((height + SECOND_SIZE_OFFSET[0], width + SECOND_SIZE_OFFSET[1]), batch=2)]


class _SlicedAdaptiveAvgPool2d(nn.Module):
    """``AdaptiveAvgPool2d`` written with slices of the input's symbolic size, so one export serves every size.

    Bin ``i`` of ``n`` over a side of length ``L`` averages ``[floor(i·L/n), ceil((i+1)·L/n))``, exactly as PyTorch
    does; a rectangle's mean is the mean over its columns of the means over its rows, so the two sides are pooled
    one after the other (2n slices rather than n²). The ceiling is written ``(a + n - 1) // n``: ONNX integer
    division truncates toward zero, so the usual ``-(-a // n)`` would be wrong after export.
    """

    def __init__(self, output_size: tuple[int, int]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dim, bins in ((2, self.output_size[0]), (3, self.output_size[1])):
            length = x.shape[dim]
            x = torch.cat([x.narrow(dim, i * length // bins, ((i + 1) * length + bins - 1) // bins
                                    - i * length // bins).mean(dim, keepdim=True) for i in range(bins)], dim)
        return x


def _with_sliced_pools(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose adaptive average pools larger than 1×1 are ``_SlicedAdaptiveAvgPool2d``.

    Needed for a dynamic export (dynamo bakes the pooling indices of the example size) and for the legacy exporter
    (it only exports adaptive pools whose bins divide the map).
    """
    model = copy.deepcopy(model)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d):
                size = child.output_size
                size = (size, size) if isinstance(size, int) else tuple(size)
                if size != (1, 1) and None not in size:  # a global pool exports as GlobalAveragePool already
                    setattr(parent, name, _SlicedAdaptiveAvgPool2d(size))
    return model


def _export_dynamo(model: nn.Module, example: torch.Tensor, dynamic: bool) -> bytes:
    dynamic_shapes = None
    if dynamic:
        from torch.export import Dim

        # H and W as 32·k: the models need multiples of 32, and saying so lets torch.export reason about /32 maps
        dynamic_shapes = ({0: Dim("batch", min=1), 2: SIZE_MULTIPLE * Dim("height_32", min=1),
                           3: SIZE_MULTIPLE * Dim("width_32", min=1)},)
    with _quiet():
        program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=ONNX_OPSETS["dynamo"],
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=dynamic_shapes, verbose=False)
    # the proto holds the weights inline: one self-contained file (the exporter's default saves a separate .data)
    return program.model_proto.SerializeToString()


def _export_legacy(model: nn.Module, example: torch.Tensor, dynamic: bool) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with _quiet():
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=ONNX_OPSETS["legacy"],
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None)
    return buffer.getvalue()


_ONNX_EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor, bool], bytes]] = {
    "dynamo": _export_dynamo, "legacy": _export_legacy}


def _onnx_opset(data: bytes) -> int:
    import onnx

    model = onnx.load_model_from_string(data)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _require_eval(model: nn.Module) -> None:
    if model.training:
        raise ValueError("export an eval-mode model (call model.eval()): training mode exports dropout and batch stats")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporter warnings and torch's logged tracebacks: a failure raises, and verification judges success."""
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    """The root cause's first line: the ONNX exporter wraps torch.export's real reason in a generic one."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]

