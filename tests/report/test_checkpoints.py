"""The report takes one evaluated checkpoint per run, names it, ignores stale and unfinished results, finds every
dataset by itself; its figures use the axes' unit and a fixed 0–1 colour scale (issue 11, items 2 and 5)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from report_helpers import anomaly_metrics, write_metrics, write_scores

from anoseg.cli import main
from anoseg.report import build_report
from anoseg.report.figures import _examples_figure, _pr_figure, load_scores


def _name_checkpoint(metrics_file: Path, checkpoint: Path) -> None:
    """Record ``checkpoint`` (a file in the run) in a metrics.json as ``anoseg eval`` does."""
    doc = json.loads(metrics_file.read_text())
    run = metrics_file.parent.parent.parent
    doc["checkpoint"] = str(checkpoint.relative_to(run))
    doc["checkpoint_sha256"] = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    doc["weights_sha256"] = "ab" * 32
    metrics_file.write_text(json.dumps(doc))


def test_one_checkpoint_per_run_named_and_stale_or_partial_results_ignored(tmp_path: Path, monkeypatch) -> None:
    outputs = tmp_path / "outputs"
    run = outputs / "mvtec_ad" / "seas" / "lfd" / "all"
    epoch1 = write_metrics(outputs, "mvtec_ad", "seas", "lfd", "all", {"bottle": anomaly_metrics(0.70)}, epoch=1)
    epoch3 = write_metrics(outputs, "mvtec_ad", "seas", "lfd", "all", {"bottle": anomaly_metrics(0.90)}, epoch=3)
    epoch5 = write_metrics(outputs, "mvtec_ad", "seas", "lfd", "all", {"bottle": anomaly_metrics(0.99)}, epoch=5)
    for epoch, metrics_file in ((1, epoch1), (3, epoch3), (5, epoch5)):
        checkpoint = run / "checkpoints" / f"epoch_{epoch:03d}.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_bytes(f"weights of epoch {epoch}".encode())
        _name_checkpoint(metrics_file, checkpoint)
        write_scores(metrics_file.parent / "scores" / "bottle.npz", seed=epoch)
    # epoch 5 was retrained (train --fresh) after its eval: its result no longer belongs to the checkpoint
    (run / "checkpoints" / "epoch_005.pt").write_bytes(b"other weights")
    # an eval interrupted half-way: a hidden staging folder with a complete-looking metrics.json
    partial = run / "eval" / ".epoch_007.partial-x1y2"
    partial.mkdir()
    (partial / "metrics.json").write_text(epoch5.read_text().replace('"epoch": 5', '"epoch": 7'))
    # a metrics.json of the old layout (the run folder itself): which checkpoint it came from is unknown
    (run / "metrics.json").write_text(epoch1.read_text())

    report = build_report(outputs, "mvtec_ad", tmp_path / "r.md")
    assert report.summary.loc[("LFD", "SeaS"), "Image AUROC"] == pytest.approx(90.0)  # epoch 3, not 1, 5 or 7
    assert report.sources == ["mvtec_ad/seas/lfd/all: epoch 3, weights abababababab (eval/epoch_003); "
                              "not shown: epoch 1"]
    assert "epoch 3, weights abababababab" in report.markdown
    text = "\n".join(report.warnings)
    assert "eval/epoch_005/metrics.json: stale, checkpoints/epoch_005.pt has changed since this eval" in text
    assert "mvtec_ad/seas/lfd/all/metrics.json: not in a <run>/eval/epoch_NNN folder" in text
    assert "epoch_007" not in text and len(report.warnings) == 2
    # the figures come from the same eval folder as the table
    from anoseg.report.figures import category_figures

    figure_runs: list = []

    def record(category, runs, out_dir, *args, **kwargs):
        figure_runs.extend(runs)
        return category_figures(category, runs, out_dir, *args, **kwargs)

    monkeypatch.setattr("anoseg.report.category_figures", record)
    build_report(outputs, "mvtec_ad", tmp_path / "r2.md")
    assert [path for _, path in figure_runs] == [epoch3.parent / "scores" / "bottle.npz"]


def test_report_without_dataset_reports_every_dataset(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    write_metrics(outputs, "mvtec_ad", "seas", "lfd", "all", {"bottle": anomaly_metrics(0.9)})
    write_metrics(outputs, "visa", "none", "sanet_s", "all", {"candle": anomaly_metrics(0.8)})
    (outputs / "bench").mkdir()  # not a dataset
    result = CliRunner().invoke(main, ["report", "--output", str(outputs), "--no-figures"])
    assert result.exit_code == 0, result.output
    mvtec, visa = outputs / "report_mvtec_ad.md", outputs / "report_visa.md"
    assert "bottle" in mvtec.read_text() and "candle" not in mvtec.read_text()
    assert "candle" in visa.read_text() and "LiteSeg" not in visa.read_text()
    one = tmp_path / "one"
    write_metrics(one, "visa", "none", "lfd", "all", {"candle": anomaly_metrics(0.8)})
    result = CliRunner().invoke(main, ["report", "--output", str(one), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "candle" in (one / "report.md").read_text()
    result = CliRunner().invoke(main, ["report", "--output", str(tmp_path / "empty"), "--no-figures"])
    assert result.exit_code == 2 and "no eval results" in result.output


def test_pr_legend_in_axis_unit_and_heatmaps_on_a_fixed_scale(tmp_path: Path) -> None:
    from sklearn.metrics import average_precision_score

    path = tmp_path / "scores.npz"
    write_scores(path, seed=0, quality=0.3)
    scores = load_scores("LFD / SeaS", path)
    # scores here run from 0 to 1.3: a per-run scale would put red at 1.3, the fixed one at 1
    fig = _pr_figure("bottle", [scores])
    ap = average_precision_score(scores.gt_masks.ravel(), scores.pixel_scores.ravel())
    assert fig.axes[0].get_xlim() == (0, 1)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [f"LFD / SeaS (AP {ap:.3f})"]
    grid = _examples_figure("bottle", [scores], 4)
    heatmaps = [im for ax in grid.axes for im in ax.get_images() if im.get_cmap().name == "jet"]
    assert len(heatmaps) == 4 and all(im.get_clim() == (0.0, 1.0) for im in heatmaps)
    bars = [ax for ax in grid.axes if ax.get_ylabel() == "defect probability"]
    assert len(bars) == 1 and tuple(np.round(bars[0].get_ylim(), 6)) == (0.0, 1.0)
