"""Build the manifest rows and data report of an anomaly dataset: the whole of ``anoseg prepare`` except the CLI.

``build_manifest`` reads the folders (``layouts``), runs the checks and decodes every file once (``validation``),
assigns each sample its split (``split``), and returns the manifest rows and a JSON-able report with counts and
example paths for every edge case of docs/protocol.md (data checks). As anomalib's ``make_mvtec_ad_dataset``, it
builds the samples table apart from any Dataset; nothing is written to disk.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from anoseg.constants import DATA_REPORT_SCHEMA, NO_GENERATOR
from anoseg.data.layouts import (
    DEFECT,
    GENERATED,
    CategoryScan,
    Generated,
    Issue,
    open_layout,
    resolve_generated_root,
)
from anoseg.data.manifest import manifest_frame
from anoseg.data.split import n_train, sample_split
from anoseg.data.validation import (
    DataReport,
    Verified,
    check_duplicates,
    check_folders,
    check_generated_names,
    check_inverted,
    check_names,
    verify_samples,
)
from anoseg.errors import AnosegError
from anoseg.log import warn

#: The protocol's network input (H, W): masks are checked at this size unless ``build_manifest`` is told otherwise.
DEFAULT_IMAGE_SIZE = (256, 256)


def build_manifest(
    *,
    dataset: str,
    layout: str,
    data_root: Path,
    categories: list[str] | None,
    generated_root: Path | None,
    generator: str,
    strict: bool = True,
    mask_threshold: int | None = None,
    drop_empty_generated: bool = False,
    progress: Callable[[int, int], None] | None = None,
    expected_categories: list[str] | None = None,
    verbose: bool = False,
    image_size: tuple[int, int] | None = DEFAULT_IMAGE_SIZE,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read, pair, verify and split a dataset (plus a generator's pairs) into manifest rows and a data report.

    ``categories`` are requested explicitly: an unknown one is an ``AnosegError`` listing the valid names.
    ``expected_categories`` (e.g. a recipe's list) are used when ``categories`` is None; those missing under the
    root are skipped with a warning. With neither, every category found is used. ``generator="none"`` uses no
    generated data. ``strict`` raises on the first bad input (``ISSUE_KINDS`` severity ``error``); otherwise the
    affected files are dropped and reported. Nothing is written to disk. ``report["warnings"]`` holds one line per
    warning kind for the console (printed here too with ``verbose``). ``image_size`` = (H, W) the network will see:
    every mask is resized to it with the training rule (``masks.resize_mask``) and those whose defect area fraction
    changes by more than half are reported (``mask_area_changed``); None skips that check.

    Example:
        >>> df, report = build_manifest(dataset="demo", layout="mvtec_ad", data_root=Path("data/demo/mvtec"),
        ...                             categories=None, generated_root=Path("data/demo/generated"), generator="seas")
        ... # doctest: +SKIP
        >>> sorted(df.split.unique()), report["counts"]["disk"]["train/generated"]  # doctest: +SKIP
        (['test', 'train'], 30)
    """
    data_root = Path(data_root)
    report = DataReport(strict)
    reader = open_layout(layout, data_root)
    selected = _select_categories(reader.categories(), categories, expected_categories, data_root, report)
    gen_reader = _open_generated(generated_root, generator, selected, report)

    scans: list[CategoryScan] = []
    unmatched: dict[str, list[str]] = {}
    for category in selected:
        scan = reader.scan(category)
        report.extend(scan.issues)
        check_names(scan, report)
        scans.append(scan)
        if gen_reader is not None:
            gen_scan = gen_reader.scan(category)
            report.extend(gen_scan.issues)
            check_names(gen_scan, report)
            names = check_generated_names(scan, gen_scan, report)
            if names:
                unmatched[category] = names
            scans.append(gen_scan)
    check_folders(scans, report)

    samples = [s for scan in scans for s in scan.samples]
    checked = verify_samples(samples, mask_threshold, report, progress, image_size)
    check_inverted(checked, report)
    verified = [v for v in checked if not (drop_empty_generated and v.sample.role == GENERATED and v.empty_mask)]
    check_duplicates(verified, report)

    roots = {False: os.path.abspath(data_root),
             True: os.path.abspath(gen_reader.root) if gen_reader is not None else ""}
    df = manifest_frame(_row(v, dataset, generator, roots[v.sample.role == GENERATED]) for v in verified)
    check_test_split(df, selected, data_root, report)
    result = {
        "schema": DATA_REPORT_SCHEMA,
        "dataset": dataset,
        "layout": layout,
        "variants": {scan.category: scan.variant for scan in scans if scan.variant != "generated"},
        "generator": generator,
        "data_root": os.path.abspath(data_root),
        "generated_root": os.path.abspath(gen_reader.root) if gen_reader is not None else None,
        "strict": strict,
        "mask_threshold": mask_threshold,
        "mask_resize": {"image_size": list(image_size) if image_size else None,
                        "rule": "a pixel is a defect iff a source defect pixel lies in it (clean; lfd-compat: "
                                "bilinear)", "changed_by_more_than_half": report.counts["mask_area_changed"]},
        "drop_empty_generated": drop_empty_generated,
        "categories": selected,
        "n_rows": len(df),
        "n_files_verified": sum(1 + (s.mask is not None) for s in samples),
        "counts": _counts(df, selected),
        "defects": _defect_counts(scans, df, DEFECT),
        "generated": _defect_counts(scans, df, GENERATED, checked),
        "unmatched_generated_defects": unmatched,
        "image_modes": dict(sorted(Counter(v.mode for v in verified).items())),
        "warnings": report.warnings(),
        "issues": report.as_dict(),
    }
    if layout == "visa":
        result["visa_layout"] = "split_csv" if "visa_split_csv" in result["variants"].values() else "visa_type"
    if verbose:
        for line in result["warnings"]:
            warn(line)
    return df, result


