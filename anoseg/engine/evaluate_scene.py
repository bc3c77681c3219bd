"""``anoseg eval`` for the road and scene recipes: native-resolution inference, KITTI devkit and mIoU metrics.

Every test image is run at its own size, padded (black, at the bottom/right) to a multiple of 32 and cropped back —
or, when the run was trained with a fixed ``image_size``, resized to it and the logits resized back. Then:

* road (KITTI): road probability = softmax class 1, scored in perspective space against the devkit's ground truth
  (road = B plane, evaluation area = R plane) with ``anoseg.metrics.road`` per category (um, umm, uu) and pooled
  (``URBAN``). The probabilities are used as floats, not quantised to the devkit's uint8 PNGs. The official
  benchmark's bird's-eye-view evaluation is not implemented.
* scene (Cityscapes, CamVid): arg-max class, one confusion matrix over the split (``anoseg.metrics.scene``).

Writes ``metrics.json`` (docs/schemas.md, fractions), ``metrics.csv`` (percentages; the road table in LFD_RoadSeg's
layout) and ``overlays/<category>/*.png`` under ``<run>/eval/epoch_NNN/``, complete or not at all
(``anoseg.engine.results``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from anoseg.constants import ALL_CATEGORIES, CLEAN, METRICS_CSV_FILE, MODEL_RESOLUTION, ROAD
from anoseg.data.images import read_image
from anoseg.data.manifest import read_manifest, select_rows
from anoseg.data.scenes.labels import IGNORE, KITTI_RGB, class_palette, colourize, read_kitti_gt, read_label
from anoseg.data.scenes.layouts import row_label_formats
from anoseg.engine import results
from anoseg.engine.checkpoint import build_model, resolve_device
from anoseg.engine.inference import dense_logits, softmax, torch_runner
from anoseg.engine.runs import EvalJob, load_run_checkpoint, metrics_record, order_categories, write_percent_csv
from anoseg.errors import AnosegError
from anoseg.io import write_with
from anoseg.paths import eval_dir, manifest_path
from anoseg.runid import EvalRecord

ROAD_METRICS = ("maxf", "ap", "pre", "rec", "fpr", "fnr", "threshold", "n_images")
URBAN = "URBAN"
#: LFD_RoadSeg's result table: column name → metric.
ROAD_CSV_COLUMNS = {"MaxF": "maxf", "AvgPrec": "ap", "PRE_wp": "pre", "REC_wp": "rec", "FPR_wp": "fpr",
                    "FNR_wp": "fnr"}


def evaluate_scene(job: EvalJob, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Evaluate a road/scene run (an ``EvalJob``); write and return the metrics dict (schema ``anoseg.metrics/1``).

    ``progress(description, done, total)`` is called after each image; warnings are returned in
    ``metrics["warnings"]``.

    Example:
        >>> metrics = evaluate_scene(EvalJob(recipe=load_recipe("kitti_road"), model="sanet_s"))  # doctest: +SKIP
        >>> list(metrics["categories"])  # doctest: +SKIP
        ['um', 'umm', 'uu', 'URBAN']
    """
    recipe = job.recipe
    warnings: list[str] = []
    if job.protocol not in (None, CLEAN):
        warnings.append(f"--protocol {job.protocol} concerns anomaly masks only; road/scene evaluation is 'clean'")
    if job.save_scores:
        warnings.append("--save-scores writes anomaly score files only; ignored for road/scene recipes")
    if job.resolution != MODEL_RESOLUTION:
        warnings.append("--resolution concerns anomaly masks only; road/scene evaluation is always native")
    checkpoint_file, checkpoint = load_run_checkpoint(job, warnings)
    meta = checkpoint["meta"]
    run = torch_runner(build_model(checkpoint), resolve_device(job.device))
    size = tuple(meta["image_size"]) or None
    test = select_rows(read_manifest(manifest_path(job.output, recipe.name, job.generator)), "test", job.category)
    test = test.assign(label_format=row_label_formats(test, recipe.layout))

    def predict(image: np.ndarray) -> np.ndarray:
        return dense_logits(run, image, meta["mean"], meta["std"], size)

    done = [0]

    def step() -> None:
        done[0] += 1
        if progress:
            progress("evaluating", done[0], len(test))

    target = eval_dir(job.run, checkpoint["epoch"])
    staging = results.staging_dir(target)  # the result appears complete or not at all
    try:
        evaluate_split = _evaluate_road if recipe.task == ROAD else _evaluate_classes
        per_category, mean = evaluate_split(test, predict, recipe, job, warnings, step, staging)
        metrics = metrics_record(job, checkpoint_file, checkpoint, task=recipe.task, protocol=CLEAN,
                                 image_size=size or [], categories=per_category, mean=mean, warnings=warnings)
        record = EvalRecord.from_document(metrics)  # checked against the schema before it is written
        record.write(staging)
        metrics = record.document()
        write_percent_csv(staging / METRICS_CSV_FILE, *_csv_columns(recipe.task, per_category))
        results.publish(staging, target)
    finally:
        results.discard(staging)
    return metrics


