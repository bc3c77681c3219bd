"""The report shows how runs trained (precision, device kind) only where a table mixes them, and warns when a mean
over seeds mixes precisions (issue 21 §2)."""

from __future__ import annotations

import json
from pathlib import Path

from report_helpers import anomaly_metrics, write_metrics

from anoseg.paths import eval_dir, run_dir
from anoseg.report import build_report

AMX, AVX2 = "cpu avx512_bf16+amx · Xeon", "cpu avx2 · EPYC"


def write_run(outputs: Path, generator: str, seed: int, precision: str | None, device: str | None,
              base: float = 0.9) -> Path:
    """One seed of LFD on ``generator``; ``precision``/``device`` None: a metrics.json older than those fields."""
    path = write_metrics(outputs, "mvtec_ad", generator, "lfd", "all",
                         {"bottle": anomaly_metrics(base), "cable": anomaly_metrics(base - 0.1)})
    doc = json.loads(path.read_text())
    for key, value in (("precision", precision), ("device_kind", device)):
        if value is not None:
            doc[key] = value
    target = eval_dir(run_dir(outputs, "mvtec_ad", generator, "lfd", "all", seed), 100) / "metrics.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    path.unlink()
    target.write_text(json.dumps(doc))
    return target


def report(outputs: Path):
    return build_report(outputs, "mvtec_ad", outputs / "r.md", figures=False)


def test_seeds_in_different_precisions_show_the_column_and_a_warning(tmp_path: Path) -> None:
    write_run(tmp_path, "seas", 0, "bf16-mixed", AMX)
    write_run(tmp_path, "seas", 1, "bf16-mixed", AMX)
    write_run(tmp_path, "seas", 42, "32-true", AVX2)
    write_run(tmp_path, "none", 0, "32-true", AVX2, base=0.8)
    result = report(tmp_path)
    summary = result.tables[0]
    assert summary.frame.index.names == ["Segmenter", "Generator", "Precision", "Device"]
    rows = {label[1]: label[2:] for label in summary.frame.index}
    assert rows["SeaS"] == ("32-true & bf16-mixed", f"{AVX2} & {AMX}")
    assert rows["none"] == ("32-true", AVX2)
    warned = [w for w in result.warnings if "different precisions" in w]
    assert warned == ["LFD / SeaS: its seeds trained in different precisions (32-true: seed 42; bf16-mixed: seeds "
                      "0, 1); their mean mixes them — train every seed with the same --precision"]
    assert warned[0] in result.markdown and "| Precision | Device |" in result.markdown
    # the per-category tables (runs as columns) say it in a caption
    per_category = next(t for t in result.tables if t.title == "Pixel AP")
    assert any(c.startswith("Precision per run: LFD / none 32-true, LFD / SeaS 32-true & bf16-mixed.")
               for c in per_category.captions)


def test_runs_that_differ_from_each_other_show_the_column_without_a_warning(tmp_path: Path) -> None:
    write_run(tmp_path, "seas", 42, "bf16-mixed", AMX)
    write_run(tmp_path, "none", 42, "32-true", AMX, base=0.8)
    result = report(tmp_path)
    assert result.tables[0].frame.index.names == ["Segmenter", "Generator", "Precision"]  # one device: no column
    assert not any("different precisions" in w for w in result.warnings)
    assert "bf16-mixed" in result.markdown


def test_a_uniform_report_shows_neither_column_nor_warning(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_run(tmp_path, "seas", seed, "32-true", AVX2)
    write_run(tmp_path, "none", 0, "32-true", AVX2, base=0.8)
    result = report(tmp_path)
    assert result.tables[0].frame.index.names == ["Segmenter", "Generator"]
    assert not any("precision" in w for w in result.warnings)
    assert "32-true" not in result.markdown and "Precision" not in result.markdown


def test_files_older_than_the_fields_are_read_and_count_as_unrecorded(tmp_path: Path) -> None:
    write_run(tmp_path, "seas", 0, None, None)
    write_run(tmp_path, "none", 0, None, None, base=0.8)
    old = report(tmp_path)
    assert old.tables[0].frame.index.names == ["Segmenter", "Generator"] and not old.warnings
    write_run(tmp_path, "seas", 1, "bf16-mixed", AMX)  # a newer seed next to an old one: unknown is not "the same"
    mixed = report(tmp_path)
    precision = {label[1]: label[2] for label in mixed.tables[0].frame.index}
    assert precision == {"SeaS": "bf16-mixed & unrecorded", "none": "unrecorded"}
    assert any("unrecorded: seed 0" in w for w in mixed.warnings)
