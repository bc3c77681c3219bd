"""One function per command, called by the CLI with one typed job (``anoseg.jobs``): each applies the rules about
its job's values, resolves paths, calls the engine, and prints progress and a summary. Only the stages (this module
and the sweep it starts) print; the engine returns data or raises ``AnosegError``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from anoseg.constants import ALL_CATEGORIES, ANOMALY, PIXEL_AUPRO
from anoseg.errors import AnosegError
from anoseg.io import atomic_path, check_output, write_json
from anoseg.jobs import (
    BenchJob,
    EvalRunsJob,
    ExportJob,
    GenerateJob,
    InitJob,
    ModelsJob,
    PredictJob,
    PrepareJob,
    ReportJob,
    RunsJob,
    SweepJob,
    SynthJob,
    TrainRunsJob,
)
from anoseg.log import console, warn
from anoseg.paths import data_report_path, manifest_path
from anoseg.recipes import Recipe

if TYPE_CHECKING:
    from anoseg.engine.predict import PredictResult
    from anoseg.report import Report

T = TypeVar("T")


def run_synth(job: SynthJob) -> dict[str, Path]:
    """Write the built-in demo dataset (``anoseg.data.synth.make_demo_data``) and print where it went."""
    from anoseg.data.synth import make_demo_data

    check_output(job.out, folder=True, replace=False)
    with console.status("writing the demo dataset"):
        paths = make_demo_data(job.out, seed=job.seed, train_good=job.train_good)
    console.print(f"demo data: real {paths['data_root']}  generated {paths['generated_root']}")
    return paths


def run_prepare(job: PrepareJob) -> Path | None:
    """Validate the data, apply the split, write the manifest and data report atomically; print the counts.

    ``job.dry_run``: read and check everything leniently, print what was found and the split, write nothing (None).
    """
    from rich.progress import Progress

    from anoseg.data.build import build_manifest
    from anoseg.data.manifest import count_table, write_manifest
    from anoseg.engine.rundir import run_lock
    from anoseg.io import leftover_temp_files

    recipe, output, generated, strict, dry_run = job.recipe, job.output, job.generated, job.strict, job.dry_run
    categories = list(job.categories) if job.categories else None
    mask_threshold, drop_empty_generated = job.mask_threshold, job.drop_empty_generated
    if not dry_run:  # an unwritable manifest or report is refused before the files are checked
        check_output(manifest_path(output, recipe.name, recipe.generator))
        check_output(data_report_path(output, recipe.name, recipe.generator))
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
                drop_empty_generated=drop_empty_generated, image_size=recipe.image_size, split=recipe.split,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
    if dry_run:
        if recipe.task == ANOMALY:
            from anoseg.data.overview import print_overview

            print_overview(report, console, f"{recipe.name} / {recipe.generator} ({recipe.data_root})", frame)
        else:
            _print_counts(count_table(frame), f"{recipe.name}: what was found (nothing written)")
        return None
    if frame.empty:  # every category empty (or every file dropped): a manifest of nothing trains nothing
        found = report.get("warnings") or []
        raise AnosegError(f"no usable image under {recipe.data_root}" + (f" ({found[0]})" if found else "")
                          + "; nothing written")
    target = manifest_path(output, recipe.name, recipe.generator)
    report_file = data_report_path(output, recipe.name, recipe.generator)
    # The two files belong together: the report records the manifest's digest and is written first, the manifest
    # last. Killed in between, the pair disagrees and train/eval refuse it (check_prepared) instead of mixing them.
    # One prepare at a time writes them (the folder's lock), and clears what a killed one left.
    with run_lock(target.parent):
        for stale in leftover_temp_files(target) + leftover_temp_files(report_file):
            stale.unlink(missing_ok=True)
        with atomic_path(target) as staged:
            write_manifest(frame, staged)
            write_json(report_file, {**report, "manifest_sha256": _sha256(staged)})
    _print_counts(count_table(frame), f"{recipe.name} / {recipe.generator}")
    for message in report.get("warnings", []):
        warn(message)
    _print_validation(report)
    console.print(f"manifest: {target}")
    return target


def _print_validation(report: dict) -> None:
    """With ``split.val``: one line of what the validation part holds (the good parts per category are what an
    image-level FPR target is fixed on), and a warning for a category without any good validation image."""
    split = report.get("split") or {}
    rows = split.get("val_rows")
    if not split.get("val") or not isinstance(rows, dict):
        return
    good = {c: counts.get("val/good", 0) for c, counts in (report.get("counts") or {}).items()}
    console.print(f"validation (split.val = {split['val']:g}): {rows.get('good', 0)} good, "
                  f"{rows.get('real_defect', 0)} real defect, {rows.get('generated', 0)} generated images; good per "
                  f"category: {', '.join(f'{c} {n}' for c, n in good.items())}")
    empty = [c for c, n in good.items() if n == 0]
    if empty:
        warn(f"no good validation image for {', '.join(empty)}: an image-level --target-fpr is chosen on test there "
             "(oracle); raise split.val or add train/good images")


def run_init(job: InitJob) -> None:
    """What a folder of images holds and how it would split (a dry-run prepare), then the prepare command to run."""
    recipe = job.recipe
    run_prepare(PrepareJob(recipe, dry_run=True))
    console.print(f"next: anoseg prepare --layout {recipe.layout} --data-root {recipe.data_root}", highlight=False)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_prepared(output: Path, dataset: str, generator: str) -> None:
    """Refuse a manifest and data report that ``prepare`` did not write together (it was interrupted between them).

    Raises ``AnosegError`` naming both files. Outputs of older versions (no digest in the report) pass.
    """
    from anoseg.data.manifest import read_data_report

    manifest, report = manifest_path(output, dataset, generator), data_report_path(output, dataset, generator)
    if not (manifest.is_file() and report.is_file()):
        return
    digest = read_data_report(report).get("manifest_sha256")
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


def training_runs(recipe: Recipe, categories: tuple[str, ...] | None) -> list[str]:
    """The runs a ``--category`` value names: ``["all"]`` (one unified model) or one per category; None = the
    recipe's mode (``train.unified``)."""
    if not categories:
        return [ALL_CATEGORIES] if recipe.train.unified else list(recipe.categories)
    return list(categories)


