"""MVTec AD and look-alikes (VisA_type, SeaS-reorganised MVTec 3D AD, MPDD); MVTec 3D AD (docs/datasets.md)."""

from __future__ import annotations

from pathlib import Path

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


def mvtec_categories(root: Path) -> list[str]:
    """Sorted category folders of an MVTec-style root: those holding train/, test/ or ground_truth/."""
    return CategoryTree(root).categories()


class MVTecAD(CategoryTree):
    """``<cat>/{train/good, test/<d>, ground_truth/<d>}``; masks ``NNN_mask`` (MVTec AD) or ``NNN`` (VisA_type)."""

    name = "mvtec_ad"

    def __init__(self, root: Path, variant: str = "mvtec_ad") -> None:
        super().__init__(root)
        self.variant = variant

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, self.variant)
        base = self.root / category
        good_folder(scan, TRAIN_GOOD, base / "train" / GOOD)
        good_folder(scan, TEST_GOOD, base / "test" / GOOD, base / "ground_truth" / GOOD)  # its masks must be empty
        test_types = list_dirs(base / "test")
        mask_types = list_dirs(base / "ground_truth")
        if GOOD in mask_types:
            scan.issue("ground_truth_good", base / "ground_truth" / GOOD,
                       f"ignored {base / 'ground_truth' / GOOD}: 'good' is never a defect type")
        for defect in sorted((set(test_types) | set(mask_types)) - {GOOD}):
            defect_folder(scan, defect, DEFECT, base / "test" / defect, base / "ground_truth" / defect)
        return scan


class MVTec3DAD(CategoryTree):
    """Original ``<cat>/{train/good/rgb, test/<d>/{rgb, gt}}`` or, detected per category by the absence of ``rgb/``
    folders, the SeaS-reorganised copy read like MVTec AD with same-name masks (§6 #30). ``validation/`` and ``xyz/``
    are not used."""

    name = "mvtec_3d_ad"

    def is_original(self, category: str) -> bool:
        base = self.root / category
        return (base / "train" / GOOD / "rgb").is_dir() or any(
            (base / "test" / d / "rgb").is_dir() for d in list_dirs(base / "test"))

    def scan(self, category: str) -> CategoryScan:
        if not self.is_original(category):
            return MVTecAD(self.root, variant="mvtec_3d_ad_reorg").scan(category)
        scan = CategoryScan(category, "mvtec_3d_ad")
        base = self.root / category
        good_folder(scan, TRAIN_GOOD, base / "train" / GOOD / "rgb")
        good_folder(scan, TEST_GOOD, base / "test" / GOOD / "rgb", base / "test" / GOOD / "gt")  # all-zero masks
        if (base / "validation").is_dir():
            scan.issue("validation_ignored", base / "validation", f"not used by the protocol: {base / 'validation'}")
        for defect in list_dirs(base / "test"):
            if defect != GOOD:
                defect_folder(scan, defect, DEFECT, base / "test" / defect / "rgb", base / "test" / defect / "gt")
        return scan




class MPDD(MVTecAD):
    """MPDD (metal parts): MVTec AD's tree and mask names (``ground_truth/<d>/NNN_mask.png``), so MVTec AD's reader;
    its own name so that the data report and recipes say which dataset it is."""

    name = "mpdd"

    def __init__(self, root: Path) -> None:
        super().__init__(root, variant="mpdd")
