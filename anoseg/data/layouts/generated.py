"""Generated pairs: ``<root>/<category>/<defect>/{image,mask}/NNN.png`` (SeaS and other generators, §1.4)."""

from __future__ import annotations

from pathlib import Path

from anoseg.data.layouts.base import GENERATED, GOOD, CategoryScan, defect_folder, list_dirs


class Generated:
    """``<root>/<category>/<defect>/{image,mask}/NNN.png`` (SeaS and the other generators, §1.4)."""

    name = "generated"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def categories(self) -> list[str]:
        return list_dirs(self.root)

    def scan(self, category: str) -> CategoryScan:
        scan = CategoryScan(category, "generated")
        base = self.root / category
        if not base.is_dir():
            scan.issue("generated_category_missing", base, f"no generated pairs for {category!r}: {base} not found")
            return scan
        defects = list_dirs(base)
        if GOOD in defects:
            scan.issue("generated_good_ignored", base / GOOD, f"ignored {base / GOOD}: 'good' is never a defect type")
        defects = [d for d in defects if d != GOOD]
        if not defects:
            scan.issue("generated_category_missing", base, f"no generated defect folders in {base}")
        for defect in defects:
            defect_folder(scan, defect, GENERATED, base / defect / "image", base / defect / "mask")
        return scan


def resolve_generated_root(root: Path, generator: str, categories: list[str]) -> Path:
    """The folder that holds ``<category>/<defect>/{image,mask}``: ``root`` itself or, when ``root`` is the parent of
    several generators (``<root>/<generator>/<category>/…``), ``root/<generator>``.

    Example:
        >>> resolve_generated_root(Path("data/demo/generated"), "seas", ["disk"])  # doctest: +SKIP
        PosixPath('data/demo/generated/seas')
    """
    nested = root / generator
    if nested.is_dir() and not any((root / c).is_dir() for c in categories):
        return nested
    return root
