"""``anoseg bench``: used parameters, MACs, latency, FPS and peak memory of each segmenter, plus a fast path.

Latency is the median over ``runs`` timed forward passes at batch 1 after ``warmup`` untimed ones, under
``torch.inference_mode`` with CUDA synchronisation. The fast path (BN folded into convolutions, channels-last memory,
optionally ``torch.compile``) is timed in the same run and reported as a speed-up ratio over plain eager; its output
must equal eager's to 1e-4 relative to the output's scale (random-weight logits reach the hundreds, where float32
rounding alone is ~1e-5 absolute). Speeds vary with machine load: compare ratios measured in one run, not seconds.
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


def bench_model(name: str, size: tuple[int, int], device: torch.device, *, warmup: int = 5, runs: int = 30,
                compile_model: bool = False, onnx: bool = False) -> dict:
    """All numbers for one model; the fast path and ONNX Runtime are checked against eager before being timed."""
    from anoseg.models import create_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(1, 3, *size)
    row = {"model": name, "params": count_used_parameters(model, x), "gmacs": count_macs(model, x) / 1e9}
    model, x = model.to(device), x.to(device)
    row["latency_ms"] = time_forward(model, x, warmup, runs)
    row["fps"] = 1000.0 / row["latency_ms"]
    row["peak_mem_mb"] = peak_memory_mb(model, x)
    with torch.inference_mode():
        reference = model(x)
    best = None
    for label, (fast, channels_last) in fast_variants(model, compile_model).items():
        x_fast = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.inference_mode():
            difference = (fast(x_fast) - reference).abs().max().item() / max(1.0, reference.abs().max().item())
        if difference > FAST_TOLERANCE:
            raise AnosegError(f"fast path {label} of {name} differs from eager by {difference:.2e}")
        latency = time_forward(fast, x_fast, warmup, runs)
        if best is None or latency < best[1]:
            best = (label, latency, difference)
    row["fast_path"], row["fast_latency_ms"], row["fast_rel_diff"] = best
    row["fast_speedup"] = row["latency_ms"] / row["fast_latency_ms"]
    row["onnx_latency_ms"] = None
    if onnx:
        from anoseg.engine.conversion import onnx_session

        session, input_name, expected_diff = onnx_session(model.cpu(), x.cpu())
        row["onnx_max_abs_diff"] = expected_diff
        row["onnx_latency_ms"] = time_forward(lambda t: session.run(None, {input_name: t.numpy()}), x.cpu(),
                                              warmup, runs)
        row["onnx_speedup"] = row["latency_ms"] / row["onnx_latency_ms"]
    return row


def run_bench(models: list[str], size: tuple[int, int], device: str = "auto", *, warmup: int = 5, runs: int = 30,
              compile_model: bool = False, onnx: bool = False, output: Path | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """Benchmark ``models`` and write ``<output>/bench/bench.json`` atomically (schema ``anoseg.bench/1``)."""
    from anoseg.engine.checkpoint import resolve_device
    from anoseg.paths import bench_path

    if len(size) != 2 or any(s < SIZE_MULTIPLE or s % SIZE_MULTIPLE for s in size):
        raise AnosegError(f"--size {' '.join(map(str, size))}: both sides must be positive multiples of "
                          f"{SIZE_MULTIPLE}")
    target = resolve_device(device)
    rows = []
    for name in models:
        if progress:
            progress(name)
        rows.append(bench_model(name, size, target, warmup=warmup, runs=runs, compile_model=compile_model, onnx=onnx))
    result = {"schema": BENCH_SCHEMA, "device": str(target), "size": list(size),
              "threads": torch.get_num_threads(), "created": datetime.now().isoformat(timespec="seconds"),
              "warmup": warmup, "runs": runs, "models": rows}
    if output is not None:
        write_json(bench_path(output), result)
    return result
