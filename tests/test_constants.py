"""One home per name: the vocabulary lives in anoseg/constants.py, and the code spells none of it a second time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import anoseg
from anoseg import constants

PACKAGE = Path(anoseg.__file__).parent
# Names that must be written once: schema identifiers, output file names, task and protocol names.
ONCE = {
    value: name
    for name, value in vars(constants).items()
    if name.endswith(("_SCHEMA", "_FORMAT", "_FILE")) or name in ("ANOMALY", "ROAD", "SCENE", "CLEAN", "LFD_COMPAT")
}

# The same word meaning something else: "road" is also a class of the KITTI / Cityscapes / CamVid label sets;
# Lightning's CSVLogger names its own file metrics.csv (the training curves), not anoseg's eval table.
OTHER_MEANING = {("data/scenes/labels.py", "road"), ("engine/curves.py", "metrics.csv")}


def _literals(tree: ast.AST) -> list[ast.Constant]:
    """String literals of a module, docstrings left out (they may name a file in prose)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]


def test_constants_import_nothing() -> None:
    tree = ast.parse((PACKAGE / "constants.py").read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in imports] == ["from __future__ import annotations"]


def test_the_checked_vocabulary_is_what_it_should_be() -> None:
    assert ONCE["anoseg.metrics/1"] == "METRICS_SCHEMA" and ONCE["metrics.json"] == "METRICS_FILE"
    assert ONCE["lfd-compat"] == "LFD_COMPAT" and ONCE["anomaly"] == "ANOMALY" and len(ONCE) == 20


@pytest.mark.parametrize("path", sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                                        if p.name != "constants.py"))
def test_no_module_spells_a_constant_again(path: str) -> None:
    tree = ast.parse((PACKAGE / path).read_text(encoding="utf-8"))
    again = sorted({f"{n.value!r} (line {n.lineno}: use constants.{ONCE[n.value]})" for n in _literals(tree)
                    if n.value in ONCE and (path, n.value) not in OTHER_MEANING})
    assert not again, f"{path} spells {', '.join(again)}"


def test_registries_use_the_vocabulary() -> None:
    from anoseg.data.generators import METHODS
    from anoseg.report.tables import TASK_SPECS

    assert tuple(METHODS) == constants.GENERATION_METHODS
    assert tuple(TASK_SPECS) == constants.TASKS
    assert constants.PIXEL_AUPRO in TASK_SPECS[constants.ANOMALY].optional
