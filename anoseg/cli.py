"""The ``anoseg`` command line. It parses options, applies them over the recipe, puts them in one typed job
(``anoseg.jobs``) and calls the one stage function (``anoseg.stages``) that takes it; it holds no other logic.

Heavy packages (torch, anomalib, pandas) are imported inside the commands so that ``anoseg --help`` is instant.
"""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path

import click

from anoseg.constants import (
    DEMO_TRAIN_GOOD,
    EXECUTORS,
    EXPORT_FORMATS,
    EXPORTERS,
    GENERATION_METHODS,
    PIXEL_AUPRO,
    PRECISIONS,
    PROTOCOLS,
    REPORT_BY,
    REPORT_FORMATS,
    RESOLUTIONS,
    SIZE_MULTIPLE,
)
from anoseg.errors import AnosegError, Interrupted
from anoseg.paths import DEFAULT_SEED

DEBUG = {"on": False}


class Cli(click.Group):
    """Turns user errors into one red line (exit 2) and bugs into one line too unless ``--debug`` (exit 1)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Interrupted as exc:
            _fail(str(exc), 130)
        except AnosegError as exc:
            _fail(str(exc), 2)
        except KeyboardInterrupt:
            _fail("interrupted; nothing was changed by the interrupted step (outputs are written atomically)", 130)
        except click.ClickException as exc:  # bad options: the same one line as every other user error
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug: one line, traceback only with --debug
            full = _no_room(exc)
            if full is not None:  # a full disk met outside anoseg.io's writes (a staging folder, a log): exit 2 too
                _fail(full, 2)
            if DEBUG["on"]:
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)


def _no_room(exc: Exception) -> str | None:
    """The one line for an ``OSError`` of a write that did not fit (``anoseg.io.NO_ROOM``), else None."""
    from anoseg.io import no_room

    if not isinstance(exc, OSError):
        return None
    full = no_room(exc.filename or "the output", exc)
    return None if full is None else str(full)


def _fail(message: str, code: int) -> None:
    from rich.markup import escape

    from anoseg.log import err_console

    # escaped: a message naming a shape or a list ("[n, 4, h, w]") must not be read as rich markup and vanish
    err_console.print(f"[bold red]error:[/bold red] [red]{escape(message)}[/red]", highlight=False, soft_wrap=True)
    sys.exit(code)


# ---- option types: a value's rule is checked once, by its owner (the recipe, the job, the engine), never here too --

class DeviceType(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` in --help; the name and the presence of CUDA are checked on use
    (``anoseg.engine.checkpoint.resolve_device``; a sweep by ``anoseg.sweep``)."""

    name = "auto|cpu|cuda|cuda:N"


