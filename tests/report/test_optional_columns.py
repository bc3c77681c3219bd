"""``report --aupro``: the optional Pixel AUPRO column, off the papers' default columns unless asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from report_helpers import anomaly_metrics, write_metrics

from anoseg.cli import main
from anoseg.report import build_report

PAPER_COLUMNS = ["Image AUROC", "Image AP", "Image F1-max", "Pixel AUROC", "Pixel AP", "Pixel F1-max", "Pixel IoU"]


@pytest.fixture
def aupro_outputs(tmp_path: Path) -> Path:
    """LFD evaluated with ``--aupro`` (0.8 and 0.5: mean 65 %), SANet-S without it."""
    outputs = tmp_path / "outputs"
    write_metrics(outputs, "mvtec_ad", "seas", "lfd", "all",
                  {"bottle": anomaly_metrics(0.9, pixel_aupro=0.8), "cable": anomaly_metrics(0.7, pixel_aupro=0.5)})
    write_metrics(outputs, "mvtec_ad", "seas", "sanet_s", "all",
                  {"bottle": anomaly_metrics(0.85), "cable": anomaly_metrics(0.75)})
    return outputs


def test_aupro_is_off_by_default(aupro_outputs: Path) -> None:
    report = build_report(aupro_outputs, "mvtec_ad", aupro_outputs / "r.md", figures=False)
    assert list(report.summary.columns) == PAPER_COLUMNS
    assert "pixel_aupro" not in report.per_category
    assert "AUPRO" not in report.markdown


def test_aupro_column_when_asked(aupro_outputs: Path) -> None:
    report = build_report(aupro_outputs, "mvtec_ad", aupro_outputs / "r.md", figures=False,
                          extra_metrics=("pixel_aupro",))
    assert list(report.summary.columns) == [*PAPER_COLUMNS, "Pixel AUPRO"]
    assert report.summary.loc[("LFD", "SeaS"), "Pixel AUPRO"] == pytest.approx(65.0)
    assert report.summary.loc[("SANet-S", "SeaS"), "Pixel AUPRO"] != report.summary.loc[("SANet-S", "SeaS"),
                                                                                        "Pixel AUPRO"]  # NaN: a dash
    per_category = report.per_category["pixel_aupro"]
    assert per_category.loc["bottle", "LFD / SeaS"] == pytest.approx(80.0)
    assert per_category.loc["cable", "LFD / SeaS"] == pytest.approx(50.0)
    header = next(line for line in report.markdown.splitlines() if line.startswith("| Segmenter"))
    assert header.rstrip(" |").endswith("Pixel AUPRO")
    sanet = next(line for line in report.markdown.splitlines() if line.startswith("| SANet-S"))
    assert sanet.rstrip(" |").endswith("–")


def test_a_column_the_task_lacks_is_left_out_with_a_warning(tmp_path: Path) -> None:
    road = {"maxf": 0.9, "ap": 0.88, "pre": 0.89, "rec": 0.91, "fpr": 0.02, "fnr": 0.1, "n_images": 10}
    write_metrics(tmp_path, "kitti_road", "none", "lfd", "all", {"URBAN": road}, task="road")
    report = build_report(tmp_path, "kitti_road", tmp_path / "r.md", figures=False, extra_metrics=("pixel_aupro",))
    assert "AUPRO" not in " ".join(report.summary.columns)
    assert report.warnings == ["road reports have no column pixel_aupro (optional columns: none); left out"]


def test_cli_report_aupro(aupro_outputs: Path) -> None:
    out = aupro_outputs / "report.md"
    result = CliRunner().invoke(main, ["report", "--output", str(aupro_outputs), "--no-figures", "--aupro"])
    assert result.exit_code == 0, result.output
    summary = out.read_text(encoding="utf-8").split("## Summary", 1)[1]
    assert "| Pixel AUPRO |" in summary and "| 65.00 |" in summary
