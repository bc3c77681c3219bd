"""Dataset layouts: one reader per on-disk layout, turning folders into the samples of a category (protocol.md §1).

Every fact about how a dataset is stored lives here: folder names, mask names, which variant a tree is. Readers never
decide what is fatal: they list every sample they can pair and record every problem as an ``Issue``; the split stage
(``anoseg.data.split``) applies the strict/lenient policy and the 1/3 rule.

Rules shared by every reader (protocol.md §6 #4–#7):

* only directories are categories or defect types; names starting with ``.`` are skipped everywhere;
* image files are matched by extension (``IMAGE_EXTENSIONS``, any case); other files are ignored (and reported);
* ``good`` is never a defect type, even where a ``ground_truth/good`` folder exists (SeaS-reorganised MVTec 3D);
* masks are paired with images by stem — ``NNN`` ↔ ``NNN_mask`` or ``NNN`` — never by position, so one missing
  mask cannot shift the pairs after it;
* every folder's images are sorted by file name (plain lexicographic order, as the reference code does); a sample's
  ``index`` and ``n`` refer to that full list, whether or not some of its files are later dropped.

Adding a layout = one class with ``categories()`` and ``scan(category)`` plus an entry in ``LAYOUTS``.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from anoseg.data.images import is_image_file
from anoseg.errors import AnosegError

GOOD = "good"
#: Sample roles: where a sample comes from decides its split (``anoseg.data.split``).
TRAIN_GOOD, TEST_GOOD, DEFECT, GENERATED = "train_good", "test_good", "defect", "generated"
MASK_SUFFIX = "_mask"  # MVTec AD: ground_truth/<d>/NNN_mask.png


@dataclass(frozen=True)
class Issue:
    """A problem or notable fact found in the data; ``kind`` keys the policy table in ``anoseg.data.split``."""

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
                   usable: dict[Path, Path | None]) -> None:
        """Record a folder's sorted ``images``; those in ``usable`` (image → mask or None) become samples."""
        self.folders.append(Folder(self.category, defect, role, path, tuple(p.name for p in images)))
        for index, image in enumerate(images):
            if image in usable:
                self.samples.append(Sample(self.category, defect, role, image, usable[image], index, len(images)))


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


