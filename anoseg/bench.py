"""``anoseg bench``: used parameters, MACs, latency, FPS and peak memory of each segmenter, plus a fast path.

Latency is the median over ``runs`` timed forward passes at batch 1 after ``warmup`` untimed ones, under
``torch.inference_mode`` with CUDA synchronisation before and after each pass. The fast path (BN folded into
convolutions, channels-last memory, optionally ``torch.compile``) is timed in the same run and reported as a speed-up
ratio over plain eager; its output must equal eager's to 1e-4 relative to the output's scale (random-weight logits
reach the hundreds, where float32 rounding alone is ~1e-5 absolute), checked in strict fp32 on a GPU (TF32 off for
the check only: TF32 rounds to 10 mantissa bits). Larger batches (``batches``, e.g. 32) are timed for throughput
(eager, the chosen fast path, ONNX Runtime) beside batch 1. ONNX Runtime runs with its CUDA provider when the device
is a GPU and onnxruntime has it (``onnxruntime-gpu``), else on the CPU (the row says which). Speeds vary with machine
load: compare ratios measured in one run, not seconds.
"""

from __future__ import annotations

import copy
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch
import torch.nn as nn

from anoseg.constants import BENCH_SCHEMA, SIZE_MULTIPLE
from anoseg.errors import AnosegError
from anoseg.io import write_json
from anoseg.models.profile import count_macs, count_used_parameters

FAST_TOLERANCE = 1e-4


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a convolution folded into it.

    Uses torch.fx to find conv → BN pairs in the real data flow; models that fx cannot trace fall back to folding
    inside ``nn.Sequential`` containers (``ConvBNAct`` and friends), where order is data flow by construction.
    """
    model = copy.deepcopy(model).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(model, inplace=True)
    except Exception:  # not traceable (shape-dependent Python code): fold what Sequential guarantees
        _fold_sequentials(model)
        return model


def _fold_sequentials(module: nn.Module) -> None:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        _fold_sequentials(child)
    if not isinstance(module, nn.Sequential):
        return
    names = list(module._modules)
    for first, second in itertools.pairwise(names):
        conv, bn = module._modules[first], module._modules[second]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels:
            module._modules[first] = fuse_conv_bn_eval(conv, bn)
            module._modules[second] = nn.Identity()


def fast_variants(model: nn.Module, compile_model: bool = False) -> dict[str, tuple[Callable, bool]]:
    """Candidate fast paths: ``name → (module, wants channels-last input)``; the bench keeps the fastest.

    Channels-last helps dense convolutions on most CPUs and GPUs but can slow grouped/depthwise-heavy networks, so it
    is measured rather than assumed.
    """
    folded = fold_batchnorm(model)
    variants = {"bn-fold": (folded, False),
                "bn-fold+channels-last": (copy.deepcopy(folded).to(memory_format=torch.channels_last), True)}
    if compile_model:
        variants["bn-fold+compile"] = (torch.compile(folded), False)
    return variants


def time_forward(fn: Callable, x: torch.Tensor, warmup: int = 5, runs: int = 30) -> float:
    """Median latency in milliseconds of ``fn(x)`` (CUDA-synchronised)."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            sync()
            start = time.perf_counter()
            fn(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def peak_memory_mb(fn: Callable, x: torch.Tensor) -> float:
    """Peak memory allocated during one forward pass beyond what was held before it (activations, workspaces).

    CUDA: the caching allocator's peak. CPU: the running sum of the profiler's allocation events — RSS cannot show
    it, because malloc keeps freed pages and a warmed-up forward pass needs no new ones.
    """
    with torch.inference_mode():
        if x.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(x.device)
            base = torch.cuda.memory_allocated(x.device)
            fn(x)
            return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20
        from torch.profiler import ProfilerActivity, profile

        with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn(x)
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak / 2**20


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: the profiler's C++ side logs start/stop lines there, past Python."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """On CUDA, convolutions and matrix products in full fp32 (TF32 off) for the duration; nothing on a CPU."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def bench_model(name: str, size: tuple[int, int], device: torch.device, *, warmup: int = 5, runs: int = 30,
                compile_model: bool = False, onnx: bool = False, batches: tuple[int, ...] = (1,)) -> dict:
    """All numbers for one model at batch 1, and ``batches`` other than 1 under ``row["batches"][str(batch)]``
    (latencies in ms per batch, ``*_images_per_s``); the fast path and ONNX Runtime are checked against eager before
    being timed."""
    from anoseg.models import create_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, 3, *size)
    row = {"model": name, "params": count_used_parameters(model, x), "gmacs": count_macs(model, x) / 1e9}
    model, x = model.to(device), x.to(device)
    row["latency_ms"] = time_forward(model, x, warmup, runs)
    row["fps"] = 1000.0 / row["latency_ms"]
    row["peak_mem_mb"] = peak_memory_mb(model, x)
    with strict_fp32(device), torch.inference_mode():
        reference = model(x)
    best = None
    for label, (fast, channels_last) in fast_variants(model, compile_model).items():
        x_fast = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with strict_fp32(device), torch.inference_mode():
            difference = (fast(x_fast) - reference).abs().max().item() / max(1.0, reference.abs().max().item())
        if difference > FAST_TOLERANCE:
            raise AnosegError(f"fast path {label} of {name} differs from eager by {difference:.2e}")
        latency = time_forward(fast, x_fast, warmup, runs)
        if best is None or latency < best[1]:
            best = (label, latency, difference, fast, channels_last)
    row["fast_path"], row["fast_latency_ms"], row["fast_rel_diff"], fast, channels_last = best
    row["fast_speedup"] = row["latency_ms"] / row["fast_latency_ms"]
    larger = sorted({b for b in batches if b != 1})
    row["batches"] = {}
    for batch in larger:
        xb = torch.randn(batch, 3, *size, device=device)
        eager = time_forward(model, xb, warmup, runs)
        quick = time_forward(fast, xb.contiguous(memory_format=torch.channels_last) if channels_last else xb,
                             warmup, runs)
        row["batches"][str(batch)] = {"latency_ms": eager, "images_per_s": 1000.0 * batch / eager,
                                      "fast_latency_ms": quick, "fast_images_per_s": 1000.0 * batch / quick}
    row["onnx_latency_ms"] = None
    if onnx:
        from anoseg.engine.conversion import onnx_session
        from anoseg.engine.inference import CUDA_PROVIDER, ort_has_cuda

        where = str(device) if device.type == "cuda" and ort_has_cuda() else "cpu"
        model = model.cpu()
        for batch in (1, *larger):
            example = x.cpu() if batch == 1 else torch.randn(batch, 3, *size)
            session, input_name, difference = onnx_session(model, example, device=where)
            # what really runs it: ONNX Runtime falls back to the CPU when its CUDA provider cannot start
            row["onnx_provider"] = "cuda" if CUDA_PROVIDER in session.get_providers() else "cpu"
            latency = time_forward(lambda t, s=session, n=input_name: s.run(None, {n: t.numpy()}), example,
                                   warmup, runs)
            if batch == 1:
                row["onnx_max_abs_diff"], row["onnx_latency_ms"] = difference, latency
                row["onnx_speedup"] = row["latency_ms"] / latency
            else:
                row["batches"][str(batch)].update(onnx_latency_ms=latency, onnx_images_per_s=1000.0 * batch / latency)
    return row


