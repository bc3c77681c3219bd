"""Seeds in the report: mean ± sample std and n, the bold rule with seeds, and the bootstrap CI of image metrics."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_helpers import anomaly_metrics, write_metrics

from anoseg.metrics.anomaly import binary_metrics
from anoseg.paths import eval_dir, run_dir
from anoseg.report import build_report
from anoseg.report.render import format_cells
from anoseg.report.stats import beats, bootstrap_image_ci, weighted_image_metrics
from anoseg.runid import RunId


def write_seed(outputs: Path, generator: str, model: str, seed: int, categories: dict) -> Path:
    """One seed's metrics.json in the seed's run folder (``anoseg.paths.run_dir``)."""
    path = write_metrics(outputs, "mvtec_ad", generator, model, "all", categories)
    target = eval_dir(run_dir(outputs, "mvtec_ad", generator, model, "all", seed), 100) / "metrics.json"
    if target != path:
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    return target


def test_seed_of_run_inverts_run_dir(tmp_path: Path) -> None:
    for seed in (0, 7, 42):
        assert RunId.from_folder(run_dir(tmp_path, "d", "seas", "lfd", "all", seed), tmp_path).seed == seed


def test_mean_std_and_n_are_exact(tmp_path: Path) -> None:
    auroc = {0: (0.90, 0.80), 1: (0.93, 0.81), 42: (0.97, 0.86)}  # seed → (bottle, cable)
    for seed, (bottle, cable) in auroc.items():
        write_seed(tmp_path, "seas", "lfd", seed, {"bottle": anomaly_metrics(0.9, image_auroc=bottle),
                                                   "cable": anomaly_metrics(0.8, image_auroc=cable)})
    write_seed(tmp_path, "none", "lfd", 0, {"bottle": anomaly_metrics(0.5), "cable": anomaly_metrics(0.4)})
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    assert not any("already reported" in w for w in report.warnings)  # seeds combine, they are not duplicates
    per_seed = [100 * (b + c) / 2 for b, c in auroc.values()]
    row = report.summary.loc[("LFD", "SeaS")]
    assert row["Image AUROC"] == round(statistics.mean(per_seed), 2)
    assert row["n"] == 3 and report.summary.loc[("LFD", "none"), "n"] == 1
    summary = report.tables[0]
    assert summary.std.loc[("LFD", "SeaS"), "Image AUROC"] == round(statistics.stdev(per_seed), 2)
    assert np.isnan(summary.std.loc[("LFD", "none"), "Image AUROC"])  # one seed: no std, never a 0
    cells = format_cells(summary)
    assert cells.loc[("LFD", "SeaS"), "Image AUROC"].strip("*") == (f"{statistics.mean(per_seed):.2f} ± "
                                                                    f"{statistics.stdev(per_seed):.2f}")
    assert cells.loc[("LFD", "none"), "Image AUROC"] == "45.00"  # one seed: the value alone
    assert "n = 3" not in report.markdown  # n differs between runs: named per run
    assert "n per row: LFD / none 1, LFD / SeaS 3" in report.markdown
    # per-category table: each cell mean ± std over seeds, the mean row the mean over seeds of the seeds' means
    table = next(t for t in report.tables if t.title == "Image AUROC")
    bottle = [100 * b for b, _ in auroc.values()]
    assert table.frame.loc["bottle", "LFD / SeaS"] == round(statistics.mean(bottle), 2)
    assert table.std.loc["bottle", "LFD / SeaS"] == round(statistics.stdev(bottle), 2)
    assert table.std.loc["mean", "LFD / SeaS"] == round(statistics.stdev(per_seed), 2)
    assert any("n per run: LFD / none 1, LFD / SeaS 3" in c for c in table.captions)


def test_single_seed_tables_are_unchanged(tmp_path: Path) -> None:
    write_seed(tmp_path, "seas", "lfd", 42, {"bottle": anomaly_metrics(0.9)})
    write_seed(tmp_path, "none", "lfd", 3, {"bottle": anomaly_metrics(0.8)})  # other seed, other run: still n = 1
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    assert "n" not in report.summary.columns and report.tables[0].std is None
    assert "±" not in report.markdown and "seeds" not in report.markdown


def two_runs(outputs: Path, seas: dict, none: dict) -> None:
    """LFD with two generators, seeds 0 and 1; ``seas``/``none``: seed → (bottle, cable) pixel AP."""
    for generator, values in (("seas", seas), ("none", none)):
        for seed, (bottle, cable) in values.items():
            write_seed(outputs, generator, "lfd", seed, {"bottle": anomaly_metrics(0.9, pixel_ap=bottle),
                                                         "cable": anomaly_metrics(0.9, pixel_ap=cable)})


def test_bold_when_the_best_beats_the_next_beyond_the_noise(tmp_path: Path) -> None:
    # SeaS better on every (seed, category) pair by 5 to 8 points: t = 10.4 with 3 df, p = 0.002
    two_runs(tmp_path, {0: (0.95, 0.86), 1: (0.96, 0.87)}, {0: (0.90, 0.80), 1: (0.91, 0.79)})
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    bold = report.tables[0].bold
    assert bold.loc[("LFD", "SeaS"), "Pixel AP"] and not bold.loc[("LFD", "none"), "Pixel AP"]
    assert "**" in report.markdown


def test_no_bold_when_the_difference_is_noise(tmp_path: Path) -> None:
    # SeaS has the higher mean (85.5 vs 85.25), but the pairs disagree in sign: p = 0.83
    two_runs(tmp_path, {0: (0.95, 0.75), 1: (0.90, 0.82)}, {0: (0.90, 0.80), 1: (0.97, 0.74)})
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    summary = report.tables[0]
    assert summary.frame.loc[("LFD", "SeaS"), "Pixel AP"] > summary.frame.loc[("LFD", "none"), "Pixel AP"]
    assert not summary.bold["Pixel AP"].any()
    # the other metrics are equal for both generators: no bold either (equal values never beat each other)
    assert not summary.bold.to_numpy().any()


def test_beats_is_a_paired_t_test() -> None:
    from scipy.stats import ttest_rel

    index = pd.MultiIndex.from_product([[0, 1, 2], ["a", "b"]], names=["seed", "category"])
    a = pd.Series([0.90, 0.70, 0.92, 0.69, 0.91, 0.75], index)
    b = pd.Series([0.88, 0.69, 0.90, 0.70, 0.90, 0.71], index)
    p = ttest_rel(a, b).pvalue
    assert beats(a, b, alpha=p * 1.01) and not beats(a, b, alpha=p * 0.99)
    # pairs are matched by index, not by position; missing pairs are dropped
    assert beats(a, b) == beats(a.iloc[::-1], b)
    assert not beats(a.iloc[:1], b)  # one pair: nothing to test


def test_a_seed_missing_categories_is_left_out(tmp_path: Path) -> None:
    write_seed(tmp_path, "seas", "lfd", 0, {"bottle": anomaly_metrics(0.9), "cable": anomaly_metrics(0.8)})
    write_seed(tmp_path, "seas", "lfd", 1, {"bottle": anomaly_metrics(0.7)})  # a sweep still running
    write_seed(tmp_path, "seas", "lfd", 2, {"bottle": anomaly_metrics(0.95), "cable": anomaly_metrics(0.85)})
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False)
    assert report.summary.loc[("LFD", "SeaS"), "n"] == 2
    assert report.summary.loc[("LFD", "SeaS"), "Image AUROC"] == pytest.approx(100 * (0.85 + 0.90) / 2)
    assert any("seed 1 left out" in w for w in report.warnings)


def test_weighted_metrics_equal_binary_metrics_of_the_resample() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(3, 25))
        labels = rng.random(n) < 0.5
        labels[:2] = [True, False]
        scores = np.round(rng.random(n), 1)  # ties
        weights = rng.integers(0, 3, (4, n))
        weights[:, :2] += 1
        got = weighted_image_metrics(scores, labels, weights)
        for b in range(4):
            drawn = np.repeat(np.arange(n), weights[b])
            want = binary_metrics(scores[drawn].astype(np.float32), labels[drawn])
            for key in ("auroc", "ap", "f1max"):
                assert got[key][b] == pytest.approx(want[key], abs=1e-12)


def test_bootstrap_ci_from_known_scores() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    separated = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    ci = bootstrap_image_ci([(labels, [separated])])
    assert ci["image_auroc"] == (1.0, 1.0) and ci["image_f1max"] == (1.0, 1.0)  # every resample separates
    mixed = np.array([0.1, 0.5, 0.3, 0.85, 0.6, 0.7, 0.2, 0.9])
    ci = bootstrap_image_ci([(labels, [mixed])], n_resamples=4000)
    point = binary_metrics(mixed, labels)["auroc"]  # 0.625
    low, high = ci["image_auroc"]
    assert low < point < high and 0.2 < low < 0.45 and 0.8 < high <= 1.0
    assert bootstrap_image_ci([(labels, [mixed])], n_resamples=4000) == ci  # seeded: reproducible
    assert bootstrap_image_ci([(np.ones(3), [np.arange(3.0)])]) == dict.fromkeys(ci)  # one class: undefined


def test_bootstrap_ci_equals_a_plain_loop_over_resamples() -> None:
    """Two categories, two seeds: the interval of the mean over seeds and categories, resample by resample."""
    rng = np.random.default_rng(5)
    categories = []
    for n in (12, 9):
        labels = np.arange(n) % 3 == 0
        categories.append((labels, [rng.random(n) + 0.4 * labels for _ in range(2)]))
    got = bootstrap_image_ci(categories, n_resamples=300, seed=11)
    draw, totals = np.random.default_rng(11), []
    draws = []  # the same draws as the function: per category, anomalous then normal images, all resamples at once
    for labels, _ in categories:
        pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
        drawn_pos = pos[draw.integers(0, pos.size, (300, pos.size))]
        draws.append((drawn_pos, neg[draw.integers(0, neg.size, (300, neg.size))]))
    for b in range(300):
        per_category = []
        for (labels, seeds), (pos, neg) in zip(categories, draws, strict=True):
            idx = np.concatenate([pos[b], neg[b]])
            per_category.append(np.mean([[binary_metrics(s[idx], labels[idx])[k] for k in ("auroc", "ap", "f1max")]
                                         for s in seeds], axis=0))
        totals.append(np.mean(per_category, axis=0))
    want = np.quantile(np.array(totals), [0.025, 0.975], axis=0)
    for i, key in enumerate(("image_auroc", "image_ap", "image_f1max")):
        assert got[key] == pytest.approx((want[0, i], want[1, i]), abs=1e-9)
        assert got[key][0] < got[key][1]


def scored_seed(outputs: Path, seed: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A seed of LFD / SeaS with saved scores for two categories and metrics.json values computed from them."""
    categories, scores = {}, {}
    for category, n in (("bottle", 10), ("cable", 7)):
        labels = (np.arange(n) % 2 == 0).astype(np.uint8)
        image_scores = (rng.random(n) + 0.5 * labels).astype(np.float32)
        m = binary_metrics(image_scores, labels)
        categories[category] = anomaly_metrics(0.8, image_auroc=m["auroc"], image_ap=m["ap"], image_f1max=m["f1max"])
        scores[category] = (labels, image_scores)
    path = write_seed(outputs, "seas", "lfd", seed, categories)
    (path.parent / "scores").mkdir()
    for category, (labels, image_scores) in scores.items():
        n = labels.size
        np.savez(path.parent / "scores" / f"{category}.npz",
                 image_scores=image_scores, image_labels=labels, names=np.array([f"x/{i}" for i in range(n)]),
                 pixel_scores=np.zeros((n, 4, 4), np.float32), gt_masks=np.zeros((n, 4, 4), np.uint8),
                 images=np.zeros((n, 4, 4, 3), np.uint8))
    return scores