def engine_jobs(kind: type[T], job: RunsJob, **values: Any) -> list[T]:
    """One engine job of ``kind`` (``TrainJob``, ``EvalJob``) per run of ``job.categories`` (``training_runs``),
    made and so checked before any work: every field ``job`` and ``kind`` share carries over by name (no hand copy:
    a new option is a field of both), with ``category``, the recipe's generator and ``values`` (the fields named
    otherwise, e.g. ``resume_epochs``)."""
    shared = {f.name for f in dataclasses.fields(kind)} & {f.name for f in dataclasses.fields(job)}
    carried = {name: getattr(job, name) for name in shared}
    return [kind(**carried, category=category, generator=job.recipe.generator, **values)
            for category in training_runs(job.recipe, job.categories)]


def run_train(job: TrainRunsJob) -> list[Path]:
    """Train one model per run of ``job.categories`` (``all`` = unified, else a category); return the run folders.

    Raises ``AnosegError`` for ``resume`` with ``fresh``, an unknown model or device, or an unfinished prepare.
    """
    from anoseg.engine.checkpoint import resolve_device
    from anoseg.engine.train import TrainJob, train
    from anoseg.models import model_spec

    recipe = job.recipe
    runs = engine_jobs(TrainJob, job, resume_epochs=job.epochs)  # each checks its values (TrainJob)
    model_spec(job.model)  # an unknown name fails before any data work
    resolve_device(job.device, job.devices)  # the machine's context: CUDA present, enough GPUs
    check_prepared(job.output, recipe.name, recipe.generator)
    if job.download_weights:  # an environment variable reaches DDP worker processes too (anoseg.models.weights)
        os.environ["ANOSEG_DOWNLOAD_WEIGHTS"] = "1"
    if job.select is not None:
        _check_validation(job.select, recipe, job.output)
    done = []
    for run in runs:
        category = run.category
        console.print(f"[bold]train[/bold] {job.model} on {recipe.name}/{recipe.generator}/{category}")
        done.append(train(run))
        console.print(f"  checkpoints: {done[-1]}")
        from anoseg.engine.rundir import is_worker_process

        if job.select is not None and not is_worker_process():  # DDP ranks > 0 re-run the command: rank 0 chooses
            from anoseg.engine.evaluate import EvalJob
            from anoseg.engine.evaluate_anomaly import record_selection
            from anoseg.engine.rundir import run_lock

            with run_lock(run.run), _progress_bar() as progress:
                record = record_selection(EvalJob(recipe=recipe, model=job.model, category=category,
                                                  generator=recipe.generator, output=job.output, seed=job.seed,
                                                  device=job.device, select=job.select), progress)
            console.print(f"  selected epoch {record['epoch']} by {record['metric']} = {100 * record['value']:.2f} "
                          f"({record['checkpoint']}); `anoseg eval` without --epoch evaluates it", highlight=False)
    return done


