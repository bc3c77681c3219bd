"""``anoseg report``: golden markdown, same numbers in every format, skipped files, figures, road and scene tables."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_helpers import GOLDEN_RUNS, anomaly_metrics, write_metrics, write_scores
from rich.console import Console
from sklearn.metrics import average_precision_score, precision_recall_curve

from anoseg.errors import AnosegError
from anoseg.report import build_report, print_report
from anoseg.report.figures import pr_curve

GOLDEN = Path(__file__).parent / "golden" / "mvtec_ad_report.md"
UPDATE = os.environ.get("ANOSEG_UPDATE_GOLDEN") == "1"  # regenerate: ANOSEG_UPDATE_GOLDEN=1 pytest tests/report


def markdown_table(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` (header row first, separator row dropped)."""
    lines = markdown[markdown.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return [rows[0], *rows[2:]]


def number(cell: str) -> float | None:
    cell = cell.replace("**", "").rstrip("†")
    return None if cell in ("–", "") else float(cell)


def mean_pct(run: dict, metric: str) -> float:
    values = [m[metric] for m in run.values() if m.get(metric) is not None]
    return round(100 * sum(values) / len(values), 2)


def test_golden_markdown(golden_outputs: Path, tmp_path: Path) -> None:
    report = build_report(golden_outputs, "mvtec_ad", tmp_path / "report.md", figures=False)
    written = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert written == report.markdown
    if UPDATE:
        GOLDEN.write_text(written, encoding="utf-8")
    assert written == GOLDEN.read_text(encoding="utf-8"), "markdown differs from the golden file"

    summary = markdown_table(written, "## Summary")
    header, body = summary[0], summary[1:]
    assert header[:2] == ["Segmenter", "Generator"] and header[2] == "Image AUROC" and header[-1] == "Pixel IoU"
    labels = [row[:2] for row in body]
    assert labels == [
        ["LFD", "none"],
        ["", "SeaS"],
        ["SANet-S", "none"],
        ["", "SeaS (1/2 categories)"],  # the incomplete run says so
        ["Average", "none"],
        ["", "SeaS (1/2 segmenters)"],  # SANet-S + SeaS covers other categories: left out, and said
    ]
    bold = [[cell.startswith("**") for cell in row[2:]] for row in body]
    pixel_auroc = header.index("Pixel AUROC") - 2
    # LFD block: SeaS best everywhere but Pixel AUROC, where none wins
    assert bold[0] == [i == pixel_auroc for i in range(7)]
    assert bold[1] == [i != pixel_auroc for i in range(7)]
    # SANet-S and Average blocks: one complete row each, nothing to compare it with → no bold
    assert not any(bold[2] + bold[3] + bold[4] + bold[5])
    # Average / none is the mean of the two complete "none" rows
    iou = header.index("Pixel IoU")
    expected = (mean_pct(GOLDEN_RUNS[("none", "lfd")], "iou") + mean_pct(GOLDEN_RUNS[("none", "sanet_s")], "iou")) / 2
    assert number(body[4][iou]) == pytest.approx(expected, abs=0.006)
    assert number(body[5][iou]) == mean_pct(GOLDEN_RUNS[("seas", "lfd")], "iou")
    # escaping: names with underscores are escaped everywhere outside code spans
    assert "metal\\_nut" in written and "metal_nut" not in written
    assert "Protocol clean, epoch 100." in written
    assert "## Cost" in written and "| LFD | 0.936 |" in written


def test_summary_cells_are_category_means(golden_outputs: Path, tmp_path: Path) -> None:
    report = build_report(golden_outputs, "mvtec_ad", tmp_path / "r.md", figures=False)
    for (generator, model), run in GOLDEN_RUNS.items():
        block = {"lfd": "LFD", "sanet_s": "SANet-S"}[model]
        rows = report.summary.loc[block]
        row = rows[rows.index.str.startswith({"none": "none", "seas": "SeaS"}[generator])].iloc[0]
        for metric, title in [("image_auroc", "Image AUROC"), ("pixel_ap", "Pixel AP"), ("iou", "Pixel IoU")]:
            assert row[title] == pytest.approx(mean_pct(run, metric), abs=0.006)
    per_cat = report.per_category["iou"]
    assert list(per_cat.index) == ["bottle", "metal_nut", "mean"]
    assert per_cat.loc["metal_nut", "SANet-S / none"] == pytest.approx(12.35)
    assert np.isnan(per_cat.loc["metal_nut", "SANet-S / SeaS"])


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_carry_the_markdown_numbers(golden_outputs: Path, tmp_path: Path, fmt: str) -> None:
    report = build_report(golden_outputs, "mvtec_ad", tmp_path / "report.md", fmt=fmt, figures=False)
    md = markdown_table(report.markdown, "## Summary")
    md_per_cat = markdown_table(report.markdown, "### Pixel AP")
    md_cost = markdown_table(report.markdown, "## Cost")
    if fmt == "csv":
        assert {p.name for p in report.paths} >= {"report.md", "report.csv", "report_pixel_ap.csv", "report_cost.csv"}
        tables = [list(csv.reader((tmp_path / f"report{s}.csv").open())) for s in ("", "_pixel_ap", "_cost")]
    else:
        doc = json.loads((tmp_path / "report.json").read_text())
        assert doc["schema"] == "anoseg.report/1" and doc["task"] == "anomaly"
        tables = [
            [list(t["rows"][0]), *[list(r.values()) for r in t["rows"]]]
            for t in (doc["summary"], doc["per_category"]["pixel_ap"], doc["cost"])
        ]
    for md_table, other in zip([md, md_per_cat, md_cost], tables, strict=True):
        assert [h.replace("\\", "") for h in md_table[0]] == [str(h) for h in other[0]]
        assert len(md_table) == len(other)
        n_labels = 2 if md_table is md else 1
        for md_row, row in zip(md_table[1:], other[1:], strict=True):
            got = [None if v in ("", None) else float(v) for v in row[n_labels:]]
            assert got == [number(c) for c in md_row[n_labels:]]
            assert str(row[n_labels - 1]) == md_row[n_labels - 1].replace("\\", "")


def test_corrupt_and_foreign_files_are_named_and_skipped(golden_outputs: Path, tmp_path: Path, capsys) -> None:
    broken = golden_outputs / "mvtec_ad/seas/lfd/bottle/eval/epoch_100/metrics.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"schema": "anoseg.metrics/1", "categ')
    foreign = golden_outputs / "mvtec_ad/old/lfd/all/eval/epoch_100/metrics.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(json.dumps({"auroc": 0.9}))
    other = write_metrics(golden_outputs, "visa", "none", "lfd", "all", {"candle": anomaly_metrics(0.5)})
    (golden_outputs / "mvtec_ad/none/lfd/copied/eval/epoch_100/").mkdir(parents=True)
    (golden_outputs / "mvtec_ad/none/lfd/copied/eval/epoch_100/metrics.json").write_text(other.read_text())

    report = build_report(golden_outputs, "mvtec_ad", tmp_path / "r.md", figures=False)
    text = "\n".join(report.warnings)
    assert "mvtec_ad/seas/lfd/bottle/eval/epoch_100/metrics.json: unreadable" in text
    assert "mvtec_ad/old/lfd/all/eval/epoch_100/metrics.json: not an anoseg.metrics/1 file" in text
    assert "mvtec_ad/none/lfd/copied/eval/epoch_100/metrics.json: belongs to dataset 'visa'" in text
    assert len(report.warnings) == 3
    assert "seas/lfd/bottle/eval/epoch_100/metrics.json" in capsys.readouterr().err.replace("\n", "")
    assert "## Warnings" in report.markdown
    # the good runs are still all there
    assert len(report.summary) == 6


def test_nothing_to_report(tmp_path: Path) -> None:
    with pytest.raises(AnosegError, match=r"nothing to report under .*mvtec_ad"):
        build_report(tmp_path, "mvtec_ad", tmp_path / "r.md")
    bad = tmp_path / "mvtec_ad/seas/lfd/all/eval/epoch_100/metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("[]")
    with pytest.raises(AnosegError, match="1 skipped"):
        build_report(tmp_path, "mvtec_ad", tmp_path / "r.md")
    assert not (tmp_path / "r.md").exists()


def test_unknown_format(golden_outputs: Path, tmp_path: Path) -> None:
    with pytest.raises(AnosegError, match="--format"):
        build_report(golden_outputs, "mvtec_ad", tmp_path / "r.md", fmt="html")


def test_per_category_runs_merge_into_their_own_row(tmp_path: Path) -> None:
    unified = {"bottle": anomaly_metrics(0.9), "cable": anomaly_metrics(0.8)}
    write_metrics(tmp_path, "mvtec_ad", "seas", "lfd", "all", unified)
    for category, base in [("bottle", 0.95), ("cable", 0.75)]:
        write_metrics(tmp_path, "mvtec_ad", "seas", "lfd", category, {category: anomaly_metrics(base)}, epoch=10)
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    assert list(report.summary.index) == [("LFD", "SeaS"), ("LFD (per-category)", "SeaS")]
    assert report.summary.loc[("LFD (per-category)", "SeaS"), "Image AUROC"] == pytest.approx(85.0)
    assert list(report.per_category["image_auroc"].columns) == ["LFD / SeaS", "LFD (per-category) / SeaS"]
    assert "protocol clean, epoch 10: LFD (per-category) / SeaS; protocol clean, epoch 100: LFD / SeaS" in (
        report.markdown
    )


def test_undefined_metric_is_marked_not_hidden(tmp_path: Path) -> None:
    run = {"bottle": anomaly_metrics(0.9), "screw": anomaly_metrics(0.7, image_auroc=None)}
    write_metrics(tmp_path, "mvtec_ad", "none", "lfd", "all", run)
    write_metrics(tmp_path, "mvtec_ad", "none", "sanet_s", "all", {c: anomaly_metrics(0.6) for c in run})
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    assert report.summary.loc[("LFD", "none"), "Image AUROC"] == pytest.approx(90.0)  # bottle only
    summary = markdown_table(report.markdown, "## Summary")
    assert summary[1][2] == "90.00†" and summary[1][3] == "75.00"  # one generator per block: nothing in bold
    assert summary[3][2] == "75.00†"  # the Average inherits the mark
    assert "LFD / none: Image AUROC (without screw)" in report.markdown


def test_order_and_display_names(tmp_path: Path) -> None:
    for generator in ["seas", "perlin", "none", "dfmgan", "anomalydiffusion", "cutpaste"]:
        for model in ["zeta_net", "upernet_r50", "sfnet_lite_stdc1", "liteseg_darknet19", "sanet_m", "lfd"]:
            write_metrics(tmp_path, "mvtec_ad", generator, model, "all", {"bottle": anomaly_metrics(0.9)})
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    blocks = list(dict.fromkeys(report.summary.index.get_level_values(0)))
    assert blocks == ["LFD", "SANet-M", "LiteSeg-DarkNet19", "SFNet-Lite-STDC1", "UperNet-R50", "zeta_net", "Average"]
    generators = list(report.summary.loc["LFD"].index)
    assert generators == ["none", "AnomalyDiffusion", "cutpaste", "DFMGAN", "perlin", "SeaS"]


def test_categories_restrict_and_order(golden_outputs: Path, tmp_path: Path) -> None:
    report = build_report(golden_outputs, "mvtec_ad", tmp_path / "r.md", figures=False, categories=["metal_nut"])
    assert list(report.per_category["iou"].index) == ["metal_nut", "mean"]
    assert any("left out of the report: bottle" in w for w in report.warnings)
    assert ("SANet-S", "SeaS") not in report.summary.index  # it has no metal_nut
    with pytest.raises(AnosegError, match="for categories screw"):
        build_report(golden_outputs, "mvtec_ad", tmp_path / "r.md", categories=["screw"])


def test_figures_are_valid_pngs_and_linked(golden_outputs: Path, tmp_path: Path) -> None:
    for seed, (generator, model) in enumerate([("seas", "lfd"), ("none", "sanet_s")]):
        write_scores(golden_outputs / "mvtec_ad" / generator / model / "all/eval/epoch_100/scores/bottle.npz",
                     seed=seed)
    (golden_outputs / "mvtec_ad/none/lfd/all/eval/epoch_100/scores").mkdir(parents=True)
    (golden_outputs / "mvtec_ad/none/lfd/all/eval/epoch_100/scores/bottle.npz").write_bytes(b"PK\x03\x04 truncated")
    out = tmp_path / "rep" / "report.md"
    report = build_report(golden_outputs, "mvtec_ad", out)
    figures = out.parent / "report_figures"
    assert sorted(p.name for p in figures.iterdir()) == ["bottle_examples.png", "bottle_pr.png"]  # no metal_nut scores
    for path in figures.iterdir():
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"
        assert path in report.paths
        assert f"](report_figures/{path.name})" in report.markdown
    assert any("none/lfd/all/eval/epoch_100/scores/bottle.npz" in w and "unreadable" in w for w in report.warnings)
    with Image.open(figures / "bottle_examples.png") as image:
        assert image.width > image.height / 2  # image, ground truth and two heatmap columns


def test_pr_curve_is_exact_over_every_pixel() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((6, 40, 50)) < 0.1).astype(np.uint8)
    scores = (np.round(rng.random((6, 40, 50)) * 50) / 50 + 0.3 * labels).astype(np.float32)  # heavy ties, AP < 1
    precision, recall, ap = pr_curve(scores, labels)
    ref_precision, ref_recall, _ = precision_recall_curve(labels.ravel(), scores.ravel())
    np.testing.assert_allclose(precision, ref_precision, rtol=1e-12)
    np.testing.assert_allclose(recall, ref_recall, rtol=1e-12)
    assert precision[-1] == 1 and recall[-1] == 0  # sklearn's end point of the curve
    assert ap == pytest.approx(average_precision_score(labels.ravel(), scores.ravel()), rel=1e-12)
    assert 0.3 < ap < 0.99


