"""The train/test split, data validation and the data report: the whole of ``anoseg prepare`` except the CLI.

The split rule (LFD/SeaS protocol, protocol.md §2.1) lives in ``assign_split`` and nowhere else:

* real anomalies, per (category, defect type): image names sorted as text, the first ⌊n/3⌋ → train, the rest → test;
* every generated pair and every ``train/good`` image → train; every ``test/good`` image → test.

``build_manifest`` reads the folders (``anoseg.data.layouts``), decodes every file once (``images``, ``masks``),
applies the strict/lenient policy of ``ISSUE_KINDS`` to every problem found, and returns the manifest rows and a
JSON-able report with counts and example paths for every edge case of protocol.md §6.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anoseg.constants import DATA_REPORT_SCHEMA, NO_GENERATOR
from anoseg.data.images import inspect_image
from anoseg.data.layouts import (
    DEFECT,
    GENERATED,
    TEST_GOOD,
    TRAIN_GOOD,
    CategoryScan,
    Generated,
    Issue,
    Sample,
    open_layout,
    resolve_generated_root,
)
from anoseg.data.manifest import manifest_frame
from anoseg.data.masks import inspect_mask, resize_mask
from anoseg.errors import AnosegError
from anoseg.log import warn

ERROR, WARNING, INFO = "error", "warning", "info"
MAX_EXAMPLES = 5
#: The protocol's network input (H, W): masks are checked at this size unless ``build_manifest`` is told otherwise.
DEFAULT_IMAGE_SIZE = (256, 256)
#: A mask whose defect covers more than this fraction of the image is "mostly defect" (inverted-convention check).
MOSTLY_DEFECT = 0.5
#: Appended to strict-mode errors: how to get past a bad file (the CLI's flag for ``strict=False``).
STRICT_HINT = "--lenient skips and reports such files"


@dataclass(frozen=True)
class IssueKind:
    case: int | None  # edge-case number in protocol.md §6
    severity: str  # ERROR: raises in strict mode, skipped otherwise; WARNING: printed and reported; INFO: reported
    summary: str


#: Every kind of issue the data stage can report, with its policy.
ISSUE_KINDS: dict[str, IssueKind] = {
    "missing_category": IssueKind(1, WARNING, "expected category folder(s) not found, skipped"),
    "missing_good": IssueKind(2, WARNING, "train/good or test/good folder(s) missing"),
    "defect_without_masks": IssueKind(3, ERROR, "defect type(s) without masks (no ground_truth folder), skipped"),
    "masks_without_defect": IssueKind(3, ERROR, "mask folder(s) without images, skipped"),
    "empty_defect": IssueKind(3, WARNING, "empty defect folder(s)"),
    "ground_truth_good": IssueKind(4, INFO, "ground_truth/good ignored ('good' is never a defect type)"),
    "generated_good_ignored": IssueKind(4, INFO, "generated 'good' folder(s) ignored"),
    "ignored_file": IssueKind(5, INFO, "non-image file(s) ignored"),
    "image_without_mask": IssueKind(6, ERROR, "image(s) without a mask, dropped"),
    "mask_without_image": IssueKind(6, ERROR, "mask(s) without an image, ignored"),
    "ambiguous_name": IssueKind(7, ERROR, "ambiguous names (same stem, two files), dropped"),
    "unsorted_names": IssueKind(8, WARNING, "folder(s) whose text order differs from numeric order (text order kept)"),
    "few_anomalies": IssueKind(9, WARNING, "defect type(s) with n < 3: all go to test, but SeaS trains its generator "
                                           "on max(n//3, 1) images, so image 000 probably leaks into the test set"),
    "non_binary_mask": IssueKind(10, INFO, "mask(s) with more than two values (histograms in examples)"),
    "lossy_mask": IssueKind(11, WARNING, "JPEG mask(s): compression noise, threshold 127 unless --mask-threshold"),
    "colour_mask": IssueKind(12, INFO, "RGB/RGBA/LA mask(s): maximum over colour channels used"),
    "alpha_mask": IssueKind(12, INFO, "mask(s) encoded in the alpha channel"),
    "palette_mask": IssueKind(13, INFO, "palette mask(s): indices used"),
    "high_bit_depth_mask": IssueKind(14, INFO, "16-bit/float mask(s): binarised before scaling"),
    "bilevel_mask": IssueKind(15, INFO, "1-bit mask(s)"),
    "alpha_image": IssueKind(17, WARNING, "image(s) with alpha: alpha dropped"),
    "high_bit_depth_image": IssueKind(18, WARNING, "16-bit/float image(s): scaled to 8 bit"),
    "mask_resized": IssueKind(19, INFO, "mask(s) of another size but the same aspect ratio: resized to the image"),
    "mask_area_changed": IssueKind(19, WARNING, "mask(s) whose defect area the resize to the network input changes by "
                                                "more than half (thin defects grow: no defect pixel is dropped)"),
    "size_mismatch": IssueKind(19, ERROR, "image/mask pair(s) of different aspect ratio, dropped"),
    "exif_orientation": IssueKind(20, WARNING, "image/mask file(s) with an EXIF orientation tag: read upright (tag "
                                               "applied); masks must be drawn on the upright view"),
    "unreadable_image": IssueKind(21, ERROR, "unreadable or truncated image(s), dropped"),
    "unreadable_mask": IssueKind(21, ERROR, "unreadable or truncated mask(s), image dropped"),
    "missing_file": IssueKind(21, ERROR, "listed file(s) not found, dropped"),
    "generated_root_missing": IssueKind(22, ERROR, "generated root missing or empty: no generated pairs used"),
    "generated_category_missing": IssueKind(22, WARNING, "categories without generated pairs (real data only)"),
    "generated_category_unused": IssueKind(22, INFO, "generated categories that are not being prepared"),
    "generated_incomplete": IssueKind(23, ERROR, "generated defect folder(s) with image/ or mask/ missing or empty, "
                                                 "skipped"),
    "empty_generated_mask": IssueKind(24, INFO, "generated pair(s) with an all-zero mask"),
    "unmatched_generated_defect": IssueKind(25, INFO, "generated defect names without a real defect type of that "
                                                      "name"),
    "empty_defect_mask": IssueKind(26, WARNING, "real anomalous image(s) with an empty mask (label stays 1)"),
    "good_with_defect_mask": IssueKind(26, WARNING, "good image(s) whose mask marks defect pixels (label stays 0, "
                                                    "mask ignored)"),
    "inverted_masks": IssueKind(26, WARNING, "mask folder(s) where most masks cover most of the image: inverted "
                                             "convention? (defect must be the non-zero value)"),
    "full_mask": IssueKind(27, INFO, "mask(s) covering the whole image"),
    "cross_split_duplicate": IssueKind(28, WARNING, "identical images in train and test"),
    "visa_no_defect_types": IssueKind(29, WARNING, "VisA categories without image_anno.csv: defect type 'bad'"),
    "visa_defect_fallback": IssueKind(29, INFO, "VisA anomalies without a defect type in image_anno.csv: 'bad'"),
    "validation_ignored": IssueKind(30, INFO, "MVTec 3D validation/ folders not used"),
    "unused_folder": IssueKind(None, INFO, "folders the protocol does not use (no ground truth, or tuning only)"),
    "fixed_split": IssueKind(None, INFO, "images split by the dataset's own train/test (or a test list), not by "
                                         "the 1/3 rule"),
    "extra_masks": IssueKind(None, WARNING, "images with several mask files: only the first (0000) is used"),
    "image_level_defect": IssueKind(None, WARNING, "defect type(s) without masks: test only, scored at image level "
                                                   "(left out of pixel metrics and IoU)"),
}


def n_train(n: int) -> int:
    """How many of a defect type's ``n`` real anomalies go to train: ⌊n/3⌋ (LFD; 0 for n < 3).

    Example:
        >>> [n_train(n) for n in (1, 2, 3, 4, 10, 20)]
        [0, 0, 1, 1, 3, 6]
    """
    return n // 3


def assign_split(role: str, index: int, n: int) -> str:
    """The split of a sample: generated and ``train/good`` → train, ``test/good`` → test, real anomalies by the 1/3
    rule on their position ``index`` in the name-sorted folder of ``n`` images.

    Example:
        >>> [assign_split("defect", i, 7) for i in range(7)].count("train")
        2
    """
    if role in (TRAIN_GOOD, GENERATED):
        return "train"
    if role == TEST_GOOD:
        return "test"
    if role == DEFECT:
        return "train" if index < n_train(n) else "test"
    raise ValueError(f"unknown sample role {role!r}")


def sample_split(sample: Sample) -> str:
    """The split of a sample: the one its dataset fixes (``Sample.split``), else ``assign_split``'s rule."""
    return sample.split or assign_split(sample.role, sample.index, sample.n)