def pair_by_stem(images: list[Path], masks: list[Path], scan: CategoryScan) -> dict[Path, Path]:
    """The mask of each image: the mask whose stem is the image stem or the image stem + ``_mask``.

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
        candidates = by_stem.get(image.stem, []) + by_stem.get(image.stem + MASK_SUFFIX, [])
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
            scan.issue("image_without_mask", image, f"no mask for {image} (looked for {image.stem}.* and "
                                                    f"{image.stem}{MASK_SUFFIX}.* in the mask folder)")
        else:
            used.update(candidates)
            scan.issue("ambiguous_name", image, f"ambiguous masks for {image}: "
                                                f"{', '.join(sorted(str(p) for p in candidates))}")
    for mask in masks:
        if mask not in used:
            scan.issue("mask_without_image", mask, f"mask without image: {mask}")
    return pairs


def _defect_folder(scan: CategoryScan, defect: str, role: str, image_dir: Path, mask_dir: Path) -> None:
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


def _good_folder(scan: CategoryScan, role: str, folder: Path) -> None:
    if not folder.is_dir():
        scan.issue("missing_good", folder, f"folder not found: {folder}")
        return
    images = list_images(folder, scan)
    scan.add_folder(GOOD, role, folder, images, dict.fromkeys(images))


# ---------------------------------------------------------------------------------------------------------------
# MVTec AD and look-alikes (VisA_type, SeaS-reorganised MVTec 3D AD)


def _mvtec_categories(root: Path) -> list[str]:
    # a category is a folder holding train/, test/ or ground_truth/ (skips stray folders such as docs/)
    return [name for name in list_dirs(root)
            if any((root / name / sub).is_dir() for sub in ("train", "test", "ground_truth"))]


class MVTecAD:
    """``<cat>/{train/good, test/<d>, ground_truth/<d>}``; masks ``NNN_mask`` (MVTec AD) or ``NNN`` (VisA_type)."""

    name = "mvtec_ad"

    def __init__(self, root: Path, variant: str = "mvtec_ad") -> None:
        self.root = Path(root)
        self.variant = variant

    def categories(self) -> list[str]:
        return _mvtec_categories(self.root)

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, self.variant)
        base = self.root / category
        _good_folder(scan, TRAIN_GOOD, base / "train" / GOOD)
        _good_folder(scan, TEST_GOOD, base / "test" / GOOD)
        test_types = list_dirs(base / "test")
        mask_types = list_dirs(base / "ground_truth")
        if GOOD in mask_types:
            scan.issue("ground_truth_good", base / "ground_truth" / GOOD,
                       f"ignored {base / 'ground_truth' / GOOD}: 'good' is never a defect type")
        for defect in sorted((set(test_types) | set(mask_types)) - {GOOD}):
            _defect_folder(scan, defect, DEFECT, base / "test" / defect, base / "ground_truth" / defect)
        return scan


# ---------------------------------------------------------------------------------------------------------------
# MVTec 3D AD


class MVTec3DAD:
    """Original ``<cat>/{train/good/rgb, test/<d>/{rgb, gt}}`` or, detected per category by the absence of ``rgb/``
    folders, the SeaS-reorganised copy read like MVTec AD with same-name masks (§6 #30). ``validation/`` and ``xyz/``
    are not used."""

    name = "mvtec_3d_ad"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def categories(self) -> list[str]:
        return _mvtec_categories(self.root)

    def is_original(self, category: str) -> bool:
        base = self.root / category
        return (base / "train" / GOOD / "rgb").is_dir() or any(
            (base / "test" / d / "rgb").is_dir() for d in list_dirs(base / "test"))

    def scan(self, category: str) -> CategoryScan:
        if not self.is_original(category):
            return MVTecAD(self.root, variant="mvtec_3d_ad_reorg").scan(category)
        scan = CategoryScan(category, "mvtec_3d_ad")
        base = self.root / category
        _good_folder(scan, TRAIN_GOOD, base / "train" / GOOD / "rgb")
        _good_folder(scan, TEST_GOOD, base / "test" / GOOD / "rgb")
        if (base / "validation").is_dir():
            scan.issue("validation_ignored", base / "validation", f"not used by the protocol: {base / 'validation'}")
        for defect in list_dirs(base / "test"):
            if defect != GOOD:
                _defect_folder(scan, defect, DEFECT, base / "test" / defect / "rgb", base / "test" / defect / "gt")
        return scan


# ---------------------------------------------------------------------------------------------------------------
# VisA


VISA_SPLIT_CSV = Path("split_csv") / "1cls.csv"
VISA_FALLBACK_DEFECT = "bad"  # anomalib's single pseudo defect type, used when image_anno.csv has no usable label
_VISA_COLUMNS = ("object", "split", "label", "image", "mask")


def visa_defect_name(label: str) -> str | None:
    """A VisA ``image_anno.csv`` label as a defect-type name; several labels → ``combined``; normal → None.

    Example:
        >>> visa_defect_name("Different colour spot"), visa_defect_name('melt, scratch'), visa_defect_name("normal")
        ('different_colour_spot', 'combined', None)
    """
    names = {re.sub(r"[^a-z0-9]+", "_", part.strip().lower()).strip("_") for part in label.split(",")}
    names -= {"", "normal", GOOD}
    if not names:
        return None
    return "combined" if len(names) > 1 else names.pop()


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
            columns = [c.strip() for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AnosegError(f"cannot read {path}: {exc}") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise AnosegError(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(columns)})")
    return rows


class VisASplitCSV:
    """The original VisA archive: ``split_csv/1cls.csv`` (object, split, label, image, mask; paths relative to the
    root) with ``<cat>/Data/{Images,Masks}``. Normal images keep the CSV's train/test split; every anomaly goes
    through the 1/3 rule, its defect type taken from ``<cat>/image_anno.csv`` (§6 #29)."""

    name = "visa"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.rows = _read_csv(self.root / VISA_SPLIT_CSV, _VISA_COLUMNS)

    def categories(self) -> list[str]:
        return sorted({row["object"] for row in self.rows if row["object"]})

    def _defect_types(self, category: str, scan: CategoryScan) -> dict[str, str]:
        """Image path (relative, lower-case) and bare file name → defect-type name, from ``image_anno.csv``."""
        path = self.root / category / "image_anno.csv"
        if not path.is_file():
            scan.issue("visa_no_defect_types", path, f"{path} not found: every anomaly of {category!r} becomes "
                                                     f"defect type {VISA_FALLBACK_DEFECT!r}")
            return {}
        types = {}
        for row in _read_csv(path, ("image", "label")):
            name = visa_defect_name(row["label"])
            if name:
                types[row["image"].replace("\\", "/").lower()] = name
                types[Path(row["image"]).name.lower()] = name
        return types

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "visa_split_csv")
        types = self._defect_types(category, scan)
        groups: dict[tuple[str, str], list[tuple[Path, str]]] = defaultdict(list)
        for row in self.rows:
            if row["object"] != category:
                continue
            image = self.root / row["image"]
            if row["label"].lower() == "normal":
                role = TRAIN_GOOD if row["split"].lower() == "train" else TEST_GOOD
                groups[(role, GOOD)].append((image, ""))
                continue
            defect = types.get(row["image"].replace("\\", "/").lower()) or types.get(image.name.lower())
            if defect is None:
                scan.issue("visa_defect_fallback", image, f"no defect type for {image} in image_anno.csv: "
                                                          f"using {VISA_FALLBACK_DEFECT!r}")
                defect = VISA_FALLBACK_DEFECT
            groups[(DEFECT, defect)].append((image, row["mask"]))
        for (role, defect), entries in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            entries.sort(key=lambda e: (e[0].name, str(e[0])))
            images = [image for image, _ in entries]
            usable: dict[Path, Path | None] = {}
            for image, mask in entries:
                if not image.is_file():
                    scan.issue("missing_file", image, f"image listed in {self.root / VISA_SPLIT_CSV} not found: "
                                                      f"{image}")
                elif role == DEFECT and not mask:
                    scan.issue("image_without_mask", image, f"no mask for {image} in {self.root / VISA_SPLIT_CSV}")
                elif role == DEFECT and not (self.root / mask).is_file():
                    scan.issue("missing_file", self.root / mask, f"mask listed in {self.root / VISA_SPLIT_CSV} "
                                                                 f"not found: {self.root / mask}")
                else:
                    usable[image] = self.root / mask if role == DEFECT else None
            scan.add_folder(defect, role, images[0].parent, images, usable)
        return scan


# ---------------------------------------------------------------------------------------------------------------
# generated pairs


class Generated:
    """``<root>/<category>/<defect>/{image,mask}/NNN.png`` (SeaS and the other generators, §1.4)."""

    name = "generated"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def categories(self) -> list[str]:
        return list_dirs(self.root)

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "generated")
        base = self.root / category
        if not base.is_dir():
            scan.issue("generated_category_missing", base, f"no generated pairs for {category!r}: {base} not found")
            return scan
        defects = list_dirs(base)
        if GOOD in defects:
            scan.issue("generated_good_ignored", base / GOOD, f"ignored {base / GOOD}: 'good' is never a defect type")
        defects = [d for d in defects if d != GOOD]
        if not defects:
            scan.issue("generated_category_missing", base, f"no generated defect folders in {base}")
        for defect in defects:
            _defect_folder(scan, defect, GENERATED, base / defect / "image", base / defect / "mask")
        return scan


