"""The manifest: one CSV row per sample, the contract between ``anoseg prepare`` and train/eval (schemas.md).

Columns, in this order: ``MANIFEST_COLUMNS``. Rows are sorted by ``SORT_COLUMNS``. ``mask`` is "" for normal images,
``fold`` is "" unless a recipe uses folds, ``generator`` is "" on real rows (so real rows are byte-identical across
generators) and the generator's name on generated rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from anoseg.errors import AnosegError
from anoseg.io import atomic_open

MANIFEST_COLUMNS = (
    "dataset", "generator", "category", "split", "source", "defect", "image", "mask",
    "label", "index_in_defect", "n_in_defect", "orig_mode", "fold",
)
SORT_COLUMNS = ("split", "category", "source", "defect", "image")
INT_COLUMNS = ("label", "index_in_defect", "n_in_defect")
# Trailing columns some layouts add: road/scene manifests record how their label files are decoded.
OPTIONAL_COLUMNS = ("label_format",)
SPLITS = ("train", "test")
SOURCES = ("real", "generated")


def manifest_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts with every manifest column) as a DataFrame in column order, sorted, with a fresh index.

    Example:
        >>> manifest_frame([]).columns.tolist() == list(MANIFEST_COLUMNS)
        True
    """
    df = pd.DataFrame(list(rows), columns=list(MANIFEST_COLUMNS))
    for column in INT_COLUMNS:
        df[column] = df[column].astype("int64")
    for column in set(MANIFEST_COLUMNS) - set(INT_COLUMNS):
        df[column] = df[column].astype(str)
    return df.sort_values(list(SORT_COLUMNS), kind="stable").reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write the manifest CSV atomically (a reader never sees half a file).

    Example:
        >>> write_manifest(df, "outputs/demo/seas/manifest.csv")
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"manifest rows lack column(s): {', '.join(missing)}")
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        columns = list(MANIFEST_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in df.columns]
        df.loc[:, columns].to_csv(handle, index=False, lineterminator="\n")


def prepared_mask_threshold(report_path: str | Path) -> int | None:
    """The ``--mask-threshold`` that ``prepare`` validated the masks with (from ``data_report.json``), if any.

    Train and eval must binarise masks exactly as prepare did.
    """
    path = Path(report_path)
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("mask_threshold")
    return None if value is None else int(value)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by ``write_manifest``; a missing or foreign file is an ``AnosegError``.

    ``label``, ``index_in_defect`` and ``n_in_defect`` are integers; every other column is a string ("" when empty).

    Example:
        >>> df = read_manifest("outputs/demo/seas/manifest.csv")
        >>> df[df.split == "test"].label.sum()
        np.int64(40)
    """
    path = Path(path)
    if not path.is_file():
        raise AnosegError(f"manifest not found: {path} (run `anoseg prepare` first)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AnosegError(f"{path} is not an anoseg manifest: {str(exc).splitlines()[0]}") from None
    extra = set(df.columns[len(MANIFEST_COLUMNS):])
    if tuple(df.columns[: len(MANIFEST_COLUMNS)]) != MANIFEST_COLUMNS or not extra <= set(OPTIONAL_COLUMNS):
        raise AnosegError(f"{path} is not an anoseg manifest: expected columns {', '.join(MANIFEST_COLUMNS)}; "
                          f"found {', '.join(map(str, df.columns))}")
    for column in INT_COLUMNS:
        try:
            df[column] = df[column].astype("int64")
        except ValueError:
            raise AnosegError(f"{path}: column {column!r} must hold integers") from None
    bad = sorted(set(df["split"]) - set(SPLITS)) + sorted(set(df["source"]) - set(SOURCES))
    if bad:
        raise AnosegError(f"{path}: unexpected split/source value(s) {', '.join(bad)}")
    return df


def count_table(df: pd.DataFrame) -> pd.DataFrame:
    """Sample counts per category (rows, plus ``total``) × split/source (columns ``train/real``, ``train/generated``,
    ``test/real``; ``test/generated`` only if such rows exist). For the CLI's table after ``prepare``.

    Example:
        >>> count_table(read_manifest("outputs/demo/seas/manifest.csv")).loc["total", "train/generated"]
        np.int64(80)
    """
    columns = ["train/real", "train/generated", "test/real"]
    key = df["split"].astype(str) + "/" + df["source"].astype(str)
    if (key == "test/generated").any():
        columns.append("test/generated")
    table = pd.crosstab(df["category"], key) if len(df) else pd.DataFrame()
    table = table.reindex(columns=columns, fill_value=0).astype("int64")
    table.loc["total"] = table.sum(axis=0)
    table.index.name = "category"
    table.columns.name = None
    return table
