"""The manifest: one CSV row per sample, the contract between ``anoseg prepare`` and train/eval (docs/schemas.md).

Columns, in this order: ``MANIFEST_COLUMNS``. Rows are sorted by ``SORT_COLUMNS``. ``mask`` is "" for normal images,
``fold`` is "" unless a recipe uses folds, ``generator`` is "" on real rows (so real rows are byte-identical across
generators) and the generator's name on generated rows.

Paths (docs/protocol.md, "Manifest paths"): each row names its data ``root`` (the dataset root, or the generator's
root for generated pairs) and, in the file, ``image`` and ``mask`` are relative to that root. A root inside the
working directory (the project) is stored relative to the manifest's own folder, so a copied project reads its own
data; a root elsewhere (a shared dataset) is stored absolute. In memory — what ``read_manifest`` returns and
``build_manifest`` makes — every path is absolute. A manifest whose data is gone (a moved dataset) is refused with
one line saying to re-run ``anoseg prepare``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from anoseg.constants import ALL_CATEGORIES, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL
from anoseg.errors import AnosegError
from anoseg.io import NAME_ERRORS, TEXT_ENCODING, atomic_open, expect, read_json

MANIFEST_COLUMNS = (
    "dataset", "generator", "category", "split", "source", "defect", "root", "image", "mask",
    "label", "index_in_defect", "n_in_defect", "orig_mode", "fold",
)
#: The columns of manifests written before ``root`` existed (absolute paths); still read.
LEGACY_COLUMNS = tuple(c for c in MANIFEST_COLUMNS if c != "root")
PATH_COLUMNS = ("image", "mask")
SORT_COLUMNS = ("split", "category", "source", "defect", "image")
INT_COLUMNS = ("label", "index_in_defect", "n_in_defect")
# Trailing columns some layouts add: road/scene manifests record how their label files are decoded.
OPTIONAL_COLUMNS = ("label_format",)
SPLITS = (SPLIT_TRAIN, SPLIT_TEST, SPLIT_VAL)
SOURCES = ("real", "generated")


def manifest_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts with every manifest column) as a DataFrame in column order, sorted, with a fresh index.

    Example:
        >>> manifest_frame([]).columns.tolist() == list(MANIFEST_COLUMNS)
        True
    """
    rows = [{"root": "", **row} for row in rows]  # rows without a root keep absolute paths
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    for column in INT_COLUMNS:
        df[column] = df[column].astype("int64")
    for column in set(MANIFEST_COLUMNS) - set(INT_COLUMNS):
        df[column] = df[column].astype(str)
    return df.sort_values(list(SORT_COLUMNS), kind="stable").reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write the manifest CSV atomically (a reader never sees half a file), with paths relative to each row's root.

    ``df`` holds absolute paths (as ``build_manifest`` and ``read_manifest`` give them). A root inside the working
    directory, with the manifest also inside it, is written relative to the manifest's folder; other roots absolute.

    Example:
        >>> write_manifest(df, "outputs/demo/seas/manifest.csv")  # doctest: +SKIP
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"manifest rows lack column(s): {', '.join(missing)}")
    columns = list(MANIFEST_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in df.columns]
    stored = df.loc[:, columns].copy()
    folder = os.path.abspath(Path(path).parent)
    roots = {root: _stored_root(root, folder) for root in stored["root"].unique()}
    for column in PATH_COLUMNS:
        stored[column] = [_relative_to(value, root) for value, root in zip(stored[column], stored["root"], strict=True)]
    stored["root"] = stored["root"].map(roots)
    with atomic_open(path, "w", encoding=TEXT_ENCODING, errors=NAME_ERRORS, newline="") as handle:
        stored.to_csv(handle, index=False, lineterminator="\n")


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _stored_root(root: str, manifest_folder: str) -> str:
    """How a root is written: relative to the manifest's folder when both lie in the working directory."""
    if not root:
        return ""
    absolute, project = os.path.abspath(root), os.getcwd()
    if _inside(absolute, project) and _inside(manifest_folder, project):
        return Path(os.path.relpath(absolute, manifest_folder)).as_posix()
    return Path(absolute).as_posix()


def _relative_to(value: str, root: str) -> str:
    if not value or not root:
        return value
    absolute = os.path.abspath(value)
    if not _inside(absolute, os.path.abspath(root)):
        return Path(absolute).as_posix()  # a layout may keep e.g. masks outside the root: stays absolute
    return Path(os.path.relpath(absolute, os.path.abspath(root))).as_posix()


def prepared_mask_threshold(report_path: str | Path) -> int | None:
    """The ``--mask-threshold`` that ``prepare`` validated the masks with (from ``data_report.json``), if any.

    Train and eval must binarise masks exactly as prepare did. A damaged report is an ``AnosegError``
    (``read_data_report``).
    """
    path = Path(report_path)
    if not path.is_file():
        return None
    return read_data_report(path).get("mask_threshold")


def read_data_report(path: str | Path) -> dict[str, Any]:
    """``data_report.json`` as written by ``anoseg prepare``, its keys that train and eval read checked
    (``manifest_sha256``, ``mask_threshold``). Raises ``AnosegError`` naming the file for a truncated or edited one,
    ``FileNotFoundError`` for a missing one."""
    return read_json(path, "run `anoseg prepare` again", _check_data_report)


def _check_data_report(doc: Any) -> None:
    expect(isinstance(doc, dict), "not a JSON object")
    digest = doc.get("manifest_sha256")
    expect(digest is None or isinstance(digest, str), "'manifest_sha256' is not a string")
    threshold = doc.get("mask_threshold")
    expect(threshold is None or (isinstance(threshold, int) and not isinstance(threshold, bool)
                                 and 0 <= threshold <= 255), f"'mask_threshold' {threshold!r} is not 0-255")