class FiniteFloat(click.FloatRange):
    """A ``FloatRange`` that also refuses nan and inf."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _known_layout(ctx, param, value):
    """``--layout``: a registered dataset layout (``anoseg.data.layouts.LAYOUTS``), read when the option is given."""
    if value is not None:
        from anoseg.data.layouts import LAYOUTS

        if value not in LAYOUTS:
            raise click.BadParameter(f"unknown layout {value!r}; choose one of: {', '.join(LAYOUTS)}", ctx, param)
    return value


DEVICE = DeviceType()
SEED = click.IntRange(0, 2**32 - 1)


# ---- shared option vocabulary -------------------------------------------------------------------------------------

def recipe_option(default: str = "demo"):
    return click.option("--recipe", default=default, show_default=True,
                        help="Recipe name (recipes/NAME.yaml) or path to a recipe YAML.")


output_option = click.option("--output", "--outputs", "output", type=click.Path(path_type=Path, file_okay=False),
                             default="outputs",
                             show_default=True, help="Root folder of all outputs.")
generator_option = click.option("--generator", help="Name of the generated-pair set (none = real data only). "
                                "Default: the recipe's.")
seed_option = click.option("--seed", type=SEED, default=DEFAULT_SEED, show_default=True, help="Random seed.")
device_option = click.option("--device", type=DEVICE, default="auto", show_default=True,
                             help="auto (CUDA when present), cpu, cuda or cuda:N.")
model_option = click.option("--model", "model_name", required=True, help="Segmenter name; `anoseg models` lists them.")
category_option = click.option(
    "--category", "--categories", "category",
    help="`all` (one unified model), one category, or a comma list (one model each). Default: the recipe's mode.")


def _load(recipe: str, settings: dict[str, object] | None = None):
    """The recipe with the options given (dotted recipe keys; a None value: not given) applied by ``Recipe.override``,
    which validates them as a recipe file is validated."""
    from anoseg.recipes import load_recipe

    return load_recipe(recipe).override({key: value for key, value in (settings or {}).items() if value is not None})


def _csv(value: str | None, option: str | None = None) -> tuple[str, ...] | None:
    """A comma list option: its non-empty items, or None when not given. Given but empty (``--category ,``) is an
    ``AnosegError`` naming ``option`` (never read as "not given": that would select everything)."""
    items = tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()
    if option is not None and value is not None and not items:
        raise AnosegError(f"{option}: empty list {value!r}; give one or more comma-separated names")
    return items or None


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(package_name="anoseg")
def main(debug: bool) -> None:
    """anoseg: supervised industrial anomaly segmentation.

    \b
    Stages, each writing files the next one reads:
      synth     write the built-in demo dataset (MVTec layout + generated pairs)
      generate  make defect image/mask pairs from train/good (perlin, cutpaste)
      init      show what a folder of your own images holds and how it would split
      prepare   split real + generated data into a manifest (LFD protocol)
      train     fit a segmenter (lfd, sanet_*, liteseg_*, lednet, sfnet_lite_*, ...)
      eval      image/pixel AUROC, AP, F1-max and IoU on the test split
      predict   masks and heatmaps for new images (checkpoint or ONNX)
      report    the papers' tables and figures from everything under outputs/
      bench     parameters, MACs, latency of the segmenters
      export    ONNX / TorchScript for deployment
      sweep     a grid of models × generators × seeds: prepare → train → eval → report
    """
    DEBUG["on"] = debug
    if hasattr(signal, "SIGXFSZ"):  # past `ulimit -f` a write fails with EFBIG (one line, exit 2) instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (CPython ignores it already; embedders may not)
    from anoseg.environment import check_thread_settings
    from anoseg.log import print_undecodable_names

    print_undecodable_names()
    check_thread_settings()  # before any command imports torch, whose OpenMP reads it once


@main.command()
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default="data/demo", show_default=True,
              help="Folder to write the demo dataset into.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="The same seed writes the same files.")
@click.option("--train-good", type=click.IntRange(min=DEMO_TRAIN_GOOD), default=DEMO_TRAIN_GOOD, show_default=True,
              help="Good training images per category; the extra ones (for a validation split, recipe demo_val) "
                   "change no other file.")
def synth(out: Path, seed: int, train_good: int) -> None:
    """Write the built-in demo dataset: an MVTec-layout set and SeaS-layout generated pairs."""
    from anoseg.jobs import SynthJob
    from anoseg.stages import run_synth

    run_synth(SynthJob(out=out, seed=seed, train_good=train_good))


@main.command()
@recipe_option()
@click.option("--data-root", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="The original dataset. Default: the recipe's.")
@click.option("--generated", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Folder of generated pairs <category>/<defect>/image|mask. "
              "Default: <recipe generated_root>/<generator>.")
@generator_option
@category_option
@output_option
@seed_option
@click.option("--lenient", is_flag=True, help="Skip and report bad files instead of stopping at the first one.")
@click.option("--mask-threshold", type=click.IntRange(0, 255),
              help="Mask pixels above this value are defect (default: > 0; 127 for JPEG).")
@click.option("--drop-empty-generated", is_flag=True, help="Leave out generated pairs whose mask is empty.")
@click.option("--layout", callback=_known_layout, help="Dataset layout (folder = your own images, see README). "
              "Without --recipe: the recipe of that name.")
@click.option("--dry-run", is_flag=True, help="Show what was found and the split that would result; write nothing.")
@click.pass_context
def prepare(ctx, recipe, data_root, generated, generator, category, output, seed, lenient, mask_threshold,
            drop_empty_generated, layout, dry_run) -> None:
    """Split real and generated data into a manifest (train: generated + first 1/3 per defect type + train/good)."""
    from anoseg.jobs import PrepareJob
    from anoseg.stages import run_prepare

    if generated is not None and generator is None:
        generator = generated.name
    if layout and ctx.get_parameter_source("recipe") is click.core.ParameterSource.DEFAULT:
        recipe = layout  # every layout has a recipe of its name (recipes/<layout>.yaml)
    rec = _load(recipe, {"data_root": data_root, "generator": generator, "layout": layout})
    run_prepare(PrepareJob(rec, output=output, generated=generated, categories=_csv(category, "--category"),
                           strict=not lenient,
                           mask_threshold=mask_threshold, drop_empty_generated=drop_empty_generated, dry_run=dry_run))


@main.command()
@click.argument("data_root", type=click.Path(path_type=Path))
@click.option("--layout", default="folder", show_default=True, callback=_known_layout,
              help="Dataset layout of DATA_ROOT.")
def init(data_root, layout) -> None:
    """Show what DATA_ROOT holds (categories, defect types, counts, the split) and its first problems; write nothing."""
    from anoseg.jobs import InitJob
    from anoseg.stages import run_init

    run_init(InitJob(_load(layout, {"data_root": data_root, "layout": layout})))


def _train_options(func):
    for option in reversed([
        recipe_option(), model_option, category_option, generator_option, output_option, seed_option,
        click.option("--epochs", type=click.IntRange(min=1),
                     help="Default: the recipe's (150 for the paper); with --resume: the run's, or more to extend it."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Default: the recipe's (8)."),
        click.option("--lr", type=FiniteFloat(min=0, min_open=True),
                     help="Initial learning rate (cosine decay per iteration). Default: 0.01."),
        click.option("--image-size", type=int, nargs=2,
                     help=f"H W of the network input, multiples of {SIZE_MULTIPLE}. Default: the recipe's."),
        device_option,
        click.option("--devices", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Number of devices (DDP when > 1)."),
        click.option("--precision", type=click.Choice(PRECISIONS),
                     help="Lightning precision. Default: 32-true, the same arithmetic on every machine (a resumed run "
                     "keeps its own). auto: bf16 autocast on GPUs and CPUs with native bf16 (AMX, AVX-512 BF16), "
                     "16-mixed on other GPUs, else 32-true: faster, but numbers then depend on the machine."),
        click.option("--backbone-weights", default="imagenet", show_default=True,
                     help="imagenet (torchvision's, if in the local torch cache), none, or a state-dict file."),
        click.option("--download-weights", is_flag=True,
                     help="Download missing ImageNet weights into the torch cache (never done otherwise)."),
        click.option("--augment", help="Comma list of joint image/mask augmentations. Anomaly recipes: hflip, vflip, "
                     "affine, color (default none, as the paper); road/scene: hflip, scale, brightness, color."),
        click.option("--workers", type=click.IntRange(min=0),
                     help="Data-loader worker processes. Default: the recipe's (2)."),
        click.option("--paper-numerics", is_flag=True,
                     help="The authors' numerics step for step: fp32, NCHW tensors and per-parameter SGD (default: "
                     "channels-last, multi-tensor SGD and bf16 where native, faster)."),
        click.option("--compile", "compile_model", is_flag=True,
                     help="torch.compile the model: pays back on long runs only (compiling takes minutes on CPU)."),
        click.option("--logger", type=click.Choice(("csv", "tensorboard")), default="csv", show_default=True,
                     help="Per-iteration loss, lr and images/s in <run>/logs/: CSV always, TensorBoard as well."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run from its last saved epoch."),
        click.option("--fresh", is_flag=True,
                     help="Replace an existing run; the old one is kept until the new one has saved its first epoch."),
        click.option("--select", metavar="val:METRIC",
                     help="After training, choose the kept checkpoint with the best METRIC on the validation split "
                     "(e.g. val:pixel_ap); a later eval without --epoch evaluates it."),
    ]):
        func = option(func)
    return func


@main.command()
@_train_options
def train(recipe, model_name, category, generator, output, seed, epochs, batch_size, lr, image_size, device, devices,
          precision, backbone_weights, download_weights, augment, workers, paper_numerics, compile_model, logger,
          resume, fresh, select) -> None:
    """Train a segmenter on the prepared manifest, e.g. `anoseg train --model lfd --category bottle`."""
    from anoseg.jobs import TrainRunsJob
    from anoseg.stages import run_train

    rec = _load(recipe, {"generator": generator, "image_size": list(image_size) if image_size else None,
                         "train.epochs": epochs, "train.batch_size": batch_size, "train.lr": lr,
                         "train.workers": workers,
                         "train.augment": list(_csv(augment, "--augment")) if augment else None})
    run_train(TrainRunsJob(rec, model_name, categories=_csv(category, "--category"), output=output, seed=seed,
                           device=device,
                           devices=devices, precision=precision, backbone_weights=backbone_weights,
                           download_weights=download_weights, resume=resume, fresh=fresh, epochs=epochs,
                           paper_numerics=paper_numerics, compile=compile_model, logger=logger, select=select))


@main.command("eval")
@recipe_option()
@model_option
@category_option
@generator_option
@output_option
@device_option
@click.option("--epoch", type=click.IntRange(min=1),
              help="Checkpoint epoch to evaluate. Default: the recipe's eval_epoch, else the last.")
@click.option("--protocol", metavar="|".join(PROTOCOLS), help="Mask protocol. Default: the recipe's.")
@click.option("--save-scores", is_flag=True, help="Also write scores/<category>.npz (maps, masks, images).")
@click.option("--overlays", type=click.IntRange(min=0), default=4, show_default=True,
              help="Overlay PNGs per category (0 = none).")
@click.option("--seed", type=SEED, default=DEFAULT_SEED, show_default=True, help="The seed the run was trained with.")
@click.option("--resolution", type=click.Choice(RESOLUTIONS), default=RESOLUTIONS[0], show_default=True,
              help="Score maps at the network's image size (the papers), or upsampled to each mask's original size "
              "(MVTec AD's own evaluation).")
@click.option("--aupro", is_flag=True, help="Also pixel AUPRO (MVTec AD: per-region overlap up to FPR 0.3).")
@click.option("--select", metavar="val:METRIC",
              help="Evaluate the kept checkpoint with the best METRIC on the validation split, e.g. val:pixel_ap.")
@click.option("--target-fpr", multiple=True, metavar="LEVEL:FRACTION",
              help="An operating point: the threshold flagging at most FRACTION of the good images (image:0.01) or "
              "pixels (pixel:0.01), chosen on validation; repeatable. The first is what predict uses.")
@click.option("--target-recall", multiple=True, metavar="LEVEL:FRACTION",
              help="An operating point: the threshold catching at least FRACTION of the defective images or pixels "
              "(image:0.95), chosen on validation; repeatable.")
def eval_(recipe, model_name, category, generator, output, device, epoch, protocol, save_scores, overlays,
          seed, resolution, aupro, select, target_fpr, target_recall) -> None:
    """Image- and pixel-level AUROC / AP / F1-max and IoU on the test split, per category and mean."""
    from anoseg.jobs import EvalRunsJob
    from anoseg.stages import run_eval

    run_eval(EvalRunsJob(_load(recipe, {"generator": generator}), model_name, categories=_csv(category, "--category"),
                         output=output,
                         seed=seed, device=device, epoch=epoch, protocol=protocol, save_scores=save_scores,
                         overlays=overlays, resolution=resolution, aupro=aupro, select=select,
                         target_fpr=tuple(target_fpr), target_recall=tuple(target_recall)))


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              help="A checkpoint written by `anoseg train`.")
@click.option("--model-file", type=click.Path(path_type=Path, dir_okay=False),
              help="An exported .onnx file (instead of --checkpoint).")
@click.option("--threshold", type=float, help="Decision threshold in [0, 1]. Default: the threshold of "
              "the operating point `anoseg eval` fixed for this checkpoint (see --operating-point).")
@click.option("--category", help="The images' category: a unified model then uses that category's threshold.")
@click.option("--operating-point", metavar="NAME",
              help="Which operating point `anoseg eval` stored (e.g. image_fpr@0.01, pixel_f1max). Default: the "
              "eval's first --target-fpr, else its first --target-recall, else pixel_f1max.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Output folder (must be new or empty). Default: a new outputs/predict/<date-time>.")
@click.option("--overwrite", is_flag=True, help="Replace the earlier predict run in --out.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per forward pass. Default: 8 on the CPU, "
              "32 on a GPU.")
@click.option("--no-overlays", is_flag=True, help="Write the masks only (no heatmap overlays): faster.")
@device_option
def predict(images, checkpoint, model_file, threshold, category, operating_point, out, overwrite, batch_size,
            no_overlays, device) -> None:
    """Binary masks and heatmap overlays for images (files or folders); prints each image's anomaly score (up to
    50 images; all of them are in predictions.csv).

    Output names mirror the inputs' paths below their common folder; mask folders (ground_truth/, gt/, mask/) of a
    dataset are not scored; unreadable images are skipped and listed in skipped.csv.
    """
    from anoseg.jobs import PredictJob
    from anoseg.stages import run_predict

    run_predict(PredictJob(tuple(images), checkpoint=checkpoint, model_file=model_file, threshold=threshold,
                           category=category, out=out, overwrite=overwrite, device=device, batch_size=batch_size,
                           overlays=not no_overlays, operating_point=operating_point))


@main.command()
@output_option
@click.option("--dataset", help="Which dataset's runs (a recipe name). Default: every dataset under the outputs.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Markdown file. Default: <output>/report.md.")
@click.option("--format", "fmt", type=click.Choice(REPORT_FORMATS), default=REPORT_FORMATS[0], show_default=True)
@click.option("--no-figures", is_flag=True, help="Skip the PR-curve and heatmap figures.")
@click.option("--aupro", is_flag=True, help="Add a Pixel AUPRO column (from `eval --aupro`; a dash for runs without).")
@click.option("--ci", is_flag=True,
              help="Add a table of the image-level metrics with their 95% bootstrap interval over test images "
                   "(from `eval --save-scores`).")
@click.option("--by", type=click.Choice(REPORT_BY), default=None,
              help="Add a breakdown: `defect` = per defect type (image AUROC/AP, pixel AP, IoU; from `eval`).")
def report(output, dataset, out, fmt, no_figures, aupro, ci, by) -> None:
    """The papers' tables (segmenter × generator) and figures from every metrics.json under the outputs."""
    from anoseg.jobs import ReportJob
    from anoseg.stages import run_report

    run_report(ReportJob(output=output, dataset=dataset, out=out, fmt=fmt, figures=not no_figures,
                         extra_metrics=(PIXEL_AUPRO,) if aupro else (), ci=ci, by=by))