def road_metrics(base: float) -> dict[str, float]:
    return {"maxf": base, "ap": base - 0.02, "pre": base - 0.01, "rec": base + 0.01, "fpr": 0.2 - base / 5,
            "fnr": 1 - base, "threshold": 0.5, "n_images": 10}  # fmt: skip


def test_road_has_its_own_columns_and_rows(tmp_path: Path) -> None:
    benchmarks = ["um", "umm", "uu", "URBAN"]
    for model, base in [("lfd", 0.93), ("sanet_s", 0.95)]:
        cats = {b: road_metrics(base - 0.01 * i) for i, b in enumerate(benchmarks)}
        write_metrics(tmp_path, "kitti_road", "none", model, "all", cats, task="road", epoch=150)
    report = build_report(tmp_path, "kitti_road", tmp_path / "road.md", figures=False)
    assert list(report.summary.columns) == ["MaxF", "AP", "PRE", "REC", "FPR", "FNR"]
    assert report.summary.index.names == ["Segmenter", "Generator", "Benchmark"]
    lfd = report.summary.index.get_level_values("Segmenter") == "LFD"
    assert list(report.summary.index[lfd].get_level_values("Benchmark")) == benchmarks
    assert report.summary.loc[("SANet-S", "none", "URBAN"), "MaxF"] == pytest.approx(92.0)
    assert report.per_category == {}
    table = markdown_table(report.markdown, "## Summary")
    sanet_um = next(r for r in table if r[0] == "SANet-S")
    assert sanet_um[3] == "**95.00**" and sanet_um[7] == "**1.00**"  # best MaxF is the highest, best FPR the lowest
    assert "Image AUROC" not in report.markdown


