"""Atomic writes honour the user's umask (mkstemp alone would leave every output 0o600)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from anoseg.io import atomic_open, current_umask, write_json, write_with


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one."""
    saved = os.umask(0o022)
    os.umask(saved)

    def use(mask: int) -> None:
        os.umask(mask)

    yield use
    os.umask(saved)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_get_the_umask_permissions(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_open(tmp_path / "b.csv", "w") as handle:
        handle.write("a,b\n")
    write_with(tmp_path / "c.npy", lambda tmp: np.save(tmp, np.zeros(2)))
    for name in ("a.json", "b.csv", "c.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives: the reference the atomic writer must match
    assert stat.S_IMODE(plain.stat().st_mode) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.csv", "c.npy", "plain.txt"]
