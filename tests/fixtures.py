"""Helpers shared by the tests that feed anoseg bad input: a sandbox copy of a tiny pipeline, a snapshot of output
trees, and the CLI's one-line refusal. (pytest fixtures themselves live in the conftest.py files.)"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file's md5, every folder and every link below ``roots``: equal snapshots mean nothing was written,
    removed or left behind (a staging folder left over shows as a new entry)."""
    entries = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_symlink():
                entries[str(path)] = "link"
            elif path.is_file():
                entries[str(path)] = hashlib.md5(path.read_bytes()).hexdigest()
            else:
                entries[str(path)] = "folder"
    return entries


def sandbox(pipeline: Any, tmp_path: Path) -> dict[str, str]:
    """A private copy of ``pipeline``'s outputs (``out``) and recipe (``recipe``), an empty ``tmp`` folder and the
    shared ``data``: the names a test's command templates use (``"{out}/demo"``)."""
    out, recipe, scratch = tmp_path / "out", tmp_path / "demo.yaml", tmp_path / "scratch"
    shutil.copytree(pipeline.out, out, symlinks=True)
    shutil.copy(pipeline.recipe, recipe)
    scratch.mkdir()
    return {"out": str(out), "recipe": str(recipe), "data": str(pipeline.data), "tmp": str(scratch)}
