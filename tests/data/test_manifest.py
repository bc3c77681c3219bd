"""Manifest write/read round trip, paths relative to the data roots, errors for missing or foreign files or data,
and the count table."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from anoseg.data.manifest import (
    LEGACY_COLUMNS,
    MANIFEST_COLUMNS,
    count_table,
    manifest_frame,
    read_manifest,
    write_manifest,
)
from anoseg.errors import AnosegError


def _row(category, split, source, defect, image, label, mask=""):
    return {"dataset": "d", "generator": "seas" if source == "generated" else "", "category": category,
            "split": split, "source": source, "defect": defect, "image": f"/x/{category}/{defect}/{image}",
            "mask": mask, "label": label, "index_in_defect": 0, "n_in_defect": 1, "orig_mode": "RGB", "fold": ""}


ROWS = [
    _row("b", "train", "real", "good", "000.png", 0),
    _row("b", "train", "real", "crack", "000.png", 1, "/x/m.png"),
    _row("b", "test", "real", "crack", "001.png", 1, "/x/m1.png"),
    _row("b", "test", "real", "good", "000.png", 0),
    _row("a", "train", "generated", "crack", "000.png", 1, "/x/g.png"),
    _row("a", "train", "generated", "crack", "001.png", 1, "/x/g1.png"),
    _row("a", "test", "real", "good", "000.png", 0),
]


def test_round_trip_keeps_values_types_and_bytes(tmp_path):
    df = manifest_frame(ROWS)
    assert df["category"].tolist()[:2] == ["a", "b"] and df["split"].tolist()[:3] == ["test"] * 3
    path = tmp_path / "out" / "manifest.csv"
    write_manifest(df, path)
    back = read_manifest(path, check_files=False)
    assert tuple(back.columns) == MANIFEST_COLUMNS
    assert back.equals(df)
    assert back["mask"].tolist().count("") == 3 and back["label"].dtype == "int64"
    first = path.read_bytes()
    write_manifest(back, path)
    assert path.read_bytes() == first
    assert not list(path.parent.glob(".*tmp*"))  # atomic write leaves no temporary file


def test_read_manifest_errors(tmp_path):
    with pytest.raises(AnosegError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(AnosegError, match=r"foreign\.csv is not an anoseg manifest"):
        read_manifest(foreign)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(AnosegError, match="not an anoseg manifest"):
        read_manifest(empty)
    bad = manifest_frame(ROWS)
    bad["label"] = bad["label"].astype(str)
    bad.loc[0, "label"] = "yes"
    write_manifest(bad, tmp_path / "bad.csv")
    with pytest.raises(AnosegError, match="'label' must hold integers"):
        read_manifest(tmp_path / "bad.csv", check_files=False)


def test_count_table():
    table = count_table(manifest_frame(ROWS))
    assert table.columns.tolist() == ["train/real", "train/generated", "test/real"]
    assert table.to_dict("index") == {
        "a": {"train/real": 0, "train/generated": 2, "test/real": 1},
        "b": {"train/real": 2, "train/generated": 0, "test/real": 2},
        "total": {"train/real": 2, "train/generated": 2, "test/real": 3},
    }
    empty = count_table(manifest_frame([]))
    assert empty.loc["total"].tolist() == [0, 0, 0]
    assert isinstance(empty, pd.DataFrame)


def _project(root: Path) -> list[dict]:
    """Files of a real and a generated root inside ``root`` and manifest rows (absolute paths) naming them."""
    data, generated = root / "data" / "mvtec", root / "data" / "generated" / "seas"
    files = [data / "b" / "test" / "good" / "000.png", data / "b" / "test" / "crack" / "000.png",
             data / "b" / "ground_truth" / "crack" / "000_mask.png", generated / "b" / "crack" / "image" / "000.png",
             generated / "b" / "crack" / "mask" / "000.png"]
    for file in files:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"x")
    row = {"dataset": "d", "category": "b", "index_in_defect": 0, "n_in_defect": 1, "orig_mode": "RGB", "fold": ""}
    return [
        {**row, "generator": "", "split": "test", "source": "real", "defect": "good", "root": str(data),
         "image": str(files[0]), "mask": "", "label": 0},
        {**row, "generator": "", "split": "test", "source": "real", "defect": "crack", "root": str(data),
         "image": str(files[1]), "mask": str(files[2]), "label": 1},
        {**row, "generator": "seas", "split": "train", "source": "generated", "defect": "crack",
         "root": str(generated), "image": str(files[3]), "mask": str(files[4]), "label": 1},
    ]


def _stored(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_paths_are_stored_relative_to_the_roots_and_a_copied_project_reads_its_own_data(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    rows = _project(project)
    monkeypatch.chdir(project)
    manifest = project / "outputs" / "d" / "seas" / "manifest.csv"
    write_manifest(manifest_frame(rows), manifest)
    stored = {r["image"]: r for r in _stored(manifest)}
    assert stored["b/test/crack/000.png"]["root"] == "../../../data/mvtec"
    assert stored["b/test/crack/000.png"]["mask"] == "b/ground_truth/crack/000_mask.png"
    assert stored["b/crack/image/000.png"]["root"] == "../../../data/generated/seas"
    assert stored["b/test/good/000.png"]["mask"] == ""
    back = read_manifest(manifest)
    assert back["image"].tolist() == manifest_frame(rows)["image"].tolist()
    assert set(back["root"]) == {str(project / "data" / "mvtec"), str(project / "data" / "generated" / "seas")}
    first = manifest.read_bytes()
    write_manifest(back, manifest)
    assert manifest.read_bytes() == first

    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    shutil.rmtree(project)
    monkeypatch.chdir(tmp_path)  # the working directory does not matter for reading
    moved = read_manifest(copy / "outputs" / "d" / "seas" / "manifest.csv")
    assert all(p.startswith(str(copy) + os.sep) for p in moved["image"])
    assert moved.loc[moved["defect"] == "crack", "mask"].map(os.path.isfile).all()


def test_a_moved_or_changed_dataset_is_one_line_telling_to_rerun_prepare(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    rows = _project(project)
    monkeypatch.chdir(project)
    manifest = project / "outputs" / "d" / "seas" / "manifest.csv"
    write_manifest(manifest_frame(rows), manifest)
    (project / "data" / "mvtec" / "b" / "test" / "crack" / "000.png").unlink()
    with pytest.raises(AnosegError, match=r"1 file\(s\) listed in the manifest are missing .*run `anoseg prepare` "
                                          r"again"):
        read_manifest(manifest)
    (project / "data" / "mvtec").rename(project / "data" / "elsewhere")
    with pytest.raises(AnosegError) as caught:
        read_manifest(manifest)
    message = str(caught.value)
    assert "\n" not in message and "data root" in message and "run `anoseg prepare` again" in message
    assert str(project / "data" / "mvtec") in message


def test_roots_outside_the_project_are_stored_absolute(tmp_path, monkeypatch):
    rows = _project(tmp_path / "shared")
    (tmp_path / "proj").mkdir()
    monkeypatch.chdir(tmp_path / "proj")
    manifest = tmp_path / "proj" / "outputs" / "manifest.csv"
    write_manifest(manifest_frame(rows), manifest)
    assert {r["root"] for r in _stored(manifest)} == {(tmp_path / "shared" / "data" / "mvtec").as_posix(),
                                                      (tmp_path / "shared" / "data" / "generated" / "seas").as_posix()}
    assert read_manifest(manifest)["image"].tolist() == manifest_frame(rows)["image"].tolist()


def test_manifest_of_an_older_version_with_absolute_paths_is_read(tmp_path):
    rows = _project(tmp_path)
    legacy = manifest_frame(rows).loc[:, list(LEGACY_COLUMNS)]
    path = tmp_path / "old.csv"
    legacy.to_csv(path, index=False)
    back = read_manifest(path)
    assert back["image"].tolist() == legacy["image"].tolist() and set(back["root"]) == {""}
