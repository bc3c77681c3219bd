"""Training throughput (images/s): each speed option, and anoseg's defaults, vs a plain eager fp32 loop, same run.

Every variant trains LFD from scratch for ``--epochs`` epochs on the same images (one category of anoseg's demo data,
resized to ``--size``², the training split of the LFD/SeaS protocol, batch 8, the paper's SGD + OHEM loss) and is
timed end to end (model, optimiser, loader, epochs). Variants run interleaved, one run each per round (A, B, C, A,
B, C, ...), so machine load hits them alike; the ratios to the baseline are what to compare (min and median over
rounds). Variants:

- ``eager fp32``: the baseline. A new ``DataLoader(shuffle=True)`` every epoch (its workers respawn), NCHW tensors,
  fp32, SGD's per-parameter loop: anoseg's training loop before this benchmark, and the authors' numerics.
- one option at a time over the baseline: ``one loader`` (one loader for the run, workers persist),
  ``channels-last``, ``foreach SGD`` (multi-tensor step), ``bf16 autocast`` (where the CPU has bf16 instructions),
  ``compile`` (``torch.compile``, only with ``--compile``: its compile time is inside the run's time).
- ``anoseg fp32``: anoseg's defaults (``anoseg.engine.train``: one loader, channels-last, foreach SGD, fp32), what
  ``anoseg train`` does by default (and with ``--precision auto`` on a CPU without native bf16).
- ``anoseg auto``: what ``anoseg train --precision auto`` does on a CPU with native bf16: the same with bf16
  autocast.
- ``authors``: with ``--reference PATH`` (a checkout of HUST-SLOW/LFD), their own ``LFD._train`` on the same
  files, imported as ``bench/parity.py`` does (CPU, random init); it decodes and resizes every PNG every epoch.

    python bench/train.py [--size 128] [--epochs 2] [--rounds 3] [--workers 2] [--category weave]
                          [--compile] [--reference /path/to/LFD]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _parity_module():
    spec = importlib.util.spec_from_file_location("bench_parity", REPO / "bench" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Options:
    """What a variant changes over the plain eager fp32 loop."""

    one_loader: bool = False
    channels_last: bool = False
    foreach: bool = False
    bf16: bool = False
    compile: bool = False


def bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX): where ``train --precision auto`` picks bf16."""
    from anoseg.engine.train import native_bf16

    return native_bf16(torch.device("cpu"))