def _road_truth(mask: str, label_format: str) -> tuple[np.ndarray, np.ndarray]:
    """``(road, evaluation area)``: the devkit's planes for KITTI; class 1 / non-ignored for any other format."""
    if label_format == KITTI_RGB:
        return read_kitti_gt(mask)
    target = read_label(mask, label_format)
    return target == 1, target != IGNORE


def _evaluate_road(test, predict, recipe, job, warnings: list[str], step, folder: Path) -> tuple[dict, dict]:
    from anoseg.metrics.road import RoadAccumulator

    accumulators: dict[str, RoadAccumulator] = {}
    written: dict[str, int] = {}
    for row in test.itertuples(index=False):
        image = read_image(row.image)
        road, valid = _road_truth(row.mask, row.label_format)
        probability = softmax(predict(image))[1]
        accumulators.setdefault(row.category, RoadAccumulator()).update(probability, road, valid)
        if written.get(row.category, 0) < job.overlays:
            written[row.category] = written.get(row.category, 0) + 1
            _road_overlay(folder / "overlays" / row.category / f"{Path(row.image).stem}.png", image, probability,
                          road & valid)
        step()
    order = order_categories(accumulators, recipe.categories)
    pooled = RoadAccumulator()
    for category in order:
        pooled.merge(accumulators[category])
    per_category = {c: _road_entry(accumulators[c].compute(), c, warnings) for c in order}
    per_category[URBAN] = _road_entry(pooled.compute(), URBAN, warnings)
    return per_category, dict(per_category[URBAN])


def _road_entry(result: dict, category: str, warnings: list[str]) -> dict:
    if result["maxf"] is None:
        warnings.append(f"{category}: no road pixel in the evaluation area; road metrics undefined")
    return {k: result[k] for k in ROAD_METRICS}


def _evaluate_classes(test, predict, recipe, job, warnings: list[str], step, folder: Path) -> tuple[dict, dict]:
    from anoseg.metrics.scene import SceneAccumulator

    accumulator = SceneAccumulator(recipe.num_classes, list(recipe.class_names), ignore_index=IGNORE)
    palette = class_palette(recipe.class_names)
    for index, row in enumerate(test.itertuples(index=False)):
        image = read_image(row.image)
        target = read_label(row.mask, row.label_format)
        prediction = predict(image).argmax(axis=0).astype(np.uint8)
        if prediction.shape != target.shape:
            raise AnosegError(f"{row.image} and its label {row.mask} differ in size")
        accumulator.update(prediction, target)
        if index < job.overlays:
            from anoseg.engine.visual import blend, strip

            panels = [image, blend(image, colourize(target, palette)), blend(image, colourize(prediction, palette))]
            write_with(folder / "overlays" / ALL_CATEGORIES / f"{Path(row.image).stem}.png",
                       _png_writer(strip(panels)))
        step()
    result = accumulator.compute()
    missing = [name for name in recipe.class_names if result[f"iou/{name}"] is None]
    if missing:
        warnings.append(f"IoU undefined (class absent from labels and predictions), left out of mIoU: "
                        f"{', '.join(missing)}")
    return {ALL_CATEGORIES: result}, dict(result)


def _road_overlay(path: Path, image: np.ndarray, probability: np.ndarray, road: np.ndarray) -> None:
    from anoseg.engine.visual import overlay_strip

    write_with(path, _png_writer(overlay_strip(image, probability, road)))


def _png_writer(array: np.ndarray) -> Callable[[Path], None]:
    from PIL import Image

    return lambda tmp: Image.fromarray(array).save(tmp)


def _csv_columns(task: str, per_category: dict) -> tuple[dict, str]:
    """The percent table: the road table as LFD_RoadSeg prints it (categories as rows), or one column for scenes."""
    if task == ROAD:
        columns = {column: {c: v[metric] for c, v in per_category.items()}
                   for column, metric in ROAD_CSV_COLUMNS.items()}
        return columns, "Benchmark"
    return {ALL_CATEGORIES: {k: v for k, v in per_category[ALL_CATEGORIES].items() if k != "n_images"}}, "metric"