def natural_key(name: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically (``2.png`` before ``10.png``)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


class DataReport:
    """Collects issues with counts and examples; in strict mode the first error-severity issue raises."""

    def __init__(self, strict: bool, max_examples: int = MAX_EXAMPLES) -> None:
        self.strict = strict
        self.max_examples = max_examples
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, issue: Issue) -> None:
        kind = ISSUE_KINDS[issue.kind]  # KeyError = a bug: every kind needs a policy
        if self.strict and kind.severity == ERROR:
            raise AnosegError(f"{issue.message} ({STRICT_HINT})")
        self.counts[issue.kind] += 1
        if len(self.examples[issue.kind]) < self.max_examples:
            example = {"path": issue.path, "message": issue.message}
            if issue.detail:
                example.update(issue.detail)
            self.examples[issue.kind].append(example)

    def extend(self, issues: list[Issue]) -> None:
        for issue in issues:
            self.add(issue)

    def as_dict(self) -> dict[str, Any]:
        order = sorted(self.counts, key=lambda k: (ISSUE_KINDS[k].case or 99, k))
        return {kind: {"case": ISSUE_KINDS[kind].case, "severity": ISSUE_KINDS[kind].severity,
                       "summary": ISSUE_KINDS[kind].summary, "count": self.counts[kind],
                       "examples": self.examples[kind]} for kind in order}

    def warnings(self) -> list[str]:
        """One line per warning/error kind found (errors only get here in lenient mode), for the console."""
        return [f"{entry['count']} × {entry['summary']} (e.g. {entry['examples'][0]['path']})"
                for entry in self.as_dict().values() if entry["severity"] != INFO]


