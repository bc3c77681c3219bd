"""BMAD (medical anomaly detection benchmarks), the sets with pixel masks (Brain MRI, Liver CT, Retina RESC):
``<cat>/{train/good, valid/{good,Ungood}/{img,label}, test/{good,Ungood}/{img,label}}``.

``train/good`` trains, ``test/good/img`` is ``test/good``, and ``test/Ungood/img`` with its same-name masks in
``test/Ungood/label`` is one defect type (``Ungood``, BMAD's name) under the 1/3 rule. ``valid/`` (for tuning) is not
used, nor the all-zero masks of ``test/good/label``.
"""

from __future__ import annotations

from anoseg.data.layouts.base import (
    DEFECT,
    GOOD,
    TEST_GOOD,
    TRAIN_GOOD,
    CategoryScan,
    CategoryTree,
    defect_folder,
    good_folder,
    list_dirs,
)

IMG, LABEL = "img", "label"


class BMAD(CategoryTree):
    """Reader of a BMAD category tree (anomalib's ``BMAD``)."""

    name = "bmad"
    MARKERS = ("train", "test")

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "bmad")
        base = self.root / category
        good_folder(scan, TRAIN_GOOD, base / "train" / GOOD)
        good_folder(scan, TEST_GOOD, base / "test" / GOOD / IMG)
        if (base / "valid").is_dir():
            scan.issue("unused_folder", base / "valid", f"not used (tuning only): {base / 'valid'}")
        for defect in list_dirs(base / "test"):
            if defect != GOOD:
                defect_folder(scan, defect, DEFECT, base / "test" / defect / IMG, base / "test" / defect / LABEL)
        return scan
