"""KolektorSDD (the first Kolektor set): ``kosNN/PartN.jpg`` with a mask ``PartN_label.bmp`` beside every image.

An image is a defect iff its mask has a non-zero pixel (as anomalib decides). The dataset has no train/test split of
its own (its authors used cross-validation folds), so anoseg applies the protocol: the defective images, sorted by
``kosNN/PartN``, form one defect type ``defect`` with the 1/3 rule; the defect-free ones split like good images of
the folder layout (every fifth to test; anomalib draws a random 20%). One category, ``kolektorsdd``.
"""

from __future__ import annotations

from pathlib import Path

from anoseg.data.layouts.base import (
    DEFECT,
    GOOD,
    LABEL_SUFFIX,
    TEST_GOOD,
    TRAIN_GOOD,
    CategoryScan,
    list_dirs,
    list_images,
    pair_by_stem,
)
from anoseg.data.layouts.folder import good_split
from anoseg.data.layouts.ksdd2 import mask_is_positive
from anoseg.errors import AnosegError

CATEGORY = "kolektorsdd"
DEFECT_NAME = "defect"


class KolektorSDD:
    """Reader of the KolektorSDD release (anoseg's 1/3 rule over its defective images)."""

    name = "kolektorsdd"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def categories(self) -> list[str]:
        return [CATEGORY] if list_dirs(self.root) else []

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "kolektorsdd")
        positives: list[Path] = []
        negatives: list[Path] = []
        masks_of: dict[Path, Path] = {}
        for part in list_dirs(self.root):
            files = list_images(self.root / part, scan)
            masks = [p for p in files if p.stem.endswith(LABEL_SUFFIX)]
            images = [p for p in files if not p.stem.endswith(LABEL_SUFFIX)]
            pairs = pair_by_stem(images, masks, scan, suffixes=(LABEL_SUFFIX,))
            for image, mask in pairs.items():
                try:
                    (positives if mask_is_positive(mask) else negatives).append(image)
                    masks_of[image] = mask
                except AnosegError as exc:
                    scan.issue("unreadable_mask", mask, str(exc))
        if not positives and not negatives:
            scan.issue("empty_defect", self.root, f"no image/mask pairs in the kosNN folders of {self.root}")
            return scan

        def relative(path: Path) -> str:
            return f"{path.parent.name}/{path.name}"

        positives.sort(key=relative)
        negatives.sort(key=relative)
        for role in (TRAIN_GOOD, TEST_GOOD):
            chosen = [p for i, p in enumerate(negatives) if (good_split(i) == "test") == (role == TEST_GOOD)]
            scan.add_folder(GOOD, role, self.root, chosen, dict.fromkeys(chosen), names=[relative(p) for p in chosen])
        scan.add_folder(DEFECT_NAME, DEFECT, self.root, positives, {p: masks_of[p] for p in positives},
                        names=[relative(p) for p in positives])
        return scan