@dataclass
class _Verified:
    sample: Sample
    mode: str
    digest: str
    empty_mask: bool = False
    defect_fraction: float | None = None  # fraction of the mask's pixels that are defect; None without a mask


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
        >>> sorted(df.split.unique()), report["counts"]["disk"]["train/generated"]
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
        scans.append(scan)
        if gen_reader is not None:
            gen_scan = gen_reader.scan(category)
            report.extend(gen_scan.issues)
            names = _check_generated_names(scan, gen_scan, report)
            if names:
                unmatched[category] = names
            scans.append(gen_scan)
    _check_folders(scans, report)

    samples = [s for scan in scans for s in scan.samples]
    checked = _verify(samples, mask_threshold, report, progress, image_size)
    _check_inverted(checked, report)
    verified = [v for v in checked if not (drop_empty_generated and v.sample.role == GENERATED and v.empty_mask)]
    _check_duplicates(verified, report)

    roots = {False: os.path.abspath(data_root),
             True: os.path.abspath(gen_reader.root) if gen_reader is not None else ""}
    df = manifest_frame(_row(v, dataset, generator, roots[v.sample.role == GENERATED]) for v in verified)
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
# checks that need no decoding


def _check_generated_names(real: CategoryScan, generated: CategoryScan, report: DataReport) -> list[str]:
    """Generated defect names with no real defect type of the same name (allowed; listed in the report)."""
    real_defects = {f.defect for f in real.folders if f.role == DEFECT}
    unmatched = []
    for folder in generated.folders:
        if folder.defect not in real_defects:
            unmatched.append(folder.defect)
            report.add(Issue("unmatched_generated_defect", str(folder.path.parent),
                             f"generated defect {real.category}/{folder.defect} has no real defect type of that name"))
    return unmatched


def _check_folders(scans: list[CategoryScan], report: DataReport) -> None:
    for scan in scans:
        for folder in scan.folders:
            if folder.role in (DEFECT, GENERATED):
                numeric = sorted(folder.names, key=natural_key)
                if list(folder.names) != numeric:
                    first = next(i for i, (a, b) in enumerate(zip(folder.names, numeric, strict=True)) if a != b)
                    report.add(Issue("unsorted_names", str(folder.path),
                                     f"{folder.path}: text order puts {folder.names[first]!r} where numeric order "
                                     f"has {numeric[first]!r}; the 1/3 split keeps text order (as LFD)"))
            if folder.role == DEFECT and not folder.fixed_split and 0 < len(folder.names) < 3:
                report.add(Issue("few_anomalies", str(folder.path),
                                 f"{scan.category}/{folder.defect}: n = {len(folder.names)} → 0 train / "
                                 f"{len(folder.names)} test; a SeaS generator was trained on "
                                 f"{folder.names[0]!r}, which is now a test image",
                                 {"category": scan.category, "defect": folder.defect, "n": len(folder.names)}))


