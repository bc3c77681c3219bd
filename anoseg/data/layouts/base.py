"""What every layout reader shares: the sample/folder/issue records, folder listing and stem pairing.

Readers never decide what is fatal: they list every sample they can pair and record every problem as an ``Issue``;
``anoseg.data.validation`` applies the strict/lenient policy, ``anoseg.data.split`` the 1/3 rule.

Rules shared by every reader (docs/protocol.md §6 #4–#7):

* only directories are categories or defect types; names starting with ``.`` are skipped everywhere;
* image files are matched by extension (``IMAGE_EXTENSIONS``, any case); other files are ignored (and reported);
* ``good`` is never a defect type, even where a ``ground_truth/good`` folder exists (SeaS-reorganised MVTec 3D);
* masks are paired with images by stem — ``NNN`` ↔ ``NNN_mask`` or ``NNN`` — never by position, so one missing
  mask cannot shift the pairs after it;
* every folder's images are sorted by file name (plain lexicographic order, as the reference code does); a sample's
  ``index`` and ``n`` refer to that full list, whether or not some of its files are later dropped;
* a sample's ``split`` is None (the split stage applies the protocol's rule) unless the dataset itself fixes it
  (KolektorSDD2's own train/test, a user's test list): then the reader sets it and the 1/3 rule is not applied.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from anoseg.data.images import is_image_file

GOOD = "good"
#: Sample roles: where a sample comes from decides its split (``anoseg.data.split``).
TRAIN_GOOD, TEST_GOOD, DEFECT, GENERATED = "train_good", "test_good", "defect", "generated"
MASK_SUFFIX = "_mask"  # MVTec AD: ground_truth/<d>/NNN_mask.png
GT_SUFFIX = "_GT"  # KolektorSDD2: NNNNN_GT.png beside NNNNN.png
LABEL_SUFFIX = "_label"  # KolektorSDD: PartN_label.bmp beside PartN.jpg
#: Folder names that hold masks, never images (MVTec ground_truth/, BMAD label/, the folder layout's masks/ ...).
MASK_FOLDERS = frozenset({"ground_truth", "gt", "mask", "masks", "label", "labels"})


def is_mask_file(path: str | Path) -> bool:
    """Whether a file is named as a mask by one of the layouts' rules (stem ending ``_mask``, ``_GT`` or ``_label``,
    any case), so that commands reading image folders (predict, the folder layout's good/) never take it as an
    image."""
    stem = Path(path).stem.lower()
    return any(stem.endswith(suffix.lower()) for suffix in (MASK_SUFFIX, GT_SUFFIX, LABEL_SUFFIX))


def is_mask_folder(name: str) -> bool:
    """Whether a folder name (any case) is one the layouts keep masks in (``MASK_FOLDERS``)."""
    return name.lower() in MASK_FOLDERS


@dataclass(frozen=True)
class Issue:
    """A problem or notable fact found in the data; ``kind`` keys the policy table ``validation.ISSUE_KINDS``."""

    kind: str
    path: str
    message: str
    detail: dict | None = None  # extra JSON-able facts for the report (e.g. a mask's value histogram)


@dataclass(frozen=True)
class Sample:
    """One usable image (with its mask for defects) and its position in its sorted folder."""

    category: str
    defect: str  # defect-type name; "good" for normal images
    role: str  # TRAIN_GOOD | TEST_GOOD | DEFECT | GENERATED
    image: Path
    mask: Path | None
    index: int  # position in the folder's sorted image list
    n: int  # number of images in that folder
    split: str | None = None  # "train"/"test" when the dataset fixes it; None = the protocol's rule decides

    @property
    def source(self) -> str:
        return "generated" if self.role == GENERATED else "real"


@dataclass(frozen=True)
class Folder:
    """One listed folder of images: the names in sorted order (used for the order and small-n checks)."""

    category: str
    defect: str
    role: str
    path: Path
    names: tuple[str, ...]
    fixed_split: bool = False  # the dataset, not the 1/3 rule, decides which of these images train


@dataclass
class CategoryScan:
    """Everything a reader found for one category."""

    category: str
    variant: str
    samples: list[Sample] = field(default_factory=list)
    folders: list[Folder] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def issue(self, kind: str, path: str | Path, message: str) -> None:
        self.issues.append(Issue(kind, str(path), message))

    def add_folder(self, defect: str, role: str, path: Path, images: list[Path],
                   usable: dict[Path, Path | None], splits: dict[Path, str] | None = None,
                   names: list[str] | None = None) -> None:
        """Record a folder's sorted ``images``; those in ``usable`` (image → mask or None) become samples.

        ``splits`` (image → "train"/"test") fixes the split of every image of the folder (the 1/3 rule is then not
        applied to it); None leaves the split to the protocol's rule. ``names`` are the names the images are sorted
        by, when that is not their file name (images gathered from several sub-folders: ``kos01/Part0.jpg``).
        """
        names = names if names is not None else [p.name for p in images]
        self.folders.append(Folder(self.category, defect, role, path, tuple(names), fixed_split=splits is not None))
        for index, image in enumerate(images):
            if image in usable:
                split = splits.get(image) if splits is not None else None
                self.samples.append(Sample(self.category, defect, role, image, usable[image], index, len(images),
                                           split))


class Layout(Protocol):
    """A reader for one on-disk layout rooted at one folder."""

    name: str
    root: Path

    def categories(self) -> list[str]:
        """Category names found under the root, sorted."""
        ...

    def scan(self, category: str) -> CategoryScan:
        """Samples, folders and issues of one category (which must exist, see ``categories``)."""
        ...


class CategoryTree:
    """Base of the readers whose root holds one folder per category: a sub-folder of the root is a category when it
    holds one of ``MARKERS`` (stray folders such as ``docs/`` are skipped). Subclasses set ``name`` and ``scan``."""

    name: str
    MARKERS: tuple[str, ...] = ("train", "test", "ground_truth")

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def categories(self) -> list[str]:
        """Category names found under the root, sorted."""
        return [name for name in list_dirs(self.root)
                if any((self.root / name / sub).is_dir() for sub in self.MARKERS)]


# ---------------------------------------------------------------------------------------------------------------
# folder listing and pairing


def list_dirs(folder: Path) -> list[str]:
    """Sorted names of the non-hidden sub-directories of ``folder`` ([] if it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(folder: Path, scan: CategoryScan | None = None) -> list[Path]:
    """Image files of ``folder`` sorted by name; non-image files are skipped (and reported to ``scan``)."""
    if not folder.is_dir():
        return []
    images = []
    for path in folder.iterdir():
        if path.name.startswith(".") or path.is_dir():
            continue
        if is_image_file(path):
            images.append(path)
        elif scan is not None:
            scan.issue("ignored_file", path, f"not an image file, ignored: {path}")
    return sorted(images, key=lambda p: p.name)


def pair_by_stem(images: list[Path], masks: list[Path], scan: CategoryScan,
                 suffixes: tuple[str, ...] = ("", MASK_SUFFIX)) -> dict[Path, Path]:
    """The mask of each image: the mask whose stem is the image stem + one of ``suffixes`` (default: nothing or
    ``_mask``; KolektorSDD2 uses ``_GT``).

    Images with no mask, masks with no image and ambiguous names (``000.png`` + ``000.jpg``) are reported to ``scan``
    and left out of the result. Example:
        >>> pair_by_stem([Path("t/000.png")], [Path("g/000_mask.png")], CategoryScan("bottle", "mvtec_ad"))
        {PosixPath('t/000.png'): PosixPath('g/000_mask.png')}
    """
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for mask in masks:
        by_stem[mask.stem].append(mask)
    image_stems = Counter(p.stem for p in images)
    reported: set[str] = set()
    used: set[Path] = set()
    pairs: dict[Path, Path] = {}
    for image in images:
        candidates = [m for suffix in suffixes for m in by_stem.get(image.stem + suffix, [])]
        if image_stems[image.stem] > 1:
            used.update(candidates)
            if image.stem not in reported:
                reported.add(image.stem)
                same = sorted(p.name for p in images if p.stem == image.stem)
                scan.issue("ambiguous_name", image, f"ambiguous image name {image.stem!r} in {image.parent}: "
                                                    f"{', '.join(same)}")
        elif len(candidates) == 1:
            pairs[image] = candidates[0]
            used.add(candidates[0])
        elif not candidates:
            looked = " and ".join(f"{image.stem}{suffix}.*" for suffix in suffixes)
            scan.issue("image_without_mask", image, f"no mask for {image} (looked for {looked} in the mask folder)")
        else:
            used.update(candidates)
            scan.issue("ambiguous_name", image, f"ambiguous masks for {image}: "
                                                f"{', '.join(sorted(str(p) for p in candidates))}")
    for mask in masks:
        if mask not in used:
            scan.issue("mask_without_image", mask, f"mask without image: {mask}")
    return pairs


def defect_folder(scan: CategoryScan, defect: str, role: str, image_dir: Path, mask_dir: Path) -> None:
    """Pair one defect folder (images + masks) into ``scan``; a side missing or empty is an issue."""
    images = list_images(image_dir, scan)
    masks = list_images(mask_dir, scan)
    generated = role == GENERATED
    if images and masks:
        scan.add_folder(defect, role, image_dir, images, pair_by_stem(images, masks, scan))
    elif images:
        scan.add_folder(defect, role, image_dir, images, {})
        kind = "generated_incomplete" if generated else "defect_without_masks"
        scan.issue(kind, mask_dir, f"{len(images)} image(s) in {image_dir} but no masks in {mask_dir}")
    elif masks:
        kind = "generated_incomplete" if generated else "masks_without_defect"
        scan.issue(kind, image_dir, f"{len(masks)} mask(s) in {mask_dir} but no images in {image_dir}")
    else:
        kind = "generated_incomplete" if generated else "empty_defect"
        scan.issue(kind, image_dir, f"no images in {image_dir} and no masks in {mask_dir}")


def good_folder(scan: CategoryScan, role: str, folder: Path, mask_dir: Path | None = None,
                mask_suffixes: tuple[str, ...] = ("", MASK_SUFFIX)) -> None:
    """Add a folder of good images; masks found for them in ``mask_dir`` (same stem, optional suffix) are attached so
    that the data stage can check they are empty. A good image without a mask is normal and not reported."""
    if not folder.is_dir():
        scan.issue("missing_good", folder, f"folder not found: {folder}")
        return
    images = list_images(folder, scan)
    if not images:
        inside = ", ".join(list_dirs(folder)[:3])
        scan.issue("empty_good", folder, f"no images in {folder}" + (f" (sub-folders are not read: {inside})"
                                                                      if inside else ""))
    masks: dict[Path, Path | None] = dict.fromkeys(images)
    if mask_dir is not None and mask_dir.is_dir():
        by_stem = {mask.stem: mask for mask in list_images(mask_dir, scan)}
        for image in images:
            found = [by_stem[image.stem + s] for s in mask_suffixes if image.stem + s in by_stem]
            masks[image] = found[0] if len(found) == 1 else None
    scan.add_folder(GOOD, role, folder, images, masks)