def test_scene_has_its_own_columns_and_class_table(tmp_path: Path) -> None:
    for model, base in [("lfd", 0.6), ("bisenetv2", 0.65)]:
        entry = {"miou": base, "pixel_acc": base + 0.2, "mean_class_acc": base + 0.05, "n_images": 500,
                 "iou/road": base + 0.3, "iou/traffic_light": base - 0.2}  # fmt: skip
        write_metrics(tmp_path, "cityscapes", "none", model, "all", {"all": entry}, task="scene")
    report = build_report(tmp_path, "cityscapes", tmp_path / "scene.md", figures=False)
    assert list(report.summary.columns) == ["mIoU", "Pixel acc.", "Mean class acc."]
    assert list(report.summary.index) == [("LFD", "none"), ("BiSeNetV2", "none"), ("Average", "none")]
    classes = report.per_category["class_iou"]
    assert list(classes.index) == ["road", "traffic_light", "mean"]
    assert classes.loc["mean", "BiSeNetV2 / none"] == pytest.approx((95.0 + 45.0) / 2)
    assert "traffic\\_light" in report.markdown and "## Per-class results" in report.markdown


def test_print_report_shows_the_same_numbers(golden_outputs: Path, tmp_path: Path) -> None:
    report = build_report(golden_outputs, "mvtec_ad", tmp_path / "r.md", figures=False)
    console = Console(record=True, width=250, color_system=None)
    print_report(report, console)
    text = console.export_text()
    lfd_seas = report.summary.loc[("LFD", "SeaS")]
    assert f"{lfd_seas['Image AUROC']:.2f}" in text and "SeaS (1/2 categories)" in text
    assert "metal_nut" in text and "Cost" in text


def test_one_category_twice_and_mixed_tasks_warn(tmp_path: Path) -> None:
    write_metrics(tmp_path, "mvtec_ad", "seas", "lfd", "bottle", {"bottle": anomaly_metrics(0.9)})
    write_metrics(
        tmp_path, "mvtec_ad", "seas", "lfd", "cable", {"cable": anomaly_metrics(0.8), "bottle": anomaly_metrics(0.1)}
    )
    write_metrics(tmp_path, "mvtec_ad", "none", "lfd", "all", {"um": {"maxf": 0.9}}, task="road")
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    assert report.summary.loc[("LFD (per-category)", "SeaS"), "Image AUROC"] == pytest.approx(85.0)  # 0.1 ignored
    text = "\n".join(report.warnings)
    assert ("seas/lfd/cable/eval/epoch_100/metrics.json: category 'bottle' already reported by "
            "mvtec_ad/seas/lfd/bottle/eval/epoch_100/metrics.json") in text
    assert "none/lfd/all/eval/epoch_100/metrics.json: task 'road', this report shows 'anomaly'" in text
