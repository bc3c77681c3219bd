"""Issue 24's "done when", end to end through the CLI on tiny demo data (64 px, 2 epochs of LFD, random init):

    anoseg synth --train-good 24 → prepare (recipe demo_val: split.val 0.2) → train --select val:pixel_ap
    → eval --target-fpr image:0.01 → report --by defect → predict

The report must hold the oracle F1-max beside the validation-chosen F1, the test figures at the 1 % image-level
false-alarm target, the per-defect tables and a line naming the split; predict must use that threshold and say it
was chosen on validation; the validation rows never share a file (by content hash) with the test rows.
About 20 s on two shared cores (not marked slow).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from anoseg.cli import main
from anoseg.data.synth import N_TRAIN_GOOD, make_demo_data

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
RUN = Path("demo_val/seas/lfd/all")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def flat(text: str) -> str:
    """Console text with rich's line wrapping undone."""
    return re.sub(r"\s+", " ", text)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Sequence:
    data: Path
    out: Path
    report: str
    predict: str
    metrics: dict
    thresholds: dict
    selection: dict
    prepared: str
    recipe: dict


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Sequence:
    root = tmp_path_factory.mktemp("issue24")
    data, out = root / "data", root / "outputs"
    invoke("synth", "--out", data, "--train-good", 24)
    recipe = yaml.safe_load((RECIPES / "demo_val.yaml").read_text())  # the shipped recipe, shrunk
    recipe.update(data_root=str(data / "mvtec"), generated_root=str(data / "generated"), image_size=[64, 64])
    recipe["train"].update(epochs=2, checkpoint_every=1, batch_size=4, ohem_min_kept=1000, workers=0)
    recipe_file = root / "demo_val.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    common = ["--recipe", recipe_file, "--output", out]
    prepared = flat(invoke("prepare", *common))
    invoke("train", *common, "--model", "lfd", "--device", "cpu", "--backbone-weights", "none",
           "--select", "val:pixel_ap")
    selection = json.loads((out / RUN / "selection.json").read_text())
    invoke("eval", *common, "--model", "lfd", "--device", "cpu", "--target-fpr", "image:0.01", "--overlays", 0)
    invoke("report", "--output", out, "--by", "defect", "--no-figures")
    checkpoint = out / RUN / selection["checkpoint"]
    predicted = invoke("predict", data / "mvtec/disk/test/crack", "--checkpoint", checkpoint, "--category", "disk",
                       "--device", "cpu", "--out", root / "predict", "--no-overlays")
    eval_dir = out / RUN / "eval" / f"epoch_{selection['epoch']:03d}"
    return Sequence(data, out, (out / "report.md").read_text(), flat(predicted),
                    json.loads((eval_dir / "metrics.json").read_text()),
                    json.loads((eval_dir / "thresholds.json").read_text()), selection, prepared, recipe)