def resolve_generated_root(root: Path, generator: str, categories: list[str]) -> Path:
    """The folder that holds ``<category>/<defect>/{image,mask}``: ``root`` itself or, when ``root`` is the parent of
    several generators (``<root>/<generator>/<category>/…``), ``root/<generator>``.

    Example:
        >>> resolve_generated_root(Path("data/demo/generated"), "seas", ["disk"])
        PosixPath('data/demo/generated/seas')
    """
    nested = root / generator
    if nested.is_dir() and not any((root / c).is_dir() for c in categories):
        return nested
    return root


# ---------------------------------------------------------------------------------------------------------------
# registry


def _open_visa(root: Path) -> Layout:
    if (root / VISA_SPLIT_CSV).is_file():
        return VisASplitCSV(root)
    if any((root / c / "Data" / "Images").is_dir() for c in list_dirs(root)):
        raise AnosegError(f"{root} looks like the original VisA archive (<category>/Data/Images) but "
                          f"{root / VISA_SPLIT_CSV} is missing")
    return MVTecAD(root, variant="visa_type")


#: layout name → reader factory (auto-detecting variants). The road/scene layouts will be added here.
LAYOUTS: dict[str, Callable[[Path], Layout]] = {
    "mvtec_ad": MVTecAD,
    "visa": _open_visa,
    "mvtec_3d_ad": MVTec3DAD,
}


def open_layout(layout: str, root: str | Path) -> Layout:
    """The reader for ``layout`` at ``root`` (the VisA and MVTec 3D variants are detected from the files).

    Example:
        >>> reader = open_layout("mvtec_ad", "data/demo/mvtec")
        >>> reader.categories()
        ['disk', 'mesh', 'weave']
    """
    if layout not in LAYOUTS:
        raise AnosegError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise AnosegError(f"data root not found: {root}")
    return LAYOUTS[layout](root)