def prepared_split(report_path: str | Path) -> dict[str, Any] | None:
    """The split settings ``prepare`` used (``data_report.json``'s ``split``: ``val``, ``real_fraction``,
    ``protocol``), or None for a report written before anoseg recorded them (the papers' protocol)."""
    path = Path(report_path)
    if not path.is_file():
        return None
    split = read_data_report(path).get("split")
    if not isinstance(split, dict):
        return None
    return {key: split.get(key) for key in ("val", "real_fraction", "protocol")}


def read_manifest(path: str | Path, *, check_files: bool = True) -> pd.DataFrame:
    """Read a manifest written by ``write_manifest``; a missing or foreign file is an ``AnosegError``.

    ``label``, ``index_in_defect`` and ``n_in_defect`` are integers; every other column is a string ("" when empty).
    ``root``, ``image`` and ``mask`` come back absolute (relative roots are resolved against the manifest's folder).
    With ``check_files``, a root or a listed file that no longer exists (the dataset moved or changed) is an
    ``AnosegError`` telling the user to re-run ``anoseg prepare``. Manifests written before the ``root`` column
    existed (absolute paths) are read too.

    Example:
        >>> df = read_manifest("outputs/demo/seas/manifest.csv")  # doctest: +SKIP
        >>> df[df.split == "test"].label.sum()  # doctest: +SKIP
        np.int64(40)
    """
    path = Path(path)
    if not path.is_file():
        raise AnosegError(f"manifest not found: {path} (run `anoseg prepare` first{_other_manifests(path)})")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=TEXT_ENCODING,
                         encoding_errors=NAME_ERRORS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AnosegError(f"{path} is not an anoseg manifest: {str(exc).splitlines()[0]}") from None
    if tuple(df.columns[: len(LEGACY_COLUMNS)]) == LEGACY_COLUMNS and "root" not in df.columns:
        df.insert(MANIFEST_COLUMNS.index("root"), "root", "")
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
    _resolve_paths(df, path)
    if check_files:
        _check_files(df, path)
    return df


def _other_manifests(path: Path) -> str:
    """For a missing ``<output>/<dataset>/<generator>/manifest.csv``: the generators of that dataset that were
    prepared ("; prepared for generators seas — pass --generator seas"), or the datasets under the output, or ""."""
    dataset = path.parent.parent
    generators = sorted(p.parent.name for p in dataset.glob(f"*/{path.name}")) if dataset.is_dir() else []
    if generators:
        return f"; prepared for generators {', '.join(generators)} — pass --generator {generators[0]}"
    output = dataset.parent
    datasets = sorted({p.parent.parent.name for p in output.glob(f"*/*/{path.name}")}) if output.is_dir() else []
    if datasets:
        return f"; prepared datasets under {output}: {', '.join(datasets)}"
    return ""


def _resolve_paths(df: pd.DataFrame, path: Path) -> None:
    folder = os.path.abspath(path.parent)
    roots = {root: os.path.normpath(os.path.join(folder, root)) if root else "" for root in df["root"].unique()}
    df["root"] = df["root"].map(roots)
    for column in PATH_COLUMNS:
        df[column] = [os.path.normpath(os.path.join(root, value)) if value and root else value
                      for value, root in zip(df[column], df["root"], strict=True)]


def _check_files(df: pd.DataFrame, path: Path) -> None:
    """One line for a manifest whose data is gone: which root or file, and what to do."""
    hint = f"the dataset moved or changed since `anoseg prepare` wrote {path}; run `anoseg prepare` again"
    for root in sorted(r for r in df["root"].unique() if r):
        if not os.path.isdir(root):
            raise AnosegError(f"data root {root} not found: {hint}")
    missing = [p for column in PATH_COLUMNS for p in df[column] if p and not os.path.isfile(p)]
    if missing:
        raise AnosegError(f"{len(missing)} file(s) listed in the manifest are missing (e.g. {missing[0]}): {hint}")


def select_rows(manifest: pd.DataFrame, split: str, category: str) -> pd.DataFrame:
    """The manifest rows of one split (``train``/``test``/``val``), for one category or for ``all`` (every category).

    Raises ``AnosegError`` when the category is not in the manifest or the selection is empty.
    """
    rows = manifest[manifest["split"] == split]
    if category != ALL_CATEGORIES:
        known = sorted(manifest["category"].unique())
        if category not in known:
            raise AnosegError(f"category {category!r} is not in the manifest; it has: {', '.join(known)}")
        rows = rows[rows["category"] == category]
    if rows.empty:
        raise AnosegError(f"the manifest has no {split} images for category {category!r}")
    return rows


def count_table(df: pd.DataFrame) -> pd.DataFrame:
    """Sample counts per category (rows, plus ``total``) × split/source (columns ``train/real``, ``train/generated``,
    ``test/real``; ``test/generated``, ``val/real`` and ``val/generated`` only if such rows exist). For the CLI's
    table after ``prepare``.

    Example:
        >>> count_table(read_manifest("outputs/demo/seas/manifest.csv")).loc["total", "train/generated"]
        ... # doctest: +SKIP
        np.int64(80)
    """
    columns = ["train/real", "train/generated", "test/real"]
    key = df["split"].astype(str) + "/" + df["source"].astype(str)
    columns += [c for c in ("test/generated", f"{SPLIT_VAL}/real", f"{SPLIT_VAL}/generated") if (key == c).any()]
    table = pd.crosstab(df["category"], key) if len(df) else pd.DataFrame()
    table = table.reindex(columns=columns, fill_value=0).astype("int64")
    table.loc["total"] = table.sum(axis=0)
    table.index.name = "category"
    table.columns.name = None
    return table