# ---------------------------------------------------------------------------------------------------------------
# decoding every file once


def _verify(samples: list[Sample], threshold: int | None, report: DataReport,
            progress: Callable[[int, int], None] | None, image_size: tuple[int, int] | None) -> list[_Verified]:
    total = sum(1 + (s.mask is not None) for s in samples)
    done = 0
    kept: list[_Verified] = []
    if progress:
        progress(0, total)
    for sample in samples:
        ok = True
        try:
            image = inspect_image(sample.image)
        except AnosegError as exc:
            report.add(Issue("unreadable_image", str(sample.image), str(exc)))
            ok = False
        done += 1
        empty, fraction = False, None
        if ok:
            _image_notes(sample, image, report)
        if sample.mask is not None and sample.role in (TRAIN_GOOD, TEST_GOOD):
            _check_good_mask(sample, threshold, report)  # never drops the image: its label is 0 whatever the mask
            done += 1
        elif sample.mask is not None:
            try:
                binary, mask = inspect_mask(sample.mask, threshold)
            except AnosegError as exc:
                report.add(Issue("unreadable_mask", str(sample.mask), str(exc)))
                ok = False
            done += 1
            if ok:
                ok = _size_ok(sample, image.size, mask.size, report)
            if ok:
                empty = mask.n_positive == 0
                fraction = mask.n_positive / max(mask.n_pixels, 1)
                _mask_notes(sample, mask, report)
                if image_size and not empty and sample.role in (DEFECT, GENERATED):
                    _check_resized_area(sample, binary, fraction, image_size, report)
        if progress:
            progress(done, total)
        if ok:
            kept.append(_Verified(sample, image.mode, image.digest, empty, fraction))
    return kept


def _check_good_mask(sample: Sample, threshold: int | None, report: DataReport) -> None:
    """A mask a layout found for a good image: it must be empty; a defect pixel in it is worth the user's eye."""
    try:
        _, mask = inspect_mask(sample.mask, threshold)
    except AnosegError:
        return  # the mask is never used
    if mask.n_positive:
        report.add(Issue("good_with_defect_mask", str(sample.mask),
                         f"{sample.mask} marks {mask.n_positive} defect pixel(s) of good image {sample.image}; "
                         "mask ignored"))


def _check_resized_area(sample: Sample, binary: np.ndarray, fraction: float, size: tuple[int, int],
                        report: DataReport) -> None:
    """Report a mask whose defect area fraction the resize to ``size`` changes by more than half."""
    resized = float(resize_mask(binary, size).mean())
    if 0.5 * fraction <= resized <= 1.5 * fraction:
        return
    height, width = size
    report.add(Issue("mask_area_changed", str(sample.mask),
                     f"{sample.mask}: defect area {100 * fraction:.3g}% of the image at {binary.shape[1]}×"
                     f"{binary.shape[0]}, {100 * resized:.3g}% at {width}×{height}",
                     {"area_fraction": round(fraction, 6), "resized_area_fraction": round(resized, 6),
                      "image_size": [height, width]}))


def _check_inverted(verified: list[_Verified], report: DataReport) -> None:
    """Warn about mask folders (one per defect type) in which most masks are mostly defect: an inverted convention
    (defect = black) is the likely cause, and training on it would learn the background as the defect."""
    folders: dict[Path, list[float]] = defaultdict(list)
    for v in verified:
        if v.defect_fraction is not None and v.sample.role in (DEFECT, GENERATED):
            folders[Path(v.sample.mask).parent].append(v.defect_fraction)
    for folder, fractions in sorted(folders.items()):
        mostly = sum(f > MOSTLY_DEFECT for f in fractions)
        if mostly > len(fractions) / 2:
            report.add(Issue("inverted_masks", str(folder),
                             f"{folder}: {mostly} of {len(fractions)} masks mark more than {MOSTLY_DEFECT:.0%} of the "
                             "image as defect; are they inverted (defect black, background white)?",
                             {"masks": len(fractions), "mostly_defect": mostly}))


