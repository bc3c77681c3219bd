"""One function per pipeline stage, called by the CLI: each resolves paths, calls the engine, and prints a summary."""

from __future__ import annotations

from pathlib import Path

from anoseg.constants import ANOMALY, PIXEL_AUPRO
from anoseg.errors import AnosegError
from anoseg.io import atomic_path, write_json
from anoseg.log import console, warn
from anoseg.paths import DEFAULT_SEED, data_report_path, manifest_path
from anoseg.recipes import Recipe


def run_prepare(recipe: Recipe, *, generated: Path | None, categories: list[str] | None, output: Path,
                strict: bool = True, mask_threshold: int | None = None, drop_empty_generated: bool = False,
                dry_run: bool = False) -> Path | None:
    """Validate the data, apply the split, write the manifest and data report atomically; print the counts.

    ``dry_run``: read and check everything leniently, print what was found and the split, write nothing (None)."""
    from rich.progress import Progress

    from anoseg.data.build import build_manifest
    from anoseg.data.manifest import count_table, write_manifest

    if recipe.task != ANOMALY:
        from anoseg.data.scenes import build_scene_manifest

        frame, report = build_scene_manifest(recipe, categories=categories, strict=strict)
    else:
        generated = generated if generated is not None else recipe.generated_dir()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("checking files", total=None)
            frame, report = build_manifest(
                dataset=recipe.name, layout=recipe.layout, data_root=recipe.data_root,
                categories=categories, expected_categories=list(recipe.categories) or None, generated_root=generated,
                generator=recipe.generator, strict=strict and not dry_run, mask_threshold=mask_threshold,
                drop_empty_generated=drop_empty_generated, image_size=recipe.image_size,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
    if dry_run:
        if recipe.task == ANOMALY:
            from anoseg.data.overview import print_overview

            print_overview(report, console, f"{recipe.name} / {recipe.generator} ({recipe.data_root})", frame)
        else:
            _print_counts(count_table(frame), f"{recipe.name}: what was found (nothing written)")
        return None
    target = manifest_path(output, recipe.name, recipe.generator)
    # The two files belong together: the report records the manifest's digest and is written first, the manifest
    # last. Killed in between, the pair disagrees and train/eval refuse it (check_prepared) instead of mixing them.
    with atomic_path(target) as staged:
        write_manifest(frame, staged)
        write_json(data_report_path(output, recipe.name, recipe.generator),
                   {**report, "manifest_sha256": _sha256(staged)})
    _print_counts(count_table(frame), f"{recipe.name} / {recipe.generator}")
    for message in report.get("warnings", []):
        warn(message)
    console.print(f"manifest: {target}")
    return target


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_prepared(output: Path, dataset: str, generator: str) -> None:
    """Refuse a manifest and data report that ``prepare`` did not write together (it was interrupted between them).

    Raises ``AnosegError`` naming both files. Outputs of older versions (no digest in the report) pass.
    """
    import json

    manifest, report = manifest_path(output, dataset, generator), data_report_path(output, dataset, generator)
    if not (manifest.is_file() and report.is_file()):
        return
    try:
        digest = json.loads(report.read_text(encoding="utf-8")).get("manifest_sha256")
    except (ValueError, AttributeError):
        raise AnosegError(f"{report} is not a data report written by `anoseg prepare`; run prepare again") from None
    if digest is not None and digest != _sha256(manifest):
        raise AnosegError(f"{manifest} and {report} are not from the same `anoseg prepare` (it was interrupted "
                          "between them); run prepare again")


def _print_counts(table, title: str) -> None:
    from rich.table import Table

    view = Table(title=title)
    frame = table.reset_index()
    for column in frame.columns:
        view.add_column(str(column), justify="right" if frame[column].dtype.kind in "iu" else "left")
    for row in frame.itertuples(index=False):
        view.add_row(*[str(v) for v in row])
    console.print(view)


def run_train(recipe: Recipe, model: str, runs: list[str], *, output: Path, device: str, devices: int,
              precision: str, seed: int, backbone_weights: str, resume: bool, fresh: bool,
              resume_epochs: int | None = None) -> list[Path]:
    """Train one model per entry of ``runs`` (``all`` = unified, else a category).

    ``resume_epochs``: with ``resume``, the epoch count asked for on the command line (None = each run's own).
    """
    from anoseg.engine.checkpoint import resolve_device
    from anoseg.engine.train import TrainJob, train
    from anoseg.models import model_spec

    model_spec(model)  # an unknown name fails before any data work
    resolve_device(device, devices)
    check_prepared(output, recipe.name, recipe.generator)
    done = []
    for category in runs:
        job = TrainJob(recipe=recipe, model=model, category=category, generator=recipe.generator, output=output,
                       device=device, devices=devices, precision=precision, seed=seed,
                       backbone_weights=backbone_weights, resume=resume, fresh=fresh, resume_epochs=resume_epochs)
        console.print(f"[bold]train[/bold] {model} on {recipe.name}/{recipe.generator}/{category}")
        done.append(train(job))
        console.print(f"  checkpoints: {done[-1]}")
    return done


def run_eval(recipe: Recipe, model: str, runs: list[str], *, output: Path, device: str, epoch: int | None,
             protocol: str | None, save_scores: bool, overlays: int, seed: int = DEFAULT_SEED,
             resolution: str = "model", aupro: bool = False) -> list[dict]:
    """Evaluate the run(s) and print a metrics table (percentages)."""
    from anoseg.engine.checkpoint import resolve_device
    from anoseg.engine.evaluate import EvalJob, evaluate
    from anoseg.models import model_spec
    from anoseg.paths import eval_dir

    model_spec(model)
    resolve_device(device)
    check_prepared(output, recipe.name, recipe.generator)
    results = []
    for category in runs:
        job = EvalJob(recipe=recipe, model=model, category=category, generator=recipe.generator, output=output,
                      device=device, epoch=epoch, protocol=protocol, save_scores=save_scores, overlays=overlays,
                      seed=seed, resolution=resolution, aupro=aupro)
        console.print(f"[bold]eval[/bold] {model} on {recipe.name}/{recipe.generator}/{category}")
        results.append(evaluate(job))
        print_metrics(results[-1])
        done = results[-1]
        console.print(f"  results of epoch {done['epoch']} (weights {done['weights_sha256'][:12]}): "
                      f"{eval_dir(job.run, done['epoch'])}", highlight=False)
    if not results:
        raise AnosegError("nothing to evaluate")
    return results


SHORT_NAMES = {"image_auroc": "I-AUROC", "image_ap": "I-AP", "image_f1max": "I-F1max", "pixel_auroc": "P-AUROC",
               "pixel_ap": "P-AP", "pixel_f1max": "P-F1max", "iou": "IoU", PIXEL_AUPRO: "P-AUPRO"}


def print_metrics(metrics: dict) -> None:
    """A rich table of one metrics.json: categories as rows plus the mean, values in percent."""
    from rich.table import Table

    rows = {**metrics["categories"], "mean": metrics["mean"]}
    names = [k for k, v in metrics["mean"].items() if isinstance(v, float | int | type(None))]
    # per-class IoU of scene runs is in metrics.csv and the report; the terminal gets the summary columns
    names = [k for k in names if not k.startswith(("n_", "iou/")) and k not in ("pixel_threshold", "threshold")]
    view = Table(title=f"{metrics['model']} · {metrics['dataset']}/{metrics['generator']} · epoch {metrics['epoch']}"
                       f" · {metrics['protocol']}")
    view.add_column("category")
    for name in names:
        view.add_column(SHORT_NAMES.get(name, name), justify="right")
    for category, values in rows.items():
        view.add_row(category, *["n/a" if values.get(n) is None else f"{100 * values[n]:.2f}" for n in names],
                     style="bold" if category == "mean" else None)
    console.print(view)


def run_bench(models: list[str] | None, size: tuple[int, int], *, device: str, runs: int, warmup: int, onnx: bool,
              compile_model: bool, output: Path) -> dict:
    """Benchmark the models, print a table and write ``<output>/bench/bench.json``."""
    from rich.table import Table

    from anoseg.bench import run_bench as bench
    from anoseg.models import create_model, list_models
    from anoseg.paths import bench_path

    names = models or list_models()
    for name in names:
        create_model(name)  # unknown names fail before any timing starts
    with console.status("benchmarking") as status:
        result = bench(names, size, device, runs=runs, warmup=warmup, compile_model=compile_model, onnx=onnx,
                       output=output, progress=lambda name: status.update(f"benchmarking {name}"))
    view = Table(title=f"{result['device']} · batch 1 · {size[0]}×{size[1]} · {result['threads']} threads · "
                       f"median of {runs}")
    for column in ("model", "params", "GMACs", "ms", "FPS", "peak MB", "fast ms", "fast ×", "fast path"):
        view.add_column(column, justify="left" if column in ("model", "fast path") else "right")
    if onnx:
        view.add_column("onnx ms", justify="right")
        view.add_column("onnx ×", justify="right")
    for row in result["models"]:
        cells = [row["model"], f"{row['params']:,}", f"{row['gmacs']:.3f}", f"{row['latency_ms']:.1f}",
                 f"{row['fps']:.1f}", f"{row['peak_mem_mb']:.1f}", f"{row['fast_latency_ms']:.1f}",
                 f"{row['fast_speedup']:.2f}", row["fast_path"]]
        if onnx:
            cells += [f"{row['onnx_latency_ms']:.1f}", f"{row['onnx_speedup']:.2f}"]
        view.add_row(*cells)
    console.print(view)
    console.print(f"bench: {bench_path(output)}")
    return result


def run_models(*, names_only: bool = False) -> None:
    """Print the model registry (records only: nothing is built and torch is not imported)."""
    from rich.table import Table

    from anoseg.models.registry import MODELS

    if names_only:
        console.print("\n".join(MODELS), highlight=False)
        return
    view = Table(title="segmenters (used parameters and MACs at 256², 2 classes, measured from the authors' code)")
    for title in ("model", "display name", "family", "--backbone-weights initialises", "imagenet", "used params",
                  "GMACs"):
        view.add_column(title, justify="right" if title in ("used params", "GMACs") else "left")
    notes = []
    for spec in MODELS.values():
        weights, ref = spec.weight_spec, spec.reference
        mark = f" ({len(notes) + 1})" if ref.note else ""
        if ref.note:
            notes.append(f"({len(notes) + 1}) {spec.name}: {ref.note}")
        parts = weights.imagenet_parts
        imagenet = ("torchvision" + (f" ({parts[0]}–{parts[-1]})" if parts else "")) if weights.imagenet else "-"
        view.add_row(spec.name + mark, spec.display_name, spec.family, weights.label, imagenet,
                     f"{ref.params_2:,}" if ref.params_2 else "-", f"{ref.macs_256 / 1e9:.3f}" if ref.macs_256 else "-")
    console.print(view)
    for note in notes:
        console.print(note, highlight=False, markup=False)


def run_generate(recipe: Recipe, method: str, *, categories: list[str] | None, count: int, out: Path | None,
                 seed: int, textures: Path | None, overwrite: bool) -> dict:
    """Write generated pairs under ``<generated_root>/<method>`` (or ``out``) and print what was made."""
    from rich.progress import Progress

    from anoseg.data.generators import generate_pairs

    if recipe.task != ANOMALY:
        raise AnosegError(f"generate makes defect pairs for anomaly recipes, not for {recipe.name} ({recipe.task})")
    if count < 1:
        raise AnosegError("--count must be at least 1")
    target = out or recipe.generated_root / method
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"generating ({method})", total=None)
        summary = generate_pairs(method=method, layout=recipe.layout, data_root=recipe.data_root,
                                 categories=categories or list(recipe.categories), count=count, out=target, seed=seed,
                                 textures=textures, overwrite=overwrite,
                                 progress=lambda done, total: progress.update(task, completed=done, total=total))
    for category, counts in summary["categories"].items():
        console.print(f"  {category}: {counts['written']} pairs from {counts['sources_used']} train/good images, "
                      f"{counts['skipped_empty']} empty draw(s) skipped and redrawn", highlight=False)
    console.print(f"generated pairs: {target}  (then: anoseg prepare --recipe {recipe.name} --generator {method})")
    return summary