def run_bench(models: list[str], size: tuple[int, int], device: str = "auto", *, warmup: int = 5, runs: int = 30,
              compile_model: bool = False, onnx: bool = False, output: Path | None = None,
              progress: Callable[[str], None] | None = None, batches: tuple[int, ...] = (1,)) -> dict:
    """Benchmark ``models`` and write ``<output>/bench/bench.json`` atomically (schema ``anoseg.bench/1``).

    Raises ``AnosegError`` for a size that is not a multiple of 32, a batch below 1 and a device that is not there.
    """
    from anoseg.engine.checkpoint import device_kind, resolve_device
    from anoseg.paths import bench_path

    if len(size) != 2 or any(s < SIZE_MULTIPLE or s % SIZE_MULTIPLE for s in size):
        raise AnosegError(f"--size {' '.join(map(str, size))}: both sides must be positive multiples of "
                          f"{SIZE_MULTIPLE}")
    if any(b < 1 for b in batches):
        raise AnosegError(f"--batch {min(batches)}: a batch holds at least one image")
    target = resolve_device(device)
    rows = []
    for name in models:
        if progress:
            progress(name)
        rows.append(bench_model(name, size, target, warmup=warmup, runs=runs, compile_model=compile_model, onnx=onnx,
                                batches=batches))
    result = {"schema": BENCH_SCHEMA, "device": str(target), "device_kind": device_kind(target), "size": list(size),
              "batches": sorted({1, *batches}),
              "threads": torch.get_num_threads(), "created": datetime.now().isoformat(timespec="seconds"),
              "warmup": warmup, "runs": runs, "models": rows}
    if output is not None:
        write_json(bench_path(output), result)
    return result
