"""Dataset layouts: one reader per on-disk layout, turning folders into the samples of a category (docs/datasets.md).

Every fact about how a dataset is stored lives in this package, one module per dataset family: folder names, mask
names, which variant a tree is. ``base`` holds what every reader shares (records, listing, stem pairing, the rules
they all follow); ``anoseg.data.validation`` decides what is fatal, ``anoseg.data.split`` applies the 1/3 rule.

Adding a layout = one class with ``name``, ``root``, ``categories()`` and ``scan(category)`` in its own module, an
entry in ``LAYOUTS``, a recipe with its category list and a fixture test that mimics the real tree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from anoseg.data.layouts.autovi import AutoVI
from anoseg.data.layouts.base import (
    DEFECT,
    GENERATED,
    GOOD,
    MASK_SUFFIX,
    TEST_GOOD,
    TRAIN_GOOD,
    CategoryScan,
    Folder,
    Issue,
    Layout,
    Sample,
    defect_folder,
    good_folder,
    is_mask_file,
    is_mask_folder,
    list_dirs,
    list_images,
    pair_by_stem,
)
from anoseg.data.layouts.bmad import BMAD
from anoseg.data.layouts.btad import BTAD
from anoseg.data.layouts.folder import FolderLayout
from anoseg.data.layouts.generated import Generated, resolve_generated_root
from anoseg.data.layouts.kolektorsdd import KolektorSDD
from anoseg.data.layouts.ksdd2 import KolektorSDD2
from anoseg.data.layouts.mvtec import MPDD, MVTec3DAD, MVTecAD, mvtec_categories
from anoseg.data.layouts.mvtec_ad_2 import MVTecAD2
from anoseg.data.layouts.visa import (
    VISA_FALLBACK_DEFECT,
    VISA_SPLIT_CSV,
    VisASplitCSV,
    open_visa,
    read_csv,
    visa_defect_name,
)
from anoseg.errors import AnosegError

__all__ = [
    "BMAD",
    "BTAD",
    "DEFECT",
    "GENERATED",
    "GOOD",
    "LAYOUTS",
    "MASK_SUFFIX",
    "MPDD",
    "TEST_GOOD",
    "TRAIN_GOOD",
    "VISA_FALLBACK_DEFECT",
    "VISA_SPLIT_CSV",
    "AutoVI",
    "CategoryScan",
    "Folder",
    "FolderLayout",
    "Generated",
    "Issue",
    "KolektorSDD",
    "KolektorSDD2",
    "Layout",
    "MVTec3DAD",
    "MVTecAD",
    "MVTecAD2",
    "Sample",
    "VisASplitCSV",
    "defect_folder",
    "good_folder",
    "is_mask_file",
    "is_mask_folder",
    "list_dirs",
    "list_images",
    "mvtec_categories",
    "open_layout",
    "open_visa",
    "pair_by_stem",
    "read_csv",
    "resolve_generated_root",
    "visa_defect_name",
]

#: layout name → reader factory (auto-detecting variants). The road/scene layouts live in ``anoseg.data.scenes``.
LAYOUTS: dict[str, Callable[[Path], Layout]] = {
    "mvtec_ad": MVTecAD,
    "visa": open_visa,
    "mvtec_3d_ad": MVTec3DAD,
    "mvtec_ad_2": MVTecAD2,
    "mpdd": MPDD,
    "btad": BTAD,
    "ksdd2": KolektorSDD2,
    "kolektorsdd": KolektorSDD,
    "autovi": AutoVI,
    "bmad": BMAD,
    "folder": FolderLayout,
}


def open_layout(layout: str, root: str | Path) -> Layout:
    """The reader for ``layout`` at ``root`` (the VisA and MVTec 3D variants are detected from the files).

    Raises ``AnosegError`` for an unknown layout or a missing root. Example:
        >>> reader = open_layout("mvtec_ad", "data/demo/mvtec")  # doctest: +SKIP
        >>> reader.categories()  # doctest: +SKIP
        ['disk', 'mesh', 'weave']
    """
    if layout not in LAYOUTS:
        raise AnosegError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise AnosegError(f"data root not found: {root}")
    return LAYOUTS[layout](root)