@main.command()
@click.option("--model", "model_names", help="Comma list of models. Default: every registered model.")
@click.option("--size", type=int, nargs=2, default=(256, 256), show_default=True,
              help=f"Input H W (multiples of {SIZE_MULTIPLE}).")
@device_option
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed forward passes (median reported).")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed forward passes first.")
@click.option("--onnx", is_flag=True, help="Also time ONNX Runtime (ratio to eager in the same run).")
@click.option("--compile", "compile_model", is_flag=True, help="Also try torch.compile as a fast path.")
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True,
              help="Also time this batch size for throughput (repeatable, e.g. --batch 32); batch 1 is always timed.")
@output_option
def bench(model_names, size, device, runs, warmup, onnx, compile_model, batches, output) -> None:
    """Used parameters, GMACs, latency, FPS and peak memory at batch 1, with the fast-path speed-up."""
    from anoseg.jobs import BenchJob
    from anoseg.stages import run_bench

    run_bench(BenchJob(models=_csv(model_names, "--model"), size=tuple(size), device=device, runs=runs, warmup=warmup,
                       onnx=onnx,
                       compile_model=compile_model, output=output, batches=(1, *batches)))


@main.command()
@click.option("--method", type=click.Choice(GENERATION_METHODS), required=True, help="How to make defects.")
@recipe_option()
@click.option("--data-root", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="The original dataset. Default: the recipe's.")
@category_option
@click.option("--count", type=click.IntRange(min=1), default=20, show_default=True, help="Pairs per category.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Output root. Default: <recipe generated_root>/<method>, where `prepare --generator` looks.")
@seed_option
@click.option("--textures", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="perlin: a folder of texture images (e.g. DTD).")
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty output.")
def generate(method, recipe, data_root, category, count, out, seed, textures, overwrite) -> None:
    """Make defect image/mask pairs from train/good images only, in the layout `prepare` reads."""
    from anoseg.jobs import GenerateJob
    from anoseg.stages import run_generate

    run_generate(GenerateJob(_load(recipe, {"data_root": data_root}), method, categories=_csv(category, "--category"),
                             count=count,
                             out=out, seed=seed, textures=textures, overwrite=overwrite))


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="A checkpoint of `anoseg train`.")
@click.option("--format", "fmt", type=click.Choice(list(EXPORT_FORMATS)), default="onnx", show_default=True)
@click.option("--image-size", type=int, nargs=2,
              help=f"Input H W, multiples of {SIZE_MULTIPLE}. Default: the size the model was trained at.")
