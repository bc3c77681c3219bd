"""BMAD (medical anomaly detection benchmarks), the sets with pixel masks (Brain MRI, Liver CT, Retina RESC):
``<cat>/{train/good, valid/{good,Ungood}/{img,label}, test/{good,Ungood}/{img,label}}``.

``train/good`` trains, ``test/good/img`` is ``test/good``, and ``test/Ungood/img`` with its same-name masks in
``test/Ungood/label`` is one defect type (``Ungood``, BMAD's name) under the 1/3 rule. ``valid/`` (for tuning) is not
used, nor the all-zero masks of ``test/good/label``.

Two variants of the tree are read, per category: anomalib's (images directly in ``train/good``) and the one BMAD's
README draws (``train/good/img``), whose masks may also be in ``anomaly_mask/`` instead of ``label/``. A
``train/good`` holding neither images nor ``img/`` is refused (``layout_mismatch``), naming the layout expected.
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
    list_images,
)

IMG, LABEL = "img", "label"
#: Where the masks of ``<split>/<type>/img`` are, in the order looked for (BMAD's own name first).
MASK_DIRS = (LABEL, "anomaly_mask")
EXPECTED = "train/good/*.png or train/good/img/*.png"


class BMAD(CategoryTree):
    """Reader of a BMAD category tree (anomalib's ``BMAD``)."""

    name = "bmad"
    MARKERS = ("train", "test")

    def scan(self, category: str) -> CategoryScan:
        base = self.root / category
        train = base / "train" / GOOD
        readme = (train / IMG).is_dir() and not list_images(train)
        scan = CategoryScan(category, "bmad_readme" if readme else "bmad")
        if train.is_dir() and not readme and not list_images(train):
            scan.issue("layout_mismatch", train, f"no images in {train}: the bmad layout reads {EXPECTED}")
        else:
            good_folder(scan, TRAIN_GOOD, train / IMG if readme else train)
        good_folder(scan, TEST_GOOD, base / "test" / GOOD / IMG)
        if (base / "valid").is_dir():
            scan.issue("unused_folder", base / "valid", f"not used (tuning only): {base / 'valid'}")
        for defect in list_dirs(base / "test"):
            if defect != GOOD:
                folder = base / "test" / defect
                masks = next((folder / d for d in MASK_DIRS if (folder / d).is_dir()), folder / LABEL)
                defect_folder(scan, defect, DEFECT, folder / IMG, masks)
        return scan