def test_report_ci_is_the_bootstrap_of_the_saved_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    seeds = {seed: scored_seed(tmp_path, seed, rng) for seed in (0, 1)}
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False, ci=True, fmt="json")
    table = next(t for t in report.tables if t.kind == "ci")
    want = bootstrap_image_ci([(seeds[0][c][0], [seeds[s][c][1] for s in (0, 1)]) for c in ("bottle", "cable")])
    low, high = table.interval
    for key, title in (("image_auroc", "Image AUROC"), ("image_ap", "Image AP"), ("image_f1max", "Image F1-max")):
        assert low.loc[("LFD", "SeaS"), title] == round(100 * want[key][0], 2)
        assert high.loc[("LFD", "SeaS"), title] == round(100 * want[key][1], 2)
        assert table.frame.loc[("LFD", "SeaS"), title] == report.summary.loc[("LFD", "SeaS"), title]
        assert low.loc[("LFD", "SeaS"), title] < high.loc[("LFD", "SeaS"), title]
    value = table.frame.loc[("LFD", "SeaS"), "Image AUROC"]
    lo, hi = low.loc[("LFD", "SeaS"), "Image AUROC"], high.loc[("LFD", "SeaS"), "Image AUROC"]
    assert f"{value:.2f} [{lo:.2f}, {hi:.2f}]" in report.markdown and "## Image-level confidence intervals" in (
        report.markdown)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["ci"]["rows"][0]["Image AUROC CI low"] == lo