@click.option("--dynamic", is_flag=True, help=f"Dynamic batch and spatial axes (sides multiples of {SIZE_MULTIPLE}).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Model file. Default: <run>/export/model.<ext>.")
@click.option("--exporter", type=click.Choice(EXPORTERS), default="auto", show_default=True,
              help="ONNX exporter: auto tries torch's dynamo exporter (opset 18), then the legacy one (opset 17).")
@click.option("--threshold", type=float, help="Decision threshold for the sidecar. Default: the ones `anoseg eval` "
              "found for this checkpoint.")
@click.option("--operating-point", metavar="NAME",
              help="Which operating point `anoseg eval` stored (e.g. image_fpr@0.01). Default: the eval's first "
              "--target-fpr, else its first --target-recall, else pixel_f1max.")
def export(checkpoint, fmt, image_size, dynamic, out, exporter, threshold, operating_point) -> None:
    """A self-contained ONNX or TorchScript file plus a JSON sidecar, verified against PyTorch."""
    from anoseg.jobs import ExportJob
    from anoseg.stages import run_export

    run_export(ExportJob(checkpoint, fmt=fmt, out=out, image_size=tuple(image_size) if image_size else None,
                         dynamic=dynamic, exporter=exporter, threshold=threshold, operating_point=operating_point))


