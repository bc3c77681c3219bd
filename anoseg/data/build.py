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

from anoseg.constants import DATA_REPORT_SCHEMA, NO_GENERATOR, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL
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
from anoseg.data.split import n_real_train, sample_split
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
from anoseg.recipes import SplitSettings

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
    split: SplitSettings | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read, pair, verify and split a dataset (plus a generator's pairs) into manifest rows and a data report.

    ``categories`` are requested explicitly: an unknown one is an ``AnosegError`` listing the valid names.
    ``expected_categories`` (e.g. a recipe's list) are used when ``categories`` is None; those missing under the
    root are skipped with a warning. With neither, every category found is used. ``generator="none"`` uses no
    generated data. ``strict`` raises on the first bad input (``ISSUE_KINDS`` severity ``error``); otherwise the
    affected files are dropped and reported. Nothing is written to disk. ``report["warnings"]`` holds one line per
    warning kind for the console (printed here too with ``verbose``). ``image_size`` = (H, W) the network will see:
    every mask is resized to it with the training rule (``masks.resize_mask``) and those whose defect area fraction
    changes by more than half are reported (``mask_area_changed``); None skips that check. ``split``: the recipe's
    validation part and real-defect fraction (``anoseg.data.split``; None = the papers' protocol); real defects it
    leaves out of both sides get no row and are counted as ``unused`` in the report.

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

    split = split or SplitSettings()
    roots = {False: os.path.abspath(data_root),
             True: os.path.abspath(gen_reader.root) if gen_reader is not None else ""}
    rows, unused = [], Counter()
    for v in verified:
        root = roots[v.sample.role == GENERATED]
        where = sample_split(v.sample, split_key(v.sample.image, root), split.val, split.real_fraction)
        if where is None:
            unused[(v.sample.category, v.sample.defect)] += 1
        else:
            rows.append(_row(v, dataset, generator, root, where))
    df = manifest_frame(rows)
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
        "counts": _counts(df, selected, split),
        "defects": _defect_counts(scans, df, DEFECT, split=split, unused=unused),
        "generated": _defect_counts(scans, df, GENERATED, checked, split=split),
        "split": split_summary(df, split, unused, scans),
        "unmatched_generated_defects": unmatched,
        "image_modes": dict(sorted(Counter(v.mode for v in verified).items())),
        "warnings": report.warnings(),
        "issues": report.as_dict(),
    }
    if unused:
        result["warnings"].append(f"split.real_fraction {split.real_fraction:g}: {sum(unused.values())} real defect "
                                  "image(s) of the training third are used by neither train nor test")
    if result["split"].get("real_fraction_not_applied"):
        result["warnings"].append("split.real_fraction does not apply to defect types whose split the dataset fixes: "
                                  + ", ".join(result["split"]["real_fraction_not_applied"]))
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


def split_key(image: Path, root: str) -> str:
    """The name a file's validation hash is taken of (``anoseg.data.split.held_out``): its path relative to its data
    root, ``/``-separated, so it does not depend on where the dataset lies."""
    return Path(os.path.relpath(os.path.abspath(image), root or os.sep)).as_posix()


def _row(v: Verified, dataset: str, generator: str, root: str, split: str) -> dict[str, Any]:
    s = v.sample
    return {
        "dataset": dataset,
        "generator": generator if s.role == GENERATED else "",  # real rows must not depend on the generator
        "category": s.category,
        "split": split,
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


def _counts(df: pd.DataFrame, categories: list[str], split: SplitSettings) -> dict[str, dict[str, int]]:
    splits = (SPLIT_TRAIN, SPLIT_TEST) + ((SPLIT_VAL,) if split.val > 0 else ())
    counts = {}
    for category in categories:
        rows = df[df["category"] == category]
        entry = {f"{name}/{source}": int(((rows["split"] == name) & (rows["source"] == source)).sum())
                 for name in splits for source in ("real", "generated")}
        for name in splits[1:]:  # test, and val when there is one
            real = rows[(rows["split"] == name) & (rows["source"] == "real")]
            entry[f"{name}/good"] = int((real["label"] == 0).sum())
            entry[f"{name}/defect"] = int((real["label"] == 1).sum())
        counts[category] = entry
    return counts


def split_summary(df: pd.DataFrame, split: SplitSettings, unused: Counter, scans: list[CategoryScan]
                  ) -> dict[str, Any]:
    """``data_report.json``'s ``split``: the settings used, whether they are the papers' protocol, and the images of
    each part of the training side (``good`` = train/good, ``real_defect``, ``generated``) in ``train`` and ``val``,
    plus the real defects left out of both (``unused``)."""
    parts = {"good": (df["source"] == "real") & (df["label"] == 0),
             "real_defect": (df["source"] == "real") & (df["label"] == 1),
             "generated": df["source"] == "generated"}
    fixed = sorted({f"{f.category}/{f.defect}" for scan in scans for f in scan.folders
                    if f.fixed_split and f.role == DEFECT})
    summary: dict[str, Any] = {
        "val": split.val,
        "real_fraction": split.real_fraction,
        "protocol": split.is_protocol,
        "rule": "val: a training-side image is held out iff sha256(its path relative to its data root), first 8 bytes "
                "/ 2^64, < val; real_fraction: the first floor(f*n) real defects of each type train (at most "
                "floor(n/3)); test: the protocol's other 2/3 for every value",
        "train": {part: int((mask & (df["split"] == SPLIT_TRAIN)).sum()) for part, mask in parts.items()},
        "val_rows": {part: int((mask & (df["split"] == SPLIT_VAL)).sum()) for part, mask in parts.items()},
        "unused_real_defects": int(sum(unused.values())),
    }
    if fixed and split.real_fraction != SplitSettings().real_fraction:
        summary["real_fraction_not_applied"] = fixed  # the dataset fixes which of these defects train
    return summary


def _defect_counts(scans: list[CategoryScan], df: pd.DataFrame, role: str,
                   verified: list[Verified] | None = None, split: SplitSettings | None = None,
                   unused: Counter | None = None) -> dict[str, dict[str, dict[str, int]]]:
    source = "generated" if role == GENERATED else "real"
    rows = df[(df["source"] == source) & (df["label"] == 1)]
    used = Counter(zip(rows["category"], rows["defect"], rows["split"], strict=True))
    empty = Counter((v.sample.category, v.sample.defect) for v in verified or [] if v.empty_mask)
    split, unused = split or SplitSettings(), unused or Counter()
    with_val = split.val > 0
    partial = split.real_fraction != SplitSettings().real_fraction
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
                entry = {"n": n, "pairs": used[(*key, SPLIT_TRAIN)], "empty_masks": empty[key]}
                if with_val:
                    entry["val"] = used[(*key, SPLIT_VAL)]
            else:
                fixed = folder.fixed_split or bool(previous and previous.get("fixed_split"))
                training_side = used[(*key, SPLIT_TRAIN)] + used[(*key, SPLIT_VAL)]
                entry = {"n": n, "n_train": training_side if fixed else n_real_train(n, split.real_fraction),
                         "train": used[(*key, SPLIT_TRAIN)], "test": used[(*key, SPLIT_TEST)]}
                if with_val:
                    entry["val"] = used[(*key, SPLIT_VAL)]
                if partial and not fixed:
                    entry["unused"] = unused[key]
                if fixed:
                    entry["fixed_split"] = True
            kept = (SPLIT_TRAIN, SPLIT_TEST, SPLIT_VAL)
            entry["dropped"] = n - sum(used[(*key, name)] for name in kept) - (unused[key] if role == DEFECT else 0)
            out.setdefault(folder.category, {})[folder.defect] = entry
    return out
