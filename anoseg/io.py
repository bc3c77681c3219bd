"""Atomic file writes: a reader never sees a half-written file, and an interrupted write leaves the old one intact.

Files get the permissions ``open()`` would give them (``0o666`` minus the user's umask), not the ``0o600`` of the
temporary file they are written through.

A write that does not fit (a full disk or quota: ``ENOSPC``/``EDQUOT``; a file past the size limit of ``ulimit -f``:
``EFBIG``) is an ``AnosegError`` naming the file (``no_room``), and the file it would have replaced is kept. Some
writers do not report a short write (PIL's JPEG encoder writes in one call and ignores its count), so a finished
write is checked too: a file that reached the size limit, or a disk left with no free block, is refused.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from anoseg.errors import AnosegError

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
        try:
            yield tmp
        except Exception as exc:
            full = no_room(path, exc, tmp)
            if full is None:
                raise
            raise full from None
        full = no_room(path, None, tmp)  # a writer that ignored a short write left a truncated file
        if full is not None:
            raise full
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0o600; the result must look like any new file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: The errors of a write that does not fit, and how the one line says each.
NO_ROOM = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
           errno.EFBIG: "file too large (past the file size limit, ulimit -f)"}


def no_room(path: str | Path, exc: BaseException | None = None, written: Path | None = None) -> AnosegError | None:
    """The ``AnosegError`` for writing ``path`` when the data did not fit, else None.

    ``exc`` is the error the write raised (None: it raised none); it did not fit if it is an ``OSError`` of
    ``NO_ROOM``, or if ``written`` (the file being written) reached the process's file size limit, or if the disk holds
    no free block. The sentence says that nothing was replaced.
    """
    if isinstance(exc, AnosegError):  # a nested atomic write already said it
        return exc if str(exc).startswith(tuple(NO_ROOM.values())) else None
    code = exc.errno if isinstance(exc, OSError) and exc.errno in NO_ROOM else None
    if code is None and written is not None:
        code = _full(written)
    if code is None:
        return None
    return AnosegError(f"{NO_ROOM[code]} writing {public_path(path)}; nothing was replaced (free some space, then "
                       "run the command again)")


# the hidden names a write goes through: atomic_path's ".<stem>.<random>.tmp<suffix>" and the staging folders of
# anoseg.engine.results (".<name>.partial-<random>")
_HIDDEN = re.compile(r"\.(?P<stem>.+)\.[A-Za-z0-9_]+\.tmp(?P<suffix>.*)|\.(?P<name>.+)\.partial-[A-Za-z0-9_]+")


def public_path(path: str | Path) -> Path:
    """``path`` with the hidden names it is written through replaced by the names the user will see.

    Example:
        >>> str(public_path("out/eval/.epoch_001.partial-2x3vx4_i/.metrics.k2j3_x9a.tmp.json"))
        'out/eval/epoch_001/metrics.json'
    """
    parts = []
    for part in Path(path).parts:
        hidden = _HIDDEN.fullmatch(part)
        if hidden is None:
            parts.append(part)
        else:
            parts.append(hidden["name"] or hidden["stem"] + hidden["suffix"])
    return Path(*parts) if parts else Path(path)


def _full(written: Path) -> int | None:
    import resource

    try:
        size = written.stat().st_size
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and size >= limit:
            return errno.EFBIG
        disk = os.statvfs(written.parent)
    except OSError:
        return None
    free = disk.f_bfree if os.geteuid() == 0 else disk.f_bavail  # root may fill the reserved blocks too
    return errno.ENOSPC if free == 0 else None


def leftover_temp_files(path: str | Path) -> list[Path]:
    """The temporary files beside ``path`` that killed atomic writes of it left (``atomic_path``'s names). Only for
    a caller holding the lock of ``path``'s folder, so that no live writer owns them."""
    path = Path(path)
    # "..<stem>.*": the temporary file of a write into a temporary file (a writer that is itself atomic)
    return sorted(p for dots in (".", "..") for p in path.parent.glob(f"{dots}{path.stem}.*.tmp{path.suffix}")
                  if p.is_file())


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
