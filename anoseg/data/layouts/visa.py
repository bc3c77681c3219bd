"""VisA: the original archive with ``split_csv`` or the VisA_type defect folders (docs/datasets.md)."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from anoseg.data.layouts.base import DEFECT, GOOD, TEST_GOOD, TRAIN_GOOD, CategoryScan, Layout, list_dirs
from anoseg.data.layouts.mvtec import MVTecAD
from anoseg.errors import AnosegError
from anoseg.io import NAME_ERRORS

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


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV file as stripped strings; unreadable or lacking a ``required`` column → ``AnosegError``."""
    try:
        # a name of another locale reads as the file name it stands for (anoseg.io.NAME_ERRORS)
        with open(path, newline="", encoding="utf-8-sig", errors=NAME_ERRORS) as handle:
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
        self.rows = read_csv(self.root / VISA_SPLIT_CSV, _VISA_COLUMNS)

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
        for row in read_csv(path, ("image", "label")):
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




def open_visa(root: Path) -> Layout:
    """The original VisA archive (``split_csv/1cls.csv``) or, without it, the VisA_type tree."""
    if (root / VISA_SPLIT_CSV).is_file():
        return VisASplitCSV(root)
    if any((root / c / "Data" / "Images").is_dir() for c in list_dirs(root)):
        raise AnosegError(f"{root} looks like the original VisA archive (<category>/Data/Images) but "
                          f"{root / VISA_SPLIT_CSV} is missing")
    return MVTecAD(root, variant="visa_type")