def train_anoseg(dataset, options: Options, epochs: int, workers: int, seed: int = 0) -> int:
    """Train LFD for ``epochs`` with ``options``; return the number of images seen. Mirrors ``train_one_epoch``."""
    from types import SimpleNamespace

    from anoseg.data.dataset import normalize
    from anoseg.engine import train as engine
    from anoseg.losses import build_loss
    from anoseg.models import create_model
    from anoseg.recipes import TrainSettings

    settings = TrainSettings(workers=workers)
    torch.manual_seed(seed)
    model = create_model("lfd", num_classes=2, backbone_weights="none").train()
    memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay, foreach=options.foreach)
    criterion = build_loss("lfd", thresh=settings.ohem_thresh, min_kept=settings.ohem_min_kept,
                           class_weights=settings.class_weights)
    network = torch.compile(model) if options.compile else model
    job = SimpleNamespace(model="lfd", seed=seed, recipe=SimpleNamespace(train=settings))
    fabric = SimpleNamespace(world_size=1, global_rank=0, device=torch.device("cpu"))
    batches = engine._batches_per_epoch(len(dataset), settings.batch_size, 1, True)
    run_loader = engine._loader(dataset, job, 0, fabric) if options.one_loader else None
    seen = 0
    for epoch in range(epochs):
        if run_loader is not None:
            engine._set_epoch(run_loader, epoch)
            loader = run_loader
        else:  # the loader anoseg built every epoch before
            generator = torch.Generator().manual_seed(seed * 1000 + epoch)
            loader = torch.utils.data.DataLoader(dataset, settings.batch_size, shuffle=True, generator=generator,
                                                 num_workers=workers)
        for step, (images, targets) in enumerate(loader):
            lr = engine.cosine_lr(epoch * batches + step, batches * epochs, settings.lr, settings.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs = normalize(images, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=options.bf16):
                outputs = network(inputs.contiguous(memory_format=memory_format))
            loss = criterion(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()  # anoseg reads the loss every step (progress, logs): the same sync here
            seen += len(images)
    return seen


def train_authors(ref, parity, data_root: Path, generated_root: Path, out: Path, category: str, size: int,
                  epochs: int, workers: int, seed: int = 0) -> int:
    """The authors' ``LFD._train`` for ``epochs`` on one category; return the number of images seen."""
    cfg = parity.reference_config(data_root, generated_root, out, size, epochs, epochs)
    cfg["training"]["num_workers"] = workers
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        ref.utils.setup_seed(seed)
        runner = ref.lfd.LFD(cfg)
        runner._train("mvtec_ad", category)
    return epochs * len(runner.train_dataloader.dataset)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="image side (a multiple of 32)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per variant (interleaved)")
    parser.add_argument("--workers", type=int, default=2, help="data-loader workers (the recipes' default: 2)")
    parser.add_argument("--category", default="weave", help="demo category to train on")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compile time included)")
    parser.add_argument("--only", help="comma list of variant names to run (default: all)")
    parser.add_argument("--reference", type=Path, help="local checkout of HUST-SLOW/LFD (the authors' code)")
    args = parser.parse_args(argv)

    from anoseg.data.build import build_manifest
    from anoseg.data.dataset import SegmentationDataset, load_cached
    from anoseg.data.manifest import select_rows

    parity = _parity_module()
    variants: dict[str, Options | None] = {
        "eager fp32": Options(), "one loader": Options(one_loader=True), "channels-last": Options(channels_last=True),
        "foreach SGD": Options(foreach=True),
    }
    if bf16_supported():
        variants["bf16 autocast"] = Options(bf16=True)
    if args.compile:
        variants["compile"] = Options(compile=True)
    variants["anoseg fp32"] = Options(one_loader=True, channels_last=True, foreach=True)
    if bf16_supported():
        variants["anoseg auto"] = Options(one_loader=True, channels_last=True, foreach=True, bf16=True)
    ref = parity.reference_lfd(args.reference) if args.reference else None
    if ref is not None:
        variants["authors"] = None
    if args.only:
        keep = {"eager fp32", *args.only.split(",")}
        variants = {k: v for k, v in variants.items() if k in keep}

    with tempfile.TemporaryDirectory() as tmp:
        data_root, generated_root = parity.make_bench_data(Path(tmp) / "data", args.size)
        frame, _ = build_manifest(dataset="bench", layout="mvtec_ad", data_root=data_root,
                                  categories=[args.category], generated_root=generated_root.parent, generator="seas")
        rows = select_rows(frame, "train", args.category)
        started = time.perf_counter()
        dataset = SegmentationDataset(load_cached(rows, (args.size, args.size), Path(tmp) / "cache"))
        cache_seconds = time.perf_counter() - started
        print(f"{len(dataset)} training images of {args.category} at {args.size}², {args.epochs} epochs per run, "
              f"batch 8, {args.workers} workers, {torch.get_num_threads()} threads, {args.rounds} rounds; "
              f"anoseg's decode-once cache took {cache_seconds:.2f} s (once, not in the runs)", flush=True)
        train_anoseg(dataset, Options(), 1, 0)  # warm-up, untimed: one-off kernel and allocator set-up
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name, options in variants.items():
                start = time.perf_counter()
                if options is None:
                    seen = train_authors(ref, parity, data_root, generated_root, Path(tmp) / f"ref{round_}",
                                         args.category, args.size, args.epochs, args.workers)
                else:
                    seen = train_anoseg(dataset, options, args.epochs, args.workers)
                rates[name].append(seen / (time.perf_counter() - start))
                print(f"  round {round_ + 1} {name:15s} {rates[name][-1]:6.2f} img/s", flush=True)

    base = rates["eager fp32"]
    print(f"\n{'variant':15s} {'img/s best':>10s} {'median':>8s}   ratio to eager fp32 (best, median)"
          + ("   ratio to the authors (best, median)" if ref else ""))
    for name, values in rates.items():
        # best = the run of minimum time, the one least disturbed by other load; median = the typical run
        line = (f"{name:15s} {max(values):10.2f} {statistics.median(values):8.2f}   "
                f"{max(values) / max(base):5.2f}x {statistics.median(values) / statistics.median(base):5.2f}x")
        if ref is not None:
            authors = rates["authors"]
            median = statistics.median(values) / statistics.median(authors)
            line += f"   {max(values) / max(authors):5.2f}x {median:5.2f}x"
        print(line)
    print("(best = the run of minimum time; ratios > 1 = faster than the reference)")


if __name__ == "__main__":
    main()