def _check_validation(select: str, recipe: Recipe, output: Path) -> None:
    """``--select`` needs an anomaly recipe and validation rows in the manifest: refused before any work."""
    from anoseg.constants import SPLIT_VAL
    from anoseg.data.manifest import read_manifest
    from anoseg.engine.operating import parse_select

    parse_select(select)
    if recipe.task != ANOMALY:
        raise AnosegError(f"--select is for anomaly recipes, not {recipe.name} ({recipe.task})")
    manifest = read_manifest(manifest_path(output, recipe.name, recipe.generator), check_files=False)
    if not (manifest["split"] == SPLIT_VAL).any():
        raise AnosegError(f"--select {select}: {manifest_path(output, recipe.name, recipe.generator)} has no "
                          f"validation images (split {SPLIT_VAL!r}); prepare the data with a validation split first")


def run_eval(job: EvalRunsJob) -> list[dict]:
    """Evaluate the run(s) and print a metrics table (percentages) for each; return their metrics dicts."""
    from anoseg.engine.checkpoint import resolve_device
    from anoseg.engine.curves import log_eval_metrics
    from anoseg.engine.evaluate import EvalJob, evaluate
    from anoseg.engine.operating import parse_points
    from anoseg.engine.rundir import run_lock
    from anoseg.models import model_spec
    from anoseg.paths import eval_dir

    recipe = job.recipe
    model_spec(job.model)
    resolve_device(job.device)
    check_prepared(job.output, recipe.name, recipe.generator)
    if recipe.task != ANOMALY and (job.select or job.target_fpr or job.target_recall):
        raise AnosegError(f"--select, --target-fpr and --target-recall are for anomaly recipes, not {recipe.name} "
                          f"({recipe.task})")
    parse_points(job.target_fpr, job.target_recall)  # a malformed target fails before any scoring
    if job.select is not None:
        if job.epoch is not None:
            raise AnosegError("--select and --epoch contradict each other: --epoch names the checkpoint, --select "
                              "chooses it on the validation split")
        _check_validation(job.select, recipe, job.output)
    results = []
    for run in engine_jobs(EvalJob, job):
        category = run.category
        console.print(f"[bold]eval[/bold] {job.model} on {recipe.name}/{recipe.generator}/{category}")
        # the run's lock, as train holds it: an eval never writes into a run being trained (or `--fresh`-replaced)
        # or beside another eval of it, and clears what a killed eval left (anoseg.engine.results.remove_leftovers)
        with run_lock(run.run):
            with _progress_bar() as progress:
                results.append(evaluate(run, progress))
            done = results[-1]
            log_eval_metrics(run.run, done["epoch"], done["mean"])  # the run's eval curve (anoseg.engine.curves)
        for message in results[-1]["warnings"]:
            warn(message)
        print_metrics(results[-1])
        print_operating_points(results[-1])
        console.print(f"  results of epoch {done['epoch']} (weights {done['weights_sha256'][:12]}): "
                      f"{eval_dir(run.run, done['epoch'], done['variant'])}", highlight=False)
    if not results:
        raise AnosegError("nothing to evaluate")
    return results


@contextmanager
def _progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A transient bar driven by an engine's ``progress(description, done, total)`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as view:
        task = view.add_task("", total=None)
        yield lambda description, done, total: view.update(task, description=description, completed=done,
                                                           total=total)


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


def print_operating_points(metrics: dict) -> None:
    """A rich table of the operating points of one metrics.json (their ``mean`` entries over categories): where each
    threshold was chosen, the parts flagged and missed on test, and the test rates at image and pixel level."""
    from rich.table import Table

    points = [p for p in metrics.get("operating_points") or [] if p["category"] == "mean"]
    if not points:
        return
    view = Table(title="operating points: test results at thresholds fixed beforehand (values in %; counts = parts)")
    for column in ("point", "chosen on", "threshold", "TP", "FP", "TN", "FN", "I-prec", "I-recall", "I-F1", "I-FPR",
                   "P-prec", "P-recall", "P-F1", "P-IoU", "P-FPR"):
        view.add_column(column, justify="left" if column in ("point", "chosen on") else "right")

    def pct(value) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}"

    for p in points:
        image, pixel = p["image"], p["pixel"]
        deployed = " *" if p["name"] == metrics.get("deployed_point") else ""
        view.add_row(p["rule"] + deployed,
                     p["chosen_on"], f"{p['threshold']:.4f}", *[str(image[k]) for k in ("tp", "fp", "tn", "fn")],
                     pct(image["precision"]), pct(image["recall"]), pct(image["f1"]), pct(image["fpr"]),
                     pct(pixel["precision"]),
                     pct(pixel["recall"]), pct(pixel["f1"]), pct(pixel["iou"]), pct(pixel["fpr"]))
    console.print(view)
    console.print("* the point predict and export use; TP/FP/TN/FN: defective parts flagged / good parts flagged / "
                  "good parts passed / defective parts missed (a part is flagged when any pixel is >= the threshold)",
                  style="dim", highlight=False)


