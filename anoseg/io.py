"""Atomic file writes: a reader never sees a half-written file, and an interrupted write leaves the old one intact.

Files get the permissions ``open()`` would give them (``0o666`` minus the user's umask), not the ``0o600`` of the
temporary file they are written through.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: How anoseg writes and reads text files that carry file names (manifest, predictions.csv, reports): UTF-8, with a
#: name that is not valid UTF-8 (bytes of another locale, which Python decodes to lone surrogates: ``os.fsdecode``)
#: written as its own bytes, so that it reads back identical and still opens the file (docs/schemas.md).
TEXT_ENCODING, NAME_ERRORS = "utf-8", "surrogateescape"


def name_bytes(text: str) -> bytes:
    """``text`` (a file name or anything holding one) as bytes: UTF-8, undecodable name bytes as they were.

    Example:
        >>> name_bytes(os.fsdecode(b"bad\\xff.png"))
        b'bad\\xff.png'
    """
    return text.encode(TEXT_ENCODING, NAME_ERRORS)


def drawable(text: str) -> str:
    """``text`` with the bytes of an undecodable name shown as ``\\xNN`` escapes: for figures, whose fonts can only
    draw valid text.

    Example:
        >>> drawable(os.fsdecode(b"caf\\xe9"))
        'caf\\\\xe9'
    """
    return name_bytes(text).decode(TEXT_ENCODING, "backslashreplace")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, on error it vanishes.

    Example:
        >>> with atomic_path("out/model.pt") as tmp:  # doctest: +SKIP
        ...     torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix: numpy appends ".npz" otherwise, and PIL picks the format from it
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0o600; the result must look like any new file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's file-creation mask (e.g. ``0o022``), read without changing it for other threads.

    Linux reports it in ``/proc/self/status``; elsewhere it is read by setting and restoring it under a lock.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing, atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically. NaN is written as ``null``."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(_nan_to_none(obj), handle, indent=2, allow_nan=False)
        handle.write("\n")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically (for torch.save, np.savez, PIL …)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj
