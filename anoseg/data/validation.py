"""Data validation and the data report, for anomaly and scene data alike: one issue catalogue, one report, one
file-verification policy.

* ``ISSUE_KINDS`` — every problem or notable fact the data stage can find, with its edge-case number
  (docs/protocol.md, data checks), its severity and a one-line summary. ``error`` raises in strict mode (the CLI's
  default) and drops the file in lenient mode; ``warning`` is printed and reported; ``info`` is only reported.
* ``DataReport`` — counts and example paths per issue kind; the ``issues``/``warnings`` of the report JSON.
* ``inspect_file`` — the verification policy: every image, mask or label file is decoded completely
  (``images.inspect_image``), so a truncated or corrupt file is caught here and never grey-filled later.
* ``verify_samples`` and the ``check_*`` functions — the anomaly-data checks ``build.build_manifest`` runs; the scene
  stage (``scenes.prepare``) uses the same report and verification.

Nothing here reads folders (``layouts``) or builds rows (``build``); the split rule is ``split``'s alone.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anoseg.data.images import ImageInfo, inspect_image
from anoseg.data.layouts import DEFECT, GENERATED, TEST_GOOD, TRAIN_GOOD, CategoryScan, Issue, Sample
from anoseg.data.masks import inspect_mask, resize_mask
from anoseg.data.split import sample_split
from anoseg.errors import AnosegError

ERROR, WARNING, INFO = "error", "warning", "info"
MAX_EXAMPLES = 5
#: A mask whose defect covers more than this fraction of the image is "mostly defect" (inverted-convention check).
MOSTLY_DEFECT = 0.5
#: Appended to strict-mode errors: how to get past a bad file (the CLI's flag for ``strict=False``).
STRICT_HINT = "--lenient skips and reports such files"


@dataclass(frozen=True)
class IssueKind:
    """The policy of one kind of issue: its edge-case number, severity and one-line summary for the console."""

    case: int | None  # edge-case number in docs/protocol.md §6
    severity: str  # ERROR: raises in strict mode, skipped otherwise; WARNING: printed and reported; INFO: reported
    summary: str


#: Every kind of issue the data stage can report, with its policy.
ISSUE_KINDS: dict[str, IssueKind] = {
    "missing_category": IssueKind(1, WARNING, "expected category folder(s) not found, skipped"),
    "missing_good": IssueKind(2, WARNING, "train/good or test/good folder(s) missing"),
    "empty_good": IssueKind(2, WARNING, "train/good or test/good folder(s) without images (sub-folders are not read)"),
    "unusable_name": IssueKind(None, ERROR, "category or defect folder name(s) with a control character (newline, "
                                            "tab ...), dropped"),
    "layout_mismatch": IssueKind(None, ERROR, "folder(s) that do not follow the layout (the one expected is named), "
                                              "skipped"),
    "defect_without_masks": IssueKind(3, ERROR, "defect type(s) without masks (no ground_truth folder), skipped"),
    "masks_without_defect": IssueKind(3, ERROR, "mask folder(s) without images, skipped"),
    "empty_defect": IssueKind(3, WARNING, "empty defect folder(s)"),
    "ground_truth_good": IssueKind(4, INFO, "ground_truth/good ignored ('good' is never a defect type)"),
    "generated_good_ignored": IssueKind(4, INFO, "generated 'good' folder(s) ignored"),
    "ignored_file": IssueKind(5, INFO, "non-image file(s), or files the layout does not name, ignored"),
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
    # scene data (road, street scenes): a label map per image instead of a defect mask
    "lane_ground_truth": IssueKind(None, INFO, "KITTI um_lane ground truth file(s) ignored (road only)"),
    "image_without_label": IssueKind(None, ERROR, "image(s) without a label file, dropped"),
    "untested_category": IssueKind(None, WARNING, "categorie(s) with no test image, or no anomalous one: eval "
                                                  "cannot score them"),
    "label_without_image": IssueKind(None, WARNING, "label file(s) without an image, ignored"),
    "ambiguous_label": IssueKind(None, ERROR, "image(s) with two candidate label files, dropped"),
    "unreadable_label": IssueKind(None, ERROR, "unreadable or truncated label file(s), image dropped"),
    "label_size_mismatch": IssueKind(None, ERROR, "image/label pair(s) of different size, dropped"),
    "label_mode": IssueKind(None, ERROR, "label file(s) whose PIL mode does not fit the label format, dropped"),
}


def natural_key(name: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically (``2.png`` before ``10.png``)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


@dataclass
class DataReport:
    """Collects issues with counts and examples; in strict mode the first error-severity issue raises.

    Example:
        >>> report = DataReport(strict=False)
        >>> report.add(Issue("ignored_file", "a/notes.txt", "a/notes.txt is not an image"))
        >>> report.counts["ignored_file"], report.warnings()
        (1, [])
    """

    strict: bool
    max_examples: int = MAX_EXAMPLES
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, issue: Issue) -> None:
        """Count ``issue`` and keep it as an example; raises ``AnosegError`` for an ``error`` kind in strict mode."""
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
        """``add`` each issue in order."""
        for issue in issues:
            self.add(issue)

    def as_dict(self) -> dict[str, Any]:
        """The report's ``issues``: kind → case, severity, summary, count and examples, in edge-case order."""
        order = sorted(self.counts, key=lambda k: (ISSUE_KINDS[k].case or 99, k))
        return {kind: {"case": ISSUE_KINDS[kind].case, "severity": ISSUE_KINDS[kind].severity,
                       "summary": ISSUE_KINDS[kind].summary, "count": self.counts[kind],
                       "examples": self.examples[kind]} for kind in order}

    def warnings(self) -> list[str]:
        """One line per warning/error kind found (errors only get here in lenient mode), for the console."""
        return [f"{entry['count']} × {entry['summary']} (e.g. {entry['examples'][0]['path']})"
                for entry in self.as_dict().values() if entry["severity"] != INFO]