def test_report_ci_refuses_scores_that_do_not_match(tmp_path: Path) -> None:
    scored_seed(tmp_path, 42, np.random.default_rng(3))
    write_seed(tmp_path, "none", "lfd", 42, {"bottle": anomaly_metrics(0.9), "cable": anomaly_metrics(0.8)})
    path = next(tmp_path.glob("mvtec_ad/seas/lfd/all/eval/*/scores/cable.npz"))
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["image_scores"] = 1 - arrays["image_scores"]  # not the scores its metrics.json was computed from
    np.savez(path, **arrays)
    report = build_report(tmp_path, "mvtec_ad", tmp_path / "r.md", figures=False, ci=True)
    table = next(t for t in report.tables if t.kind == "ci")
    assert table.interval[0].isna().all().all()  # no interval anywhere, the values still shown
    text = "\n".join(report.warnings)
    assert "no confidence interval for LFD / SeaS" in text and "gives image_auroc" in text
    assert "no confidence interval for LFD / none" in text and "eval --save-scores" in text


def test_report_ci_on_the_command_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from anoseg.cli import main

    scored_seed(tmp_path, 42, np.random.default_rng(3))
    result = CliRunner().invoke(main, ["report", "--output", str(tmp_path), "--ci", "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "Image-level confidence intervals" in (tmp_path / "report.md").read_text()
