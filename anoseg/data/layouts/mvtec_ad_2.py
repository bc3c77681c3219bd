"""MVTec AD 2: ``<cat>/{train/good, validation/good, test_public/{good, bad, ground_truth/bad}, test_private*}``.

Only ``test_public`` has ground truth, so it is the real test data: its ``bad`` images (masks
``ground_truth/bad/<stem>_mask.png``) form one defect type that goes through the 1/3 rule like any other, its ``good``
images are ``test/good``. ``validation/`` (normal images for threshold tuning) and the two private test sets (no
ground truth) are not used, and are reported as such. Images are large and not square (several megapixels, each
category its own size); the recipe squashes them to 256×256 as for the other sets.
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

TEST_PUBLIC = "test_public"
GROUND_TRUTH = "ground_truth"
#: folders of a category that the protocol does not use (no ground truth, or normal images for tuning only)
UNUSED = ("validation", "test_private", "test_private_mixed")


class MVTecAD2(CategoryTree):
    """Reader of the MVTec AD 2 tree (anomalib's ``MVTecAD2`` with ``test_type="public"``)."""

    name = "mvtec_ad_2"
    MARKERS = ("train", TEST_PUBLIC)

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "mvtec_ad_2")
        base = self.root / category
        test = base / TEST_PUBLIC
        good_folder(scan, TRAIN_GOOD, base / "train" / GOOD)
        good_folder(scan, TEST_GOOD, test / GOOD)
        for name in UNUSED:
            if (base / name).is_dir():
                scan.issue("unused_folder", base / name, f"not used (no ground truth or normal images for tuning "
                                                         f"only): {base / name}")
        mask_types = list_dirs(test / GROUND_TRUTH)
        if GOOD in mask_types:
            scan.issue("ground_truth_good", test / GROUND_TRUTH / GOOD,
                       f"ignored {test / GROUND_TRUTH / GOOD}: 'good' is never a defect type")
        defects = (set(list_dirs(test)) | set(mask_types)) - {GOOD, GROUND_TRUTH}
        for defect in sorted(defects):
            defect_folder(scan, defect, DEFECT, test / defect, test / GROUND_TRUTH / defect)
        return scan