def markdown_table(report: str, header_start: str) -> pd.DataFrame:
    """The report's markdown table whose header line starts with ``header_start``, cells as text."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace("\\", "") for cell in line.strip().strip("|").split("|")])
    return pd.DataFrame(rows[2:], columns=rows[0])


def test_validation_rows_never_share_a_file_with_test(sequence: Sequence) -> None:
    folder = sequence.out / "demo_val/seas"
    manifest = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    val, test = manifest[manifest["split"] == "val"], manifest[manifest["split"] == "test"]
    assert len(val) and len(test)
    good = val[val["label"] == 0]
    assert set(good["category"]) == {"weave", "disk", "mesh"}  # every category can fix an image-FPR threshold
    assert set(val["source"]) == {"real", "generated"}
    hashes = {split: [sha256(folder / r / p) for r, p in zip(rows["root"], rows["image"], strict=True)]
              for split, rows in (("val", val), ("test", test))}
    assert len(set(hashes["val"])) == len(val) and len(set(hashes["test"])) == len(test)
    assert not set(hashes["val"]) & set(hashes["test"])


def test_prepare_says_what_the_validation_part_holds(sequence: Sequence, tmp_path: Path) -> None:
    report = json.loads((sequence.out / "demo_val/seas/data_report.json").read_text())
    good = ", ".join(f"{c} {report['counts'][c]['val/good']}" for c in ("weave", "disk", "mesh"))
    assert f"validation (split.val = 0.2): {report['split']['val_rows']['good']} good" in sequence.prepared
    assert f"good per category: {good}" in sequence.prepared
    tiny = {**sequence.recipe, "split": {"val": 0.001}}  # about one file in a thousand: no good validation image
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny))
    output = flat(invoke("prepare", "--recipe", tmp_path / "r.yaml", "--output", tmp_path / "o"))
    assert "warning: no good validation image for weave, disk, mesh" in output


def test_report_has_the_oracle_the_validation_f1_and_the_one_percent_point(sequence: Sequence) -> None:
    report = sequence.report
    assert "Split: validation part split.val = 0.2" in report
    assert sequence.metrics["checkpoint_selection"]["metric"] == "val:pixel_ap"  # chosen at train time, recorded
    assert (f"epoch {sequence.selection['epoch']}, weights {sequence.metrics['weights_sha256'][:12]}, chosen on "
            "validation by val:pixel_ap") in report.replace("\\", "")
    points = markdown_table(report, "| Run | Operating point")
    points["Operating point"] = points["Operating point"].str.rstrip(" *")
    by = {(p, c): row for (p, c), row in points.set_index(["Operating point", "Chosen on"]).iterrows()}
    summary = markdown_table(report, "| Segmenter | Generator")
    oracle = by[("image F1-max", "test (oracle)")]
    assert oracle["Image F1"] == summary.loc[0, "Image F1-max"]  # the oracle row is the summary's F1-max
    assert by[("pixel F1-max", "test (oracle)")]["Pixel F1"] == summary.loc[0, "Pixel F1-max"]
    assert ("image F1-max", "validation") in by and ("pixel F1-max", "validation") in by
    deployed = by[("image FPR ≤ 1 %", "validation")]
    mean = {e["name"]: e for e in sequence.metrics["operating_points"] if e["category"] == "mean"}
    assert deployed["Threshold"] == f"{mean['image_fpr@0.01']['threshold']:.4f}"
    assert "image FPR ≤ 1 % *" in report.replace("\\", "")  # the point predict uses is marked
    assert sequence.metrics["deployed_point"] == "image_fpr@0.01"
    for metric in ("Image AUROC", "Image AP", "Pixel AP", "Pixel IoU"):
        table = markdown_table(report.split(f"### {metric} by defect type\n", 1)[1], "| Category / defect type")
        assert {"disk / crack", "weave / hole", "mesh / broken", "mean"} <= set(table["Category / defect type"])
        assert table["LFD / SeaS"].str.fullmatch(r"\d+\.\d\d|-").all()


def test_predict_uses_the_validation_threshold_and_says_so(sequence: Sequence) -> None:
    point = sequence.thresholds["operating_points"]["image_fpr@0.01"]
    threshold, chosen_on = point["categories"]["disk"], point["chosen_on"]["disk"]
    assert chosen_on == "validation"
    assert f"threshold {threshold:.4f} (image FPR ≤ 1 % on validation)" in sequence.predict
    assert "validation" in sequence.predict and "disk" in sequence.predict


def test_predict_with_another_checkpoint_names_the_one_chosen_on_validation(sequence: Sequence,
                                                                            tmp_path: Path) -> None:
    run = sequence.out / RUN
    other = next(p for p in sorted((run / "checkpoints").glob("epoch_*.pt"))
                 if p.name != Path(sequence.selection["checkpoint"]).name)
    result = CliRunner().invoke(main, ["predict", str(sequence.data / "mvtec/disk/test/crack/000.png"),
                                       "--checkpoint", str(other), "--device", "cpu", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "no decision threshold computed" in text and "chosen on validation by val:pixel_ap" in text
    assert f"epoch {sequence.selection['epoch']})" in text


def test_a_v02_outputs_tree_still_reports(sequence: Sequence, tmp_path: Path) -> None:
    """Results written before splits and operating points (no ``split``, ``validation``, ``operating_points``,
    ``by_defect`` in metrics.json) still give a report, which says the split was not recorded."""
    old = tmp_path / "outputs"
    source = sequence.out / RUN
    target = old / RUN
    eval_name = f"epoch_{sequence.metrics['epoch']:03d}"
    (target / "eval").mkdir(parents=True)
    shutil.copytree(source / "eval" / eval_name, target / "eval" / eval_name)
    metrics = {k: v for k, v in sequence.metrics.items() if k not in
               ("split", "validation", "operating_points", "deployed_point", "by_defect", "checkpoint_selection")}
    (target / "eval" / eval_name / "metrics.json").write_text(json.dumps(metrics))
    output = invoke("report", "--output", old, "--by", "defect", "--no-figures")
    report = (old / "report.md").read_text()
    assert "## Summary" in report and "## Operating points" not in report
    assert "Split: not recorded" in report
    assert "no per-defect-type results" in flat(output)


def test_more_good_training_images_change_no_other_file(tmp_path: Path) -> None:
    default, more = make_demo_data(tmp_path / "a"), make_demo_data(tmp_path / "b", train_good=N_TRAIN_GOOD + 2)

    def files(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*.png"))}

    a, b = files(default["data_root"].parent), files(more["data_root"].parent)
    extra = set(b) - set(a)
    assert extra == {f"mvtec/{c}/train/good/{i:03d}.png" for c in ("weave", "disk", "mesh")
                     for i in (N_TRAIN_GOOD, N_TRAIN_GOOD + 1)}
    assert {k: b[k] for k in a} == a
    assert len({b[k] for k in extra}) == len(extra)  # new images, not copies
    with pytest.raises(ValueError, match="train_good"):
        make_demo_data(tmp_path / "c", train_good=N_TRAIN_GOOD - 1)