def _image_notes(sample: Sample, image: Any, report: DataReport) -> None:
    if image.has_alpha:
        report.add(Issue("alpha_image", str(sample.image), f"{sample.image} has alpha ({image.mode}): dropped"))
    if image.high_bit_depth:
        report.add(Issue("high_bit_depth_image", str(sample.image),
                         f"{sample.image} is {image.mode}: scaled to 8 bit by the dtype maximum"))
    if image.exif_orientation != 1:
        report.add(Issue("exif_orientation", str(sample.image),
                         f"{sample.image} has EXIF orientation {image.exif_orientation}: read upright",
                         {"orientation": image.exif_orientation}))


def _same_aspect(image_size: tuple[int, int], mask_size: tuple[int, int]) -> bool:
    """Aspect ratios equal up to one pixel at the smaller of the two heights."""
    (w, h), (mw, mh) = image_size, mask_size
    return abs(w / h - mw / mh) * min(h, mh) <= 1.0 + 1e-9


def _size_ok(sample: Sample, image_size: tuple[int, int], mask_size: tuple[int, int], report: DataReport) -> bool:
    if image_size == mask_size:
        return True
    sizes = f"image {image_size[0]}×{image_size[1]}, mask {mask_size[0]}×{mask_size[1]}"
    if _same_aspect(image_size, mask_size):
        report.add(Issue("mask_resized", str(sample.mask), f"{sample.mask}: {sizes}; resized with the mask rule"))
        return True
    report.add(Issue("size_mismatch", str(sample.mask), f"{sample.mask} does not fit {sample.image} ({sizes})"))
    return False


_MASK_ENCODING_KINDS = {"max-colour": "colour_mask", "alpha": "alpha_mask", "palette-indices": "palette_mask"}


def _mask_notes(sample: Sample, mask: Any, report: DataReport) -> None:
    path = str(sample.mask)
    if mask.exif_orientation != 1:
        report.add(Issue("exif_orientation", path, f"{path} has EXIF orientation {mask.exif_orientation}: read upright",
                         {"orientation": mask.exif_orientation}))
    if mask.lossy:
        report.add(Issue("lossy_mask", path, f"{path} is {mask.format} (lossy): threshold {mask.threshold:g}"))
    if mask.n_values > 2:
        report.add(Issue("non_binary_mask", path, f"{path} has {mask.n_values} distinct values",
                         {"histogram": {str(k): v for k, v in (mask.histogram or {}).items()}}))
    if mask.encoding in _MASK_ENCODING_KINDS:
        report.add(Issue(_MASK_ENCODING_KINDS[mask.encoding], path, f"{path}: {mask.mode} mask, {mask.encoding}"))
    if mask.mode.startswith("I") or mask.mode == "F":
        report.add(Issue("high_bit_depth_mask", path, f"{path}: {mask.mode} mask, binarised before scaling"))
    if mask.mode == "1":
        report.add(Issue("bilevel_mask", path, f"{path}: 1-bit mask"))
    if mask.n_positive == 0:
        kind = "empty_generated_mask" if sample.role == GENERATED else "empty_defect_mask"
        report.add(Issue(kind, path, f"{path} is all zero"))
    elif mask.n_positive == mask.n_pixels:
        report.add(Issue("full_mask", path, f"{path} covers the whole image"))


def _check_duplicates(verified: list[_Verified], report: DataReport) -> None:
    by_digest: dict[str, list[_Verified]] = defaultdict(list)
    for v in verified:
        by_digest[v.digest].append(v)
    for group in by_digest.values():
        splits = {sample_split(v.sample) for v in group}
        if len(splits) > 1:
            names = sorted(str(v.sample.image) for v in group)
            report.add(Issue("cross_split_duplicate", names[0], f"identical images in train and test: "
                                                                f"{', '.join(names)}", {"images": names}))


# ---------------------------------------------------------------------------------------------------------------
# rows and counts


def _row(v: _Verified, dataset: str, generator: str, root: str) -> dict[str, Any]:
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
                   verified: list[_Verified] | None = None) -> dict[str, dict[str, dict[str, int]]]:
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

