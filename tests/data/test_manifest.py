"""Manifest write/read round trip, errors for missing or foreign files, and the count table."""

from __future__ import annotations

import pandas as pd
import pytest

from anoseg.data.manifest import MANIFEST_COLUMNS, count_table, manifest_frame, read_manifest, write_manifest
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
    back = read_manifest(path)
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
        read_manifest(tmp_path / "bad.csv")


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
