"""``report --by defect``: per-defect-type tables from metrics.json ``by_defect`` (mean ± std over seeds), old files
without it still read, and the line saying which split the runs were prepared with."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from report_helpers import anomaly_metrics, write_metrics

from anoseg.cli import main
from anoseg.errors import AnosegError
from anoseg.paths import eval_dir, run_dir
from anoseg.report import build_report
from anoseg.report.render import format_cells

PROTOCOL = {"val": 0.0, "real_fraction": 1 / 3, "protocol": True}


def defect_entry(auroc: float, ap: float = 0.5, pixel_ap: float = 0.4, iou: float | None = 0.3) -> dict:
    return {"image_auroc": auroc, "image_ap": ap, "pixel_ap": pixel_ap, "iou": iou, "n_images": 7,
            "n_anomalous_images": 3}


def write_run(outputs: Path, generator: str, model: str, seed: int, by_defect: dict | None,
              split: dict | None = None) -> Path:
    """One seed's metrics.json with the given ``by_defect`` (None: an old file without the key) and ``split``."""
    path = write_metrics(outputs, "mvtec_ad", generator, model, "all",
                         {"bottle": anomaly_metrics(0.9), "cable": anomaly_metrics(0.8)})
    doc = json.loads(path.read_text())
    if by_defect is not None:
        doc["by_defect"] = by_defect
    if split is not None:
        doc["split"] = split
    target = eval_dir(run_dir(outputs, "mvtec_ad", generator, model, "all", seed), 100) / "metrics.json"
    path.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc))
    return target


def test_by_defect_tables_mean_and_std_over_seeds(tmp_path: Path) -> None:
    auroc = {0: (0.9, 0.7, 0.6), 1: (0.8, 0.75, 0.5), 2: (0.95, 0.65, 0.4)}  # seed → bottle/broken, crack, cable/bent
    for seed, (broken, crack, bent) in auroc.items():
        by_defect = {"bottle": {"crack": defect_entry(crack), "broken": defect_entry(broken)},
                     "cable": {"bent": defect_entry(bent, iou=None)}}
        write_run(tmp_path, "seas", "lfd", seed, by_defect, PROTOCOL)
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False, by="defect", fmt="json")
    table = report.by_defect["image_auroc"]
    assert list(table.index) == ["bottle / broken", "bottle / crack", "cable / bent", "mean"]  # recipe order, names
    column = table.columns[0]
    for row, values in zip(table.index[:3], zip(*auroc.values(), strict=True), strict=True):
        assert table.loc[row, column] == round(100 * statistics.mean(values), 2)
    per_seed = [statistics.mean(v) for v in auroc.values()]
    assert table.loc["mean", column] == round(100 * statistics.mean(per_seed), 2)
    shown = next(t for t in report.tables if t.kind == "by_defect" and t.title.startswith("Image AUROC"))
    spread = round(100 * statistics.stdev([v[0] for v in auroc.values()]), 2)
    mean = table.loc["bottle / broken", column]
    assert format_cells(shown).loc["bottle / broken", column] == f"{mean:.2f} ± {spread:.2f}"
    assert set(report.by_defect) == {"image_auroc", "image_ap", "pixel_ap", "iou"}
    assert report.by_defect["iou"].loc["cable / bent"].isna().all()  # undefined stays a dash
    markdown = (tmp_path / "r.md").read_text()
    assert "## Per-defect-type results" in markdown and "cable / bent" in markdown
    assert "Split: the papers' protocol" in markdown
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [r["Category / defect type"] for r in saved["by_defect"]["image_auroc"]["rows"]][:3] == list(table.index[:3])


def test_old_files_without_by_defect_still_report(tmp_path: Path) -> None:
    write_run(tmp_path, "seas", "lfd", 42, None)
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False, by="defect")
    assert report.by_defect == {} and any("no per-defect-type results" in w for w in report.warnings)
    assert "Split: not recorded (evaluated before anoseg recorded it" in report.markdown  # still a line
    plain = build_report(tmp_path, "mvtec_ad", tmp_path / "p.md", figures=False)
    assert plain.by_defect == {} and not [t for t in plain.tables if t.kind == "by_defect"]
    assert "Per-defect-type" not in plain.markdown
    with pytest.raises(AnosegError, match="--by"):
        build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False, by="category")


def test_report_by_defect_on_the_command_line_and_mixed_splits(tmp_path: Path) -> None:
    write_run(tmp_path, "seas", "lfd", 42, {"bottle": {"crack": defect_entry(0.8123)}}, PROTOCOL)
    write_run(tmp_path, "none", "lfd", 42, {"bottle": {"crack": defect_entry(0.7)}},
              {"val": 0.2, "real_fraction": 0.0, "protocol": False})
    result = CliRunner().invoke(main, ["report", "--output", str(tmp_path), "--dataset", "mvtec_ad", "--by", "defect",
                                       "--no-figures", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "Image AUROC by defect type" in result.output and "81.23" in result.output
    markdown = (tmp_path / "report.md").read_text()
    assert ("Split: LFD / none: validation part split.val = 0.2 held out of the training side, no real defect trains "
            "(split.real_fraction = 0: generated pairs only), test: the protocol's 2/3; LFD / SeaS: the papers' "
            "protocol (no validation part; the first ⌊n/3⌋ real defects of each type train).") in markdown.replace(
                "\\", "")
    csv = pd.read_csv(tmp_path / "report_by_defect_image_auroc.csv", index_col=0)
    assert csv.loc["bottle / crack"].tolist() == [70.0, 81.23]
    bad = CliRunner().invoke(main, ["report", "--output", str(tmp_path), "--by", "nothing"])
    assert bad.exit_code == 2
