"""KolektorSDD2: ``{train,test}/NNNNN.png`` with a mask ``NNNNN_GT.png`` beside every image, defective or not.

An image is a defect ("positive") iff its mask has a non-zero pixel, otherwise it is normal. The dataset is made for
supervised training and fixes its own split, which anoseg keeps instead of the protocol's 1/3 rule: every positive of
``train/`` trains (246 in the release) and every positive of ``test/`` tests (110); negatives of ``train/`` play the
part of ``train/good`` and those of ``test/`` of ``test/good``. All positives form one defect type, ``defect``, of one
category, ``ksdd2``. Images are about 230×630 (portrait, sizes vary slightly); the recipe squashes them.
"""

from __future__ import annotations

from pathlib import Path

from anoseg.data.layouts.base import (
    DEFECT,
    GOOD,
    GT_SUFFIX,
    TEST_GOOD,
    TRAIN_GOOD,
    CategoryScan,
    list_images,
    pair_by_stem,
)
from anoseg.errors import AnosegError

CATEGORY = "ksdd2"
DEFECT_NAME = "defect"
SPLITS = {"train": TRAIN_GOOD, "test": TEST_GOOD}


def mask_is_positive(path: Path) -> bool:
    """True if the mask file has any pixel above 0 (the default binarisation of ``anoseg.data.masks``)."""
    from anoseg.data.masks import read_mask

    return bool(read_mask(path).any())


class KolektorSDD2:
    """Reader of the KolektorSDD2 release (one category; positives found from the masks)."""

    name = "ksdd2"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def categories(self) -> list[str]:
        return [CATEGORY] if any((self.root / split).is_dir() for split in SPLITS) else []

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "ksdd2")
        found = False
        for split, good_role in SPLITS.items():
            folder = self.root / split
            if not folder.is_dir():
                scan.issue("missing_good", folder, f"folder not found: {folder}")
                continue
            found = True
            files = list_images(folder, scan)
            masks = [p for p in files if p.stem.endswith(GT_SUFFIX)]
            images = [p for p in files if not p.stem.endswith(GT_SUFFIX)]
            pairs = pair_by_stem(images, masks, scan, suffixes=(GT_SUFFIX,))
            positives, negatives = [], []
            for image in images:
                if image not in pairs:
                    continue
                try:
                    (positives if mask_is_positive(pairs[image]) else negatives).append(image)
                except AnosegError as exc:
                    scan.issue("unreadable_mask", pairs[image], str(exc))
            scan.add_folder(GOOD, good_role, folder, negatives, dict.fromkeys(negatives))
            scan.add_folder(DEFECT_NAME, DEFECT, folder, positives, {p: pairs[p] for p in positives},
                            splits=dict.fromkeys(positives, split))
            if positives:
                scan.issue("fixed_split", folder, f"{len(positives)} positive(s) of {folder} all go to {split} "
                                                  f"(KolektorSDD2's own split; the 1/3 rule is not applied)")
        if not found:
            scan.issue("empty_defect", self.root, f"no train/ or test/ folder in {self.root}")
        return scan
