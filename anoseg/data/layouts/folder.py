"""Your own data: per category a folder of good images and one folder per defect type (anomalib's ``Folder``
conventions: normal / abnormal / mask directories).

::

    DIR/                          the --data-root
    ├── test.csv                  optional: a fixed test list (column ``image``, paths relative to DIR)
    ├── pcb/                      one folder per category (leave this level out for a single category)
    │   ├── good/                 normal images (also accepted: normal/, ok/)
    │   ├── scratch/              one folder per defect type ...
    │   │   ├── 001.png
    │   │   └── 001_mask.png      ... with masks beside the images (``_mask`` suffix) ...
    │   ├── dent/
    │   │   └── a7.jpg
    │   ├── masks/                ... or in a parallel tree (also: mask/, ground_truth/)
    │   │   └── dent/a7.png       same stem (or stem + ``_mask``), any image extension
    │   └── stain/                a defect type without any mask: image-level only
    └── connector/ ...

Split (the protocol adapted to folders without a train/test level; docs/datasets.md):

* defect types with masks: the 1/3 rule — the first ⌊n/3⌋ (sorted names) train, the rest test;
* good images: every fifth image in name order (the 5th, 10th, ...) is ``test/good``, the others ``train/good``
  (20% test, anomalib's default ``test_split_ratio``);
* with ``DIR/test.csv``: the images it lists are test, every other image trains; no rule is applied;
* a defect type without masks is image-level only: all its images are test, they count as anomalous for the image
  metrics and are left out of the pixel metrics and IoU (there is no ground truth for their pixels).

A category is a folder that holds a good folder or any other sub-folder; DIR is itself the (only) category, named
after DIR, when it directly holds a good folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from anoseg.data.layouts.base import (
    DEFECT,
    GOOD,
    MASK_SUFFIX,
    TEST_GOOD,
    TRAIN_GOOD,
    CategoryScan,
    is_mask_file,
    list_dirs,
    list_images,
    pair_by_stem,
)
from anoseg.errors import AnosegError

GOOD_NAMES = ("good", "normal", "ok")  # any case
MASK_DIR_NAMES = ("masks", "mask", "ground_truth")  # any case
TEST_LIST = "test.csv"
GOOD_TEST_EVERY = 5  # every 5th good image is a test image


def good_split(index: int) -> str:
    """Split of the ``index``-th good image (0-based, name order) when no test list is given.

    Example:
        >>> [good_split(i) for i in range(5)]
        ['train', 'train', 'train', 'train', 'test']
    """
    return "test" if index % GOOD_TEST_EVERY == GOOD_TEST_EVERY - 1 else "train"


def _report_nested(scan: CategoryScan, folder: Path) -> None:
    for name in list_dirs(folder):
        scan.issue("unused_folder", folder / name, f"sub-folder not read (images must sit directly in {folder}): "
                                                   f"{folder / name}")


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


class FolderLayout:
    """Reader of a user's folder tree (see the module docstring for the rules)."""

    name = "folder"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.single = any(d.lower() in GOOD_NAMES for d in list_dirs(self.root))
        self._refuse_split_trees()
        self.test_list = self._read_test_list()

    def _refuse_split_trees(self) -> None:
        """A tree already split into train/ and test/ (MVTec style) would be read with ``train`` and ``test`` as
        defect types: say which layout reads it instead."""
        bases = [self.root] if self.single else [self.root] + [self.root / d for d in list_dirs(self.root)]
        for base in bases:
            names = {d.lower() for d in list_dirs(base)}
            if {"train", "test"} <= names:
                raise AnosegError(f"{base} holds train/ and test/ folders: the folder layout wants good/ and one "
                                  f"folder per defect type; for an MVTec-style tree use --layout mvtec_ad")

    def _read_test_list(self) -> dict[str, str] | None:
        from anoseg.data.layouts.visa import read_csv

        path = self.root / TEST_LIST
        if not path.is_file():
            return None
        rows = read_csv(path, ("image",))
        return {_key(self.root / row["image"].replace("\\", "/")): row["image"] for row in rows if row["image"]}

    def categories(self) -> list[str]:
        if self.single:
            return [Path(os.path.abspath(self.root)).name]
        return [name for name in list_dirs(self.root) if list_dirs(self.root / name)]

    def _base(self, category: str) -> Path:
        return self.root if self.single else self.root / category

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "folder" if self.test_list is None else "folder_test_list")
        base = self._base(category)
        dirs = list_dirs(base)
        good_dirs = [d for d in dirs if d.lower() in GOOD_NAMES]
        mask_dirs = [d for d in dirs if d.lower() in MASK_DIR_NAMES]
        defects = [d for d in dirs if d not in good_dirs and d not in mask_dirs]
        listed = self._listed(base, scan)
        if listed is not None:
            scan.issue("fixed_split", self.root / TEST_LIST, f"{category}: the {len(listed)} image(s) listed in "
                                                             f"{self.root / TEST_LIST} are test, all others train")
        if not good_dirs:
            scan.issue("missing_good", base / GOOD, f"no good/ (or normal/, ok/) folder in {base}")
        for good in good_dirs:
            self._good(scan, base / good, listed)
        for mask_dir in mask_dirs:
            for name in list_dirs(base / mask_dir):
                if name not in defects:
                    scan.issue("masks_without_defect", base / mask_dir / name,
                               f"mask folder {base / mask_dir / name} has no image folder {base / name}")
        for defect in defects:
            self._defect(scan, defect, base / defect, [base / m / defect for m in mask_dirs], listed)
        if listed is not None:
            self._unmatched(scan, listed, {_key(s.image) for s in scan.samples}, category)
        return scan

    def _unmatched(self, scan: CategoryScan, listed: set[str], images: set[str], category: str) -> None:
        """Report test-list entries that name no image of the dataset: typos, masks, files in unread folders. Entries
        outside every category folder are reported with the first category."""
        unmatched = listed - images
        if not self.single and category == self.categories()[0]:
            prefixes = tuple(_key(self.root / c) + os.sep for c in self.categories())
            unmatched |= {key for key in self.test_list or {} if not key.startswith(prefixes)}
        for key in sorted(unmatched):
            what = "not found" if not os.path.isfile(key) else "is not an image of a good or defect folder"
            scan.issue("missing_file", key, f"{self.test_list[key]} in {self.root / TEST_LIST} {what}")

    def _listed(self, base: Path, scan: CategoryScan) -> set[str] | None:
        """Keys of this category's entries in the test list (None without a list)."""
        if self.test_list is None:
            return None
        prefix = _key(base) + os.sep
        return {key for key in self.test_list if key.startswith(prefix)}

    def _good(self, scan: CategoryScan, folder: Path, listed: set[str] | None) -> None:
        _report_nested(scan, folder)
        images = list_images(folder, scan)
        for mask in [p for p in images if is_mask_file(p)]:  # a mask beside a good image is not a good image
            scan.issue("ignored_file", mask, f"{mask.name} is named as a mask; not read as a good image")
        images = [p for p in images if not is_mask_file(p)]
        if listed is None:
            groups = {role: [p for i, p in enumerate(images) if (good_split(i) == "test") == (role == TEST_GOOD)]
                      for role in (TRAIN_GOOD, TEST_GOOD)}
        else:
            groups = {TEST_GOOD: [p for p in images if _key(p) in listed],
                      TRAIN_GOOD: [p for p in images if _key(p) not in listed]}
        for role, paths in groups.items():
            scan.add_folder(GOOD, role, folder, paths, dict.fromkeys(paths))

    def _defect(self, scan: CategoryScan, defect: str, folder: Path, mask_folders: list[Path],
                listed: set[str] | None) -> None:
        _report_nested(scan, folder)
        files = list_images(folder, scan)
        beside = [p for p in files if p.stem.endswith(MASK_SUFFIX)]
        images = [p for p in files if not p.stem.endswith(MASK_SUFFIX)]
        masks = beside + [m for mask_folder in mask_folders for m in list_images(mask_folder, scan)]
        if not images:
            scan.issue("empty_defect" if not masks else "masks_without_defect", folder,
                       f"no images in {folder}" + (f" but {len(masks)} mask(s)" if masks else ""))
            return
        if not masks:
            scan.issue("image_level_defect", folder,
                       f"{scan.category}/{defect}: no masks beside the images or in a masks/ folder: its "
                       f"{len(images)} image(s) are test images scored at image level only")
            scan.add_folder(defect, DEFECT, folder, images, dict.fromkeys(images), splits=dict.fromkeys(images, "test"))
            return
        pairs = pair_by_stem(images, masks, scan)
        splits = None if listed is None else {p: "test" if _key(p) in listed else "train" for p in images}
        scan.add_folder(defect, DEFECT, folder, images, pairs, splits)
