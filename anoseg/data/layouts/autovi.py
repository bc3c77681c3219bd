"""AutoVI (Renault, automotive visual inspection): ``<cat>/{train/good, test/{good,<d>}, ground_truth/<d>/<stem>/}``.

MVTec AD's tree except for the masks: each anomalous image ``test/<d>/<stem>.png`` has a folder
``ground_truth/<d>/<stem>/`` holding its mask ``0000.png`` (the file anomalib reads). Should such a folder hold
further masks, only ``0000`` is used and the others are reported, since a manifest row has one mask.
"""

from __future__ import annotations

from pathlib import Path

from anoseg.data.layouts.base import (
    DEFECT,
    GOOD,
    TEST_GOOD,
    TRAIN_GOOD,
    CategoryScan,
    CategoryTree,
    good_folder,
    list_dirs,
    list_images,
)

GROUND_TRUTH = "ground_truth"
MASK_STEM = "0000"


class AutoVI(CategoryTree):
    """Reader of the AutoVI tree (anomalib's ``AutoVI``)."""

    name = "autovi"

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "autovi")
        base = self.root / category
        good_folder(scan, TRAIN_GOOD, base / "train" / GOOD)
        good_folder(scan, TEST_GOOD, base / "test" / GOOD)
        for defect in sorted((set(list_dirs(base / "test")) | set(list_dirs(base / GROUND_TRUTH))) - {GOOD}):
            self._defect(scan, defect, base / "test" / defect, base / GROUND_TRUTH / defect)
        return scan

    def _defect(self, scan: CategoryScan, defect: str, image_dir: Path, mask_root: Path) -> None:
        images = list_images(image_dir, scan)
        mask_dirs = set(list_dirs(mask_root))
        if not images:
            kind = "masks_without_defect" if mask_dirs else "empty_defect"
            scan.issue(kind, image_dir, f"no images in {image_dir} ({len(mask_dirs)} mask folder(s) in {mask_root})")
            return
        if not mask_dirs:
            scan.issue("defect_without_masks", mask_root, f"{len(images)} image(s) in {image_dir} but no mask "
                                                          f"folders in {mask_root}")
            scan.add_folder(defect, DEFECT, image_dir, images, {})
            return
        pairs: dict[Path, Path | None] = {}
        for image in images:
            masks = list_images(mask_root / image.stem, scan)
            first = [m for m in masks if m.stem == MASK_STEM]
            if not first:
                scan.issue("image_without_mask", image, f"no mask for {image} (looked for "
                                                        f"{mask_root / image.stem / MASK_STEM}.*)")
                continue
            pairs[image] = first[0]
            if len(masks) > 1:
                scan.issue("extra_masks", mask_root / image.stem, f"{mask_root / image.stem} holds {len(masks)} "
                                                                  f"masks: only {first[0].name} is used")
        for stem in sorted(mask_dirs - {p.stem for p in images}):
            scan.issue("mask_without_image", mask_root / stem, f"mask folder without image: {mask_root / stem}")
        scan.add_folder(defect, DEFECT, image_dir, images, pairs)