def run_report(job: ReportJob) -> list[Report]:
    """Build the report of each dataset asked for (``anoseg.report``), print its tables and the files written."""
    from anoseg.report import build_report, print_report, report_targets

    reports = []
    for name, target in report_targets(job.output, job.dataset, job.out):
        with console.status(f"building the {name} report" + (" and its figures" if job.figures else "")):
            result = build_report(job.output, name, target, fmt=job.fmt, figures=job.figures,
                                  extra_metrics=job.extra_metrics, ci=job.ci, by=job.by)
        print_report(result, console)
        for path in result.paths:
            console.print(f"wrote {path}")
        reports.append(result)
    return reports


def run_bench(job: BenchJob) -> dict:
    """Benchmark the models, print a table and write ``<output>/bench/bench.json``."""
    from rich.table import Table

    from anoseg.bench import run_bench as bench
    from anoseg.models import create_model, list_models
    from anoseg.paths import bench_path

    size, device, runs, warmup, onnx, output = job.size, job.device, job.runs, job.warmup, job.onnx, job.output
    compile_model = job.compile_model
    names = list(job.models) if job.models else list_models()
    for name in names:
        create_model(name)  # unknown names fail before any timing starts
    check_output(bench_path(output))
    with console.status("benchmarking") as status:
        result = bench(names, size, device, runs=runs, warmup=warmup, compile_model=compile_model, onnx=onnx,
                       output=output, progress=lambda name: status.update(f"benchmarking {name}"),
                       batches=job.batches)
    view = Table(title=f"{result['device_kind']} · batch 1 · {size[0]}×{size[1]} · {result['threads']} threads · "
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
    for batch in result["batches"][1:]:  # throughput at the larger batches: images/s
        wide = Table(title=f"batch {batch} · images/s")
        for column in ("model", "eager", "fast", *(["onnx"] if onnx else [])):
            wide.add_column(column, justify="left" if column == "model" else "right")
        for row in result["models"]:
            timed = row["batches"][str(batch)]
            wide.add_row(row["model"], *[f"{timed[key]:.1f}" for key in ("images_per_s", "fast_images_per_s",
                                                                          *(["onnx_images_per_s"] if onnx else []))])
        console.print(wide)
    console.print(f"bench: {bench_path(output)}")
    return result


def run_models(job: ModelsJob) -> None:
    """Print the model registry (records only: nothing is built and torch is not imported)."""
    from rich.table import Table

    from anoseg.models.registry import MODELS

    if job.names_only:
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


def run_generate(job: GenerateJob) -> dict:
    """Write generated pairs under ``<generated_root>/<method>`` (or ``job.out``) and print what was made."""
    from rich.progress import Progress

    from anoseg.data.generators import generate_pairs

    recipe, method, count, out, seed, textures = job.recipe, job.method, job.count, job.out, job.seed, job.textures
    overwrite = job.overwrite
    categories = None if not job.categories or ALL_CATEGORIES in job.categories else list(job.categories)

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


def run_sweep(job: SweepJob) -> dict | None:
    """Expand the sweep (the sweep file's values, overridden by the job's), then print its cells and commands
    (``dry_run``) or run them (``anoseg.sweep.run_sweep``) and return the summary.

    Raises ``AnosegError`` for a value the sweep file or the options cannot hold (``anoseg.sweep.sweep_settings``,
    ``Recipe.override`` for ``--set``), seeds that are not whole numbers, or more local jobs than CUDA devices.
    """
    from anoseg.sweep import EngineOptions, build_spec, dry_run_lines, expand, load_sweep_file, parse_assignments
    from anoseg.sweep import run_sweep as sweep

    raw = load_sweep_file(job.sweep_file) if job.sweep_file else {}
    settings, grid = parse_assignments(job.assignments)
    try:
        seeds = [int(s) for s in job.seeds] if job.seeds else None
    except ValueError:
        raise AnosegError(f"seeds must be whole numbers, e.g. --seed 0,1; not {','.join(job.seeds)!r}") from None
    spec = build_spec(raw, {"name": job.name, "recipe": job.recipe, "models": job.models, "seeds": seeds,
                            "generators": job.generators, "categories": job.categories, "device": job.device},
                      settings, grid)
    plan = expand(spec, job.output)
    if job.dry_run:
        for line in dry_run_lines(plan):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        return None
    gpus = 0
    if job.executor == "local" and spec.device != "cpu":
        import torch

        gpus = torch.cuda.device_count()
    if job.jobs is not None and job.jobs < 1:
        raise AnosegError("--jobs must be at least 1")
    jobs = 1 if job.executor == "debug" else (job.jobs or max(gpus, 1))
    if gpus and jobs > gpus:
        raise AnosegError(f"--jobs {jobs} > {gpus} CUDA device(s): one cell per device")
    return sweep(plan, EngineOptions(executor=job.executor, jobs=jobs, gpus=gpus, timeout_min=job.timeout_min,
                                     slurm_partition=job.partition, slurm_gpus_per_job=job.gpus_per_job,
                                     slurm_cpus_per_job=job.cpus_per_job),
                 report=job.report)


def run_export(job: ExportJob) -> dict:
    """Export a checkpoint (``anoseg.export.export_model``) and print what was written and how well it verified."""
    from anoseg.export import export_model

    info = export_model(job.checkpoint, fmt=job.fmt, out=job.out, image_size=job.image_size, dynamic=job.dynamic,
                        exporter=job.exporter, threshold=job.threshold, operating_point=job.operating_point)
    check, fmt = info["verification"], job.fmt
    via = f"{info['exporter']}, opset {info['opset']}" if fmt == "onnx" else info["exporter"]
    console.print(f"exported {info['model']} to {info['path']} ({via}); max |{fmt} − torch| = "
                  f"{check['max_abs_diff']:.2e} (tolerance {check['tolerance']:.1e})", highlight=False)
    if info.get("threshold") is not None:
        point = info.get("operating_point") or {}
        console.print(f"threshold {info['threshold']:.4f} ({point.get('label', 'given with --threshold')})"
                      + (" — the mean over categories; the sidecar holds each one's" if info.get("thresholds") and
                         len(info["thresholds"]) > 1 else ""), highlight=False)
    return info


#: Up to this many images, predict prints each image's result; beyond, the progress bar and predictions.csv do.
PREDICT_LINES = 50


def run_predict(job: PredictJob) -> PredictResult:
    """Predict (``anoseg.engine.predict``): the threshold used and why, a progress bar with images/s, each image's
    result (for small runs), the skipped images and where everything went."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from anoseg.engine import predict as engine

    prediction = engine.prepare(job)
    for note in prediction.notes:
        warn(note)
    if not prediction.dense:
        label = f" ({prediction.point})" if prediction.point else ""
        console.print(f"threshold {prediction.threshold:.4f}{label}: {prediction.why}", highlight=False)
    started = time.perf_counter()
    with Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TimeRemainingColumn(), console=console, transient=True) as view:
        task = view.add_task("predict", total=len(prediction.files), rate="")

        def progress(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            view.update(task, completed=done, rate=f"{rate:.1f} images/s")

        result = engine.write_predictions(prediction, progress)
    elapsed = time.perf_counter() - started
    if len(result.rows) <= PREDICT_LINES:
        for row in result.rows:
            if "score" in row:
                line = f"score {row['score']:.4f}  defect pixels {100 * row['defect_fraction']:.2f}%"
            elif "road_fraction" in row:
                line = f"road pixels {100 * row['road_fraction']:.2f}%"
            else:
                line = f"mostly {row['dominant_class']} ({100 * row['dominant_fraction']:.1f}%)"
            console.print(f"{row['image']}  {line}", highlight=False)
    skipped = result.skipped
    if skipped:
        warn(f"skipped {len(skipped)} unreadable image(s), listed in {result.out / 'skipped.csv'}: "
             + "; ".join(s["reason"] for s in skipped[:3]) + (" …" if len(skipped) > 3 else ""))
    what = ("masks" if not prediction.dense else "maps") + (" and overlays" if job.overlays else "")
    console.print(f"wrote {len(result.rows)} {what} and predictions.csv to {result.out} "
                  f"({len(prediction.files) / max(elapsed, 1e-9):.1f} images/s)", highlight=False)
    return result
