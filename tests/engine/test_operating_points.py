"""Operating points end to end: thresholds fixed on a validation split, test results at them, checkpoint selection,
and predict/export/report carrying the chosen point (docs/operating-points.md).

The demo manifest has no validation rows until the validation split lands in ``prepare``; ``with_validation``
relabels every third training row of each (category, source, defect folder) as ``val``, as such a split would.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, confusion_matrix, precision_score, roc_curve

from anoseg.cli import main
from anoseg.constants import CHOSEN_ON_TEST, CHOSEN_ON_VAL, SPLIT_VAL
from anoseg.engine.checkpoint import LAST
from anoseg.engine.evaluate import EvalJob, evaluate
from anoseg.engine.train import TrainJob, train
from anoseg.errors import AnosegError
from anoseg.paths import eval_dir
from anoseg.recipes import load_recipe

SIZE = (64, 64)


def with_validation(output: Path, every: int = 3) -> Path:
    """Relabel every ``every``-th train row of each (category, source, defect) of the prepared manifest under
    ``output`` as ``val`` (the data report's digest follows, as prepare writes it). Returns the manifest."""
    manifest = output / "demo" / "seas" / "manifest.csv"
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    seen: dict[tuple, int] = {}
    for row in rows:
        if row["split"] == "train":
            key = (row["category"], row["source"], row["defect"])
            seen[key] = seen.get(key, 0) + 1
            if seen[key] % every == 0:
                row["split"] = SPLIT_VAL
    _write_manifest(manifest, rows)
    return manifest


def _write_manifest(manifest: Path, rows: list[dict]) -> None:
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    report = manifest.with_name("data_report.json")
    doc = json.loads(report.read_text())
    doc["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    report.write_text(json.dumps(doc))


def copy_prepared(env, target: Path) -> Path:
    (target / "demo" / "seas").mkdir(parents=True)
    for name in ("manifest.csv", "data_report.json"):
        (target / "demo" / "seas" / name).write_bytes((env.output / "demo" / "seas" / name).read_bytes())
    return target


def recipe(env):
    return load_recipe(env.recipe_file).override(image_size=SIZE)


def eval_job(env, output: Path, **options) -> EvalJob:
    return EvalJob(recipe=recipe(env), model="lfd", generator="seas", output=output, device="cpu", overlays=0,
                   **options)


@pytest.fixture(scope="module")
def val_run(demo_env, tmp_path_factory):
    """A unified LFD run (2 epochs, both kept) trained on a manifest with validation rows."""
    output = copy_prepared(demo_env, tmp_path_factory.mktemp("oppoints"))
    with_validation(output)
    run = train(TrainJob(recipe=recipe(demo_env), model="lfd", generator="seas", output=output, device="cpu",
                         seed=42, backbone_weights="none"))
    return output, run


def val_scores(env, output: Path, category: str, epoch: int | None = None):
    """(image scores, image labels, maps, pixel labels) of one category's validation images, by the eval's scoring."""
    from anoseg.engine.evaluate_anomaly import score_category, setup

    scoring = setup(eval_job(env, output, epoch=epoch))
    scores = score_category(scoring, eval_job(env, output), category, SPLIT_VAL)
    return scores.maps.reshape(len(scores.maps), -1).max(axis=1), scores.labels, scores.maps, scores.masks > 0


def points_of(metrics: dict, category: str) -> dict[str, dict]:
    return {p["name"]: p for p in metrics["operating_points"] if p["category"] == category}


def test_thresholds_are_chosen_on_validation_and_scored_on_test(demo_env, val_run):
    output, run = val_run
    metrics = evaluate(eval_job(demo_env, output, save_scores=True, epoch=2,
                                target_fpr=("image:0.01", "pixel:0.05"), target_recall=("image:0.9",)))
    assert metrics["deployed_point"] == "image_fpr@0.01"
    assert metrics["validation"]["images"] > 0
    for category in metrics["categories"]:
        points = points_of(metrics, category)
        assert set(points) == {"pixel_f1max", "image_f1max", "image_fpr@0.01", "pixel_fpr@0.05",
                               "image_recall@0.9", "oracle_pixel_f1max", "oracle_image_f1max"}
        image_scores, image_labels, maps, pixel_labels = val_scores(demo_env, output, category, epoch=2)
        # the thresholds are sklearn's on the validation images
        fpr, tpr, thresholds = roc_curve(image_labels, image_scores.astype(np.float64), drop_intermediate=False)
        expected = thresholds[np.flatnonzero(fpr <= 0.01)[-1]]
        got = points["image_fpr@0.01"]["threshold"]
        assert (got > image_scores.max()) if np.isinf(expected) else got == expected
        assert points["image_recall@0.9"]["threshold"] == thresholds[np.flatnonzero(tpr >= 0.9)[0]]
        fpr, _, thresholds = roc_curve(pixel_labels.ravel(), maps.ravel().astype(np.float64), drop_intermediate=False)
        assert points["pixel_fpr@0.05"]["threshold"] == thresholds[np.flatnonzero(fpr <= 0.05)[-1]]
        assert all(p["chosen_on"] == CHOSEN_ON_VAL for n, p in points.items() if not n.startswith("oracle_"))
        assert all(p["chosen_on"] == CHOSEN_ON_TEST for n, p in points.items() if n.startswith("oracle_"))
        # the results are sklearn's on the test images at those thresholds
        saved = np.load(eval_dir(run, 2) / "scores" / f"{category}.npz")
        test_image = saved["pixel_scores"].reshape(len(saved["pixel_scores"]), -1).max(axis=1)
        for point in points.values():
            flagged = test_image >= point["threshold"]
            tn, fp, fn, tp = confusion_matrix(saved["image_labels"], flagged, labels=[False, True]).ravel()
            assert (point["image"]["tp"], point["image"]["fp"], point["image"]["tn"], point["image"]["fn"]) == \
                (tp, fp, tn, fn)
            pixels = saved["pixel_scores"].ravel() >= point["threshold"]
            truth = saved["gt_masks"].ravel() > 0
            if pixels.any():
                assert point["pixel"]["precision"] == pytest.approx(precision_score(truth, pixels), abs=1e-12)
        # the test-chosen F1-max points are the oracle metrics of the summary, exactly
        values = metrics["categories"][category]
        assert points["oracle_image_f1max"]["image"]["f1"] == pytest.approx(values["image_f1max"], abs=1e-12)
        assert points["oracle_pixel_f1max"]["pixel"]["f1"] == pytest.approx(values["pixel_f1max"], abs=1e-12)
        assert points["oracle_pixel_f1max"]["threshold"] == values["pixel_threshold"]
    mean = points_of(metrics, "mean")["image_fpr@0.01"]
    assert mean["image"]["fp"] == sum(points_of(metrics, c)["image_fpr@0.01"]["image"]["fp"]
                                      for c in metrics["categories"])
    stored = json.loads((eval_dir(run, 2) / "thresholds.json").read_text())
    assert stored["operating_point"]["name"] == "image_fpr@0.01"
    assert stored["categories"] == {c: points_of(metrics, c)["image_fpr@0.01"]["threshold"]
                                    for c in metrics["categories"]}
    assert set(stored["operating_points"]) == set(points_of(metrics, "mean"))


def test_without_validation_rows_every_threshold_is_labelled_as_chosen_on_test(demo_env, val_run, tmp_path):
    output, _run = val_run
    manifest = output / "demo" / "seas" / "manifest.csv"
    saved = {name: (output / "demo" / "seas" / name).read_bytes() for name in ("manifest.csv", "data_report.json")}
    try:
        with manifest.open(newline="") as handle:
            rows = [dict(r, split="train" if r["split"] == SPLIT_VAL else r["split"]) for r in csv.DictReader(handle)]
        _write_manifest(manifest, rows)
        metrics = evaluate(eval_job(demo_env, output, epoch=1, target_fpr=("image:0.01",)))
    finally:
        for name, data in saved.items():
            (output / "demo" / "seas" / name).write_bytes(data)
    assert metrics["validation"]["images"] == 0
    entries = metrics["operating_points"]
    assert entries and all(p["chosen_on"] == CHOSEN_ON_TEST for p in entries)
    assert not any(p["name"].startswith("oracle_") for p in entries)  # the points themselves are the oracles
    assert any("no validation images" in w for w in metrics["warnings"])
    for category, values in metrics["categories"].items():  # today's threshold, now named for what it is
        assert points_of(metrics, category)["pixel_f1max"]["threshold"] == values["pixel_threshold"]


def test_select_evaluates_the_checkpoint_best_on_validation(demo_env, val_run):
    output, _run = val_run
    metrics = evaluate(eval_job(demo_env, output, select="val:pixel_ap"))
    chosen = metrics["checkpoint_selection"]
    expected = {}
    for epoch in (1, 2):
        aps = []
        for category in recipe(demo_env).categories:
            _, _, maps, pixel_labels = val_scores(demo_env, output, category, epoch=epoch)
            aps.append(average_precision_score(pixel_labels.ravel(), maps.ravel()))
        expected[epoch] = float(np.mean(aps))
    assert chosen["values"] == pytest.approx({str(k): v for k, v in expected.items()}, abs=1e-9)
    best = max(expected, key=lambda e: (expected[e], -e))
    assert metrics["epoch"] == chosen["epoch"] == best


def test_train_select_records_the_choice_and_eval_uses_it(demo_env, val_run):
    from anoseg.engine.evaluate_anomaly import record_selection

    output, run = val_run
    record = record_selection(eval_job(demo_env, output, select="val:image_auroc"))
    assert json.loads((run / "selection.json").read_text())["epoch"] == record["epoch"]
    try:
        metrics = evaluate(eval_job(demo_env, output))
        assert metrics["epoch"] == record["epoch"]
        assert any("chosen at train time by val:image_auroc" in w for w in metrics["warnings"])
        assert evaluate(eval_job(demo_env, output, epoch=2))["epoch"] == 2  # --epoch still wins
    finally:
        (run / "selection.json").unlink()


def test_predict_and_export_carry_the_point_and_where_it_was_chosen(demo_env, val_run, tmp_path):
    output, run = val_run
    evaluate(eval_job(demo_env, output, epoch=2, target_fpr=("image:0.01",)))
    stored = json.loads((eval_dir(run, 2) / "thresholds.json").read_text())
    folder = demo_env.data_root / "disk" / "test" / "crack"
    runner = CliRunner()
    result = runner.invoke(main, ["predict", "--checkpoint", str(run / LAST), str(folder), "--category", "disk",
                                  "--out", str(tmp_path / "p"), "--device", "cpu", "--no-overlays"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"threshold {stored['categories']['disk']:.4f} (image FPR ≤ 1 % on validation)" in said
    result = runner.invoke(main, ["predict", "--checkpoint", str(run / LAST), str(folder), "--operating-point",
                                  "pixel_f1max", "--out", str(tmp_path / "q"), "--device", "cpu", "--no-overlays"])
    assert result.exit_code == 0, result.output
    mean = stored["operating_points"]["pixel_f1max"]["mean"]
    assert f"threshold {mean:.4f} (pixel F1-max on validation)" in " ".join(result.output.split())
    result = runner.invoke(main, ["export", "--checkpoint", str(run / LAST), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["operating_point"]["name"] == "image_fpr@0.01"
    assert set(sidecar["operating_point"]["chosen_on"].values()) == {CHOSEN_ON_VAL}
    assert sidecar["thresholds"] == stored["categories"]
    result = runner.invoke(main, ["predict", "--model-file", str(tmp_path / "m.onnx"), str(folder), "--category",
                                  "disk", "--out", str(tmp_path / "r"), "--no-overlays"])
    assert result.exit_code == 0, result.output
    assert "(image FPR ≤ 1 % on validation)" in " ".join(result.output.split())


def test_report_shows_the_operating_points_beside_the_oracle(demo_env, val_run, tmp_path):
    from anoseg.report import build_report

    output, _run = val_run
    evaluate(eval_job(demo_env, output, epoch=2, target_fpr=("image:0.01",)))
    report = build_report(output, "demo", tmp_path / "report.md", figures=False)
    table = next(t for t in report.tables if t.kind == "operating").frame
    chosen = dict(zip(table.index.get_level_values("Operating point"), table.index.get_level_values("Chosen on"),
                      strict=False))
    assert chosen["image FPR ≤ 1 % *"] == CHOSEN_ON_VAL
    rows = {(p, c): r for (_, p, c), r in table.iterrows()}
    summary_f1 = report.summary["Image F1-max"].iloc[0]
    assert rows[("image F1-max", CHOSEN_ON_TEST)]["Image F1"] == pytest.approx(summary_f1, abs=0.011)
    assert "## Operating points" in report.markdown and "oracle numbers" in report.markdown


def test_an_older_metrics_file_without_operating_points_still_reads(demo_env, val_run, tmp_path):
    from anoseg.report.runs import parse_metrics

    output, run = val_run
    evaluate(eval_job(demo_env, output, epoch=2))
    path = eval_dir(run, 2) / "metrics.json"
    doc = json.loads(path.read_text())
    for key in ("operating_points", "deployed_point", "validation"):
        doc.pop(key)
    old = tmp_path / "metrics.json"
    old.write_text(json.dumps(doc))
    parsed = parse_metrics(old, "demo")
    assert parsed.operating_points == [] and parsed.categories == parse_metrics(path, "demo").categories


@pytest.mark.parametrize(("args", "fragment"), [
    (["--target-fpr", "image:2"], "--target-fpr 'image:2'"),
    (["--target-fpr", "part:0.01"], "LEVEL one of image, pixel"),
    (["--target-recall", "pixel:0"], "--target-recall 'pixel:0'"),
    (["--select", "test:pixel_ap"], "--select 'test:pixel_ap'"),
    (["--select", "val:accuracy"], "a metric of image_auroc"),
    (["--select", "val:pixel_ap", "--epoch", "1"], "--select and --epoch contradict"),
])
def test_bad_operating_options_are_one_line(demo_env, val_run, args, fragment):
    output, _ = val_run
    result = CliRunner().invoke(main, ["eval", "--recipe", str(demo_env.recipe_file), "--model", "lfd", "--output",
                                       str(output), "--device", "cpu", *args])
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split()) and "Traceback" not in result.output


def test_select_without_validation_rows_is_refused_before_training(demo_env, tmp_path):
    output = copy_prepared(demo_env, tmp_path)
    result = CliRunner().invoke(main, ["train", "--recipe", str(demo_env.recipe_file), "--model", "lfd", "--output",
                                       str(output), "--device", "cpu", "--backbone-weights", "none", "--select",
                                       "val:pixel_ap"])
    assert result.exit_code == 2, result.output
    assert "no validation images" in " ".join(result.output.split())
    assert not (output / "demo" / "seas" / "lfd").exists()


def test_a_thresholds_file_from_before_operating_points_says_it_was_tuned_on_test(tmp_path):
    from anoseg.engine.results import thresholds_for

    folder = tmp_path / "run" / "eval" / "epoch_003"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    (folder / "thresholds.json").write_text(json.dumps({
        "schema": "anoseg.thresholds/1", "epoch": 3, "weights_sha256": "abc", "categories": {"disk": 0.4, "mesh": 0.6},
        "mean": 0.5}))
    found = thresholds_for(tmp_path / "run", "abc")
    assert found.point is None and found.categories == {"disk": 0.4, "mesh": 0.6}
    assert found.label("disk") == "pixel F1-max on test (oracle)" == found.label()
    assert found.pick(None)[0] == 0.5 and "pixel F1-max thresholds" in found.pick(None)[1]
    with pytest.raises(AnosegError, match=r"--operating-point image_fpr@0\.01"):
        found.select("image_fpr@0.01")
