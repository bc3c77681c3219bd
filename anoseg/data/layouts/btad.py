"""BTAD (beanTech): ``<01|02|03>/{train/ok, test/{ok, ko}, ground_truth/ko}``.

Normal images are in ``ok`` folders, anomalies in ``test/ko`` (one defect type, ``ko``) with same-stem masks in
``ground_truth/ko``. Extensions differ by product as distributed (``.bmp`` or ``.png`` images, masks ``.png`` or
``.bmp``; anomalib converts them all to PNG first): pairing is by stem, so either works untouched.
"""

from __future__ import annotations

from anoseg.data.layouts.base import (
    DEFECT,
    TEST_GOOD,
    TRAIN_GOOD,
    CategoryScan,
    CategoryTree,
    defect_folder,
    good_folder,
    list_dirs,
)

OK = "ok"  # BTAD's name for normal images
GROUND_TRUTH = "ground_truth"


class BTAD(CategoryTree):
    """Reader of the BTAD tree (anomalib's ``BTech``)."""

    name = "btad"
    MARKERS = ("train", "test", GROUND_TRUTH)

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "btad")
        base = self.root / category
        good_folder(scan, TRAIN_GOOD, base / "train" / OK)
        good_folder(scan, TEST_GOOD, base / "test" / OK)
        mask_types = list_dirs(base / GROUND_TRUTH)
        if OK in mask_types:
            scan.issue("ground_truth_good", base / GROUND_TRUTH / OK,
                       f"ignored {base / GROUND_TRUTH / OK}: normal images are never a defect type")
        for defect in sorted((set(list_dirs(base / "test")) | set(mask_types)) - {OK}):
            defect_folder(scan, defect, DEFECT, base / "test" / defect, base / GROUND_TRUTH / defect)
        return scan
