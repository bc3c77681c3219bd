"""One function per pipeline stage, called by the CLI: each resolves paths, calls the engine, and prints a summary."""

from __future__ import annotations

from pathlib import Path

from anoseg.errors import AnosegError
from anoseg.io import write_json
from anoseg.log import console, warn
from anoseg.paths import data_report_path, manifest_path
from anoseg.recipes import Recipe


def run_prepare(recipe: Recipe, *, generated: Path | None, categories: list[str] | None, output: Path,
                strict: bool = True, mask_threshold: int | None = None, drop_empty_generated: bool = False) -> Path:
    """Validate the data, apply the split, write the manifest and data report atomically; print the counts."""
    from rich.progress import Progress

    from anoseg.data.manifest import count_table, write_manifest
    from anoseg.data.split import build_manifest

    if recipe.task != "anomaly":
        from anoseg.data.scenes import build_scene_manifest

        frame, report = build_scene_manifest(recipe, categories=categories, strict=strict)
    else:
        generated = generated if generated is not None else recipe.generated_dir()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("checking files", total=None)
            frame, report = build_manifest(
                dataset=recipe.name, layout=recipe.layout, data_root=recipe.data_root,
                categories=categories or (list(recipe.categories) or None), generated_root=generated,
                generator=recipe.generator, strict=strict, mask_threshold=mask_threshold,
                drop_empty_generated=drop_empty_generated,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
    target = manifest_path(output, recipe.name, recipe.generator)
    write_manifest(frame, target)
    write_json(data_report_path(output, recipe.name, recipe.generator), report)
    _print_counts(count_table(frame), f"{recipe.name} / {recipe.generator}")
    for message in report.get("warnings", []):
        warn(message)
    console.print(f"manifest: {target}")
    return target


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
              precision: str, seed: int, backbone_weights: str, resume: bool, fresh: bool) -> list[Path]:
    """Train one model per entry of ``runs`` (``all`` = unified, else a category)."""
    from anoseg.engine.train import TrainJob, train

    done = []
    for category in runs:
        job = TrainJob(recipe=recipe, model=model, category=category, generator=recipe.generator, output=output,
                       device=device, devices=devices, precision=precision, seed=seed,
                       backbone_weights=backbone_weights, resume=resume, fresh=fresh)
        console.print(f"[bold]train[/bold] {model} on {recipe.name}/{recipe.generator}/{category}")
        done.append(train(job))
        console.print(f"  checkpoints: {done[-1]}")
    return done


def run_eval(recipe: Recipe, model: str, runs: list[str], *, output: Path, device: str, epoch: int | None,
             protocol: str | None, save_scores: bool, overlays: int) -> list[dict]:
    """Evaluate the run(s) and print a metrics table (percentages)."""
    from anoseg.engine.evaluate import EvalJob, evaluate

    results = []
    for category in runs:
        job = EvalJob(recipe=recipe, model=model, category=category, generator=recipe.generator, output=output,
                      device=device, epoch=epoch, protocol=protocol, save_scores=save_scores, overlays=overlays)
        console.print(f"[bold]eval[/bold] {model} on {recipe.name}/{recipe.generator}/{category}")
        results.append(evaluate(job))
        print_metrics(results[-1])
        console.print(f"  metrics: {job.run / 'metrics.json'}")
    if not results:
        raise AnosegError("nothing to evaluate")
    return results


def print_metrics(metrics: dict) -> None:
    """A rich table of one metrics.json: categories as rows plus the mean, values in percent."""
    from rich.table import Table

    rows = {**metrics["categories"], "mean": metrics["mean"]}
    names = [k for k, v in metrics["mean"].items() if isinstance(v, float | int | type(None))]
    names = [k for k in names if not k.startswith("n_") and k != "pixel_threshold"]
    view = Table(title=f"{metrics['model']} · {metrics['dataset']}/{metrics['generator']} · epoch {metrics['epoch']}"
                       f" · {metrics['protocol']}")
    view.add_column("category")
    for name in names:
        view.add_column(name, justify="right")
    for category, values in rows.items():
        view.add_row(category, *["n/a" if values.get(n) is None else f"{100 * values[n]:.2f}" for n in names],
                     style="bold" if category == "mean" else None)
    console.print(view)