@main.command()
@click.argument("sweep_file", required=False, type=click.Path(path_type=Path))
@click.option("--recipe", help="Recipe name or YAML. Default: the sweep file's, else demo.")
@click.option("--model", "--models", "models", help="Comma list of segmenters (a grid axis).")
@click.option("--generator", "--generators", "generators", help="Comma list of generators (a grid axis).")
@click.option("--category", "--categories", "categories",
              help="Comma list of training runs (`all` or category names). Default: the recipe's mode.")
@click.option("--seed", "--seeds", "seeds", help=f"Comma list of seeds (a grid axis). Default: {DEFAULT_SEED}.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Recipe override for every cell, e.g. train.epochs=4; the same KEY given twice or more is a "
              "grid axis.")
@click.option("--name", help="Sweep name (records in <output>/sweeps/NAME). Default: the sweep file's stem.")
@output_option
@click.option("--device", type=DEVICE, help="auto, cpu or cuda. Default: the sweep file's, else auto.")
@click.option("--jobs", type=click.IntRange(min=1), help="Cells at once. Default: one per CUDA device, else 1.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="submitit executor: local worker processes, debug (in-process, one at a time) or a SLURM cluster.")
@click.option("--partition", help="SLURM partition.")
@click.option("--gpus-per-job", type=click.IntRange(min=0), default=0, show_default=True, help="SLURM GPUs per cell.")
@click.option("--cpus-per-job", type=click.IntRange(min=1), help="SLURM CPUs per cell. Default: the cluster's.")
@click.option("--timeout-min", type=click.IntRange(min=1), default=24 * 60, show_default=True,
              help="Time limit of one cell (min).")
@click.option("--dry-run", is_flag=True, help="Print the cells and their commands; run nothing.")
@click.option("--no-report", is_flag=True, help="Do not run `anoseg report` at the end.")
def sweep(sweep_file, recipe, models, generators, categories, seeds, assignments, name, output, device, jobs,
          executor, partition, gpus_per_job, cpus_per_job, timeout_min, dry_run, no_report) -> None:
    """Run a grid of models × generators × categories × seeds (× overrides): prepare → train → eval, then report.

    \b
    Resumable: finished cells are skipped, stopped runs resume, failing cells are recorded and the others go on.
    Example: anoseg sweep recipes/sweeps/demo_grid.yaml --jobs 2
    """
    from anoseg.jobs import SweepJob
    from anoseg.stages import run_sweep

    run_sweep(SweepJob(sweep_file=sweep_file, recipe=recipe, models=_csv(models, "--models"),
                       generators=_csv(generators, "--generators"),
                       categories=_csv(categories, "--categories"), seeds=_csv(seeds, "--seeds"),
                       assignments=tuple(assignments), name=name,
                       output=output, device=device, jobs=jobs, executor=executor, partition=partition,
                       gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job, timeout_min=timeout_min, dry_run=dry_run,
                       report=not no_report))


@main.command()
@click.option("--names-only", is_flag=True, help="Print the registry names only, one per line.")
def models(names_only: bool) -> None:
    """List the registered segmenters with their family, backbone, ImageNet weights and reference cost."""
    from anoseg.jobs import ModelsJob
    from anoseg.stages import run_models

    run_models(ModelsJob(names_only=names_only))


if __name__ == "__main__":
    main()