@dataclass
class Verified:
    """A sample whose files decoded: its image's PIL mode and pixel digest, and what its mask holds."""

    sample: Sample
    mode: str
    digest: str
    empty_mask: bool = False
    defect_fraction: float | None = None  # fraction of the mask's pixels that are defect; None without a mask


def inspect_file(path: str | Path, kind: str, what: str = "image") -> ImageInfo | Issue:
    """The one verification policy: decode the file completely (``images.inspect_image``, EXIF orientation applied
    to the size); a missing, truncated or corrupt file is returned as an ``Issue`` of ``kind``, not raised."""
    try:
        return inspect_image(path, what=what)
    except AnosegError as exc:
        return Issue(kind, str(path), str(exc))


# ---------------------------------------------------------------------------------------------------------------
# checks that need no decoding


def check_generated_names(real: CategoryScan, generated: CategoryScan, report: DataReport) -> list[str]:
    """Generated defect names with no real defect type of the same name (allowed; listed in the report)."""
    real_defects = {f.defect for f in real.folders if f.role == DEFECT}
    unmatched = []
    for folder in generated.folders:
        if folder.defect not in real_defects:
            unmatched.append(folder.defect)
            report.add(Issue("unmatched_generated_defect", str(folder.path.parent),
                             f"generated defect {real.category}/{folder.defect} has no real defect type of that name"))
    return unmatched


def check_names(scan: CategoryScan, report: DataReport) -> None:
    """Category and defect-type names become folder names, CSV cells, one-line messages and report rows: a name
    holding a control character (a newline, a tab ...) is an ``unusable_name`` error (lenient: its samples are
    dropped from ``scan``). Other names (``..`` inside, a leading ``-``, bytes of another locale) are used as they
    are."""
    folders = {f.defect: f.path for f in scan.folders}
    names = [(scan.category, "category", Path(scan.folders[0].path) if scan.folders else Path(scan.category))]
    names += [(defect, "defect type", path) for defect, path in folders.items()]
    bad = set()
    for name, what, path in names:
        if any(unicodedata.category(c) == "Cc" for c in name) and name not in bad:
            bad.add(name)
            report.add(Issue("unusable_name", str(path), f"{what} folder name {name!r} holds a control character "
                                                         f"(newline, tab ...) at {str(path)!r}: rename the folder"))
    if bad:
        scan.samples[:] = [s for s in scan.samples if s.category not in bad and s.defect not in bad]


def check_folders(scans: list[CategoryScan], report: DataReport) -> None:
    """Folder-level checks before decoding: defect folders whose text order is not numeric, defect types with n < 3."""
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


def verify_samples(samples: list[Sample], threshold: int | None, report: DataReport,
                   progress: Callable[[int, int], None] | None, image_size: tuple[int, int] | None) -> list[Verified]:
    """Decode every image and mask of ``samples`` once (``inspect_file``, ``masks.inspect_mask`` with ``threshold``)
    and report what each holds; returns the samples whose files are usable, in order.

    ``progress(done, total)`` counts files. ``image_size`` = (H, W) of the network input: defect masks whose area
    fraction the resize to it changes by more than half are reported (None: not checked). Raises ``AnosegError`` on
    the first ``error``-severity issue if ``report`` is strict.
    """
    total = sum(1 + (s.mask is not None) for s in samples)
    done = 0
    kept: list[Verified] = []
    if progress:
        progress(0, total)
    for sample in samples:
        image = inspect_file(sample.image, "unreadable_image")
        ok = not isinstance(image, Issue)
        if not ok:
            report.add(image)
        done += 1
        empty, fraction = False, None
        if ok:
            report.extend(image_notes(sample.image, image))
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
            kept.append(Verified(sample, image.mode, image.digest, empty, fraction))
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


def check_inverted(verified: list[Verified], report: DataReport) -> None:
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


def image_notes(path: str | Path, image: ImageInfo) -> list[Issue]:
    """What reading the image ``path`` (described by ``image``) changes: alpha dropped, 16-bit/float scaled to 8 bit,
    EXIF orientation applied; one ``Issue`` each."""
    notes = []
    if image.has_alpha:
        notes.append(Issue("alpha_image", str(path), f"{path} has alpha ({image.mode}): dropped"))
    if image.high_bit_depth:
        notes.append(Issue("high_bit_depth_image", str(path), f"{path} is {image.mode}: scaled to 8 bit by the dtype "
                                                              "maximum"))
    if image.exif_orientation != 1:
        notes.append(Issue("exif_orientation", str(path), f"{path} has EXIF orientation {image.exif_orientation}: "
                                                          "read upright", {"orientation": image.exif_orientation}))
    return notes


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


def check_duplicates(verified: list[Verified], report: DataReport) -> None:
    """Report identical pictures (same decoded pixels) that land in both train and test."""
    by_digest: dict[str, list[Verified]] = defaultdict(list)
    for v in verified:
        by_digest[v.digest].append(v)
    for group in by_digest.values():
        splits = {sample_split(v.sample) for v in group}
        if len(splits) > 1:
            names = sorted(str(v.sample.image) for v in group)
            report.add(Issue("cross_split_duplicate", names[0], f"identical images in train and test: "
                                                                f"{', '.join(names)}", {"images": names}))