# ---------------------------------------------------------------------------------------------------------------
# categories and generated root


def check_test_split(df: pd.DataFrame, categories: list[str], data_root: Path, report: DataReport) -> None:
    """Report (``untested_category``) each category whose test split has no image, or no anomalous image: eval
    would skip it (no metric is defined) and it would silently be missing from the results."""
    for category in categories:
        test = df[(df["category"] == category) & (df["split"] == "test")] if len(df) else df
        if test.empty:
            report.add(Issue("untested_category", str(Path(data_root) / category),
                             f"{category}: no test image (eval cannot score it)"))
        elif not (test["label"] == 1).any():
            report.add(Issue("untested_category", str(Path(data_root) / category),
                             f"{category}: no anomalous test image (eval cannot score it)"))


def _select_categories(found: list[str], requested: list[str] | None, expected: list[str] | None, root: Path,
                       report: DataReport) -> list[str]:
    if requested:
        unknown = [c for c in requested if c not in found]
        if unknown:
            raise AnosegError(f"category {', '.join(map(repr, unknown))} not found under {root}; "
                              f"valid: {', '.join(found) or '(none)'}")
        return list(dict.fromkeys(requested))
    if expected:
        for category in expected:
            if category not in found:
                report.add(Issue("missing_category", str(root / category),
                                 f"category {category!r} not found under {root}, skipped"))
        selected = [c for c in expected if c in found]
        selected += [c for c in found if c not in expected]  # extra categories: kept, listed after the expected ones
    else:
        selected = found
    if not selected:
        raise AnosegError(f"no categories found under {root}")
    return selected


def _open_generated(root: Path | None, generator: str, categories: list[str], report: DataReport) -> Generated | None:
    if generator == NO_GENERATOR:
        return None
    if root is None:
        raise AnosegError(f"generator {generator!r} needs a generated root (or use generator 'none')")
    root = resolve_generated_root(Path(root), generator, categories)
    if not root.is_dir():
        report.add(Issue("generated_root_missing", str(root), f"generated root not found: {root}"))
        return None
    reader = Generated(root)
    found = reader.categories()
    if not found:
        report.add(Issue("generated_root_missing", str(root), f"generated root is empty: {root}"))
        return None
    for category in found:
        if category not in categories:
            report.add(Issue("generated_category_unused", str(root / category),
                             f"generated pairs for {category!r} not used (category not prepared)"))
    return reader


# ---------------------------------------------------------------------------------------------------------------
# rows and counts


def _row(v: Verified, dataset: str, generator: str, root: str) -> dict[str, Any]:
    s = v.sample
    return {
        "dataset": dataset,
        "generator": generator if s.role == GENERATED else "",  # real rows must not depend on the generator
        "category": s.category,
        "split": sample_split(s),
        "source": s.source,
        "defect": s.defect,
        "root": root,
        "image": os.path.abspath(s.image),
        "mask": os.path.abspath(s.mask) if s.mask is not None and s.role in (DEFECT, GENERATED) else "",
        "label": int(s.role in (DEFECT, GENERATED)),
        "index_in_defect": s.index,
        "n_in_defect": s.n,
        "orig_mode": v.mode,
        "fold": "",
    }


def _counts(df: pd.DataFrame, categories: list[str]) -> dict[str, dict[str, int]]:
    counts = {}
    for category in categories:
        rows = df[df["category"] == category]
        entry = {f"{split}/{source}": int(((rows["split"] == split) & (rows["source"] == source)).sum())
                 for split in ("train", "test") for source in ("real", "generated")}
        entry["test/good"] = int(((rows["split"] == "test") & (rows["label"] == 0)).sum())
        entry["test/defect"] = int(((rows["split"] == "test") & (rows["label"] == 1)).sum())
        counts[category] = entry
    return counts


def _defect_counts(scans: list[CategoryScan], df: pd.DataFrame, role: str,
                   verified: list[Verified] | None = None) -> dict[str, dict[str, dict[str, int]]]:
    source = "generated" if role == GENERATED else "real"
    rows = df[(df["source"] == source) & (df["label"] == 1)]
    used = Counter(zip(rows["category"], rows["defect"], rows["split"], strict=True))
    empty = Counter((v.sample.category, v.sample.defect) for v in verified or [] if v.empty_mask)
    out: dict[str, dict[str, dict[str, int]]] = {}
    for scan in scans:
        for folder in scan.folders:
            if folder.role != role:
                continue
            key = (folder.category, folder.defect)
            n = len(folder.names)
            previous = out.get(folder.category, {}).get(folder.defect)
            if previous is not None:  # one defect type in several folders (KolektorSDD2's train/ and test/)
                n += previous["n"]
            if role == GENERATED:
                entry = {"n": n, "pairs": used[(*key, "train")], "empty_masks": empty[key]}
            else:
                fixed = folder.fixed_split or bool(previous and previous.get("fixed_split"))
                entry = {"n": n, "n_train": used[(*key, "train")] if fixed else n_train(n),
                         "train": used[(*key, "train")], "test": used[(*key, "test")]}
                if fixed:
                    entry["fixed_split"] = True
            entry["dropped"] = n - sum(used[(*key, split)] for split in ("train", "test"))
            out.setdefault(folder.category, {})[folder.defect] = entry
    return out
