"""Atomic file writes: a reader never sees a half-written file, and an interrupted write leaves the old one intact.

Files get the permissions ``open()`` would give them (``0o666`` minus the user's umask), not the ``0o600`` of the
temporary file they are written through.

Outputs the user cannot write (a read-only or immutable file or folder, a file where a folder must go, a folder where
a file must go) are ``AnosegError``s naming the path: ``check_output`` finds them before a command starts its work,
and every write here turns the ``OSError`` of creating or replacing an output into the same sentence
(``output_error``). Files anoseg wrote and reads back (reports, thresholds, sidecars) are read with ``read_json``,
which names the file and the command that rewrites it when one is damaged.

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
import sys
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
    make_folder(path.parent)
    try:
        # keep the real suffix: numpy appends ".npz" otherwise, and PIL picks the format from it
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path.parent, inside=True) from None
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
        try:
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0o600; the result must look like any new file
            os.replace(tmp, path)
        except OSError as exc:
            raise output_error(exc, path) from None
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


# ---- outputs the user cannot write ----------------------------------------------------------------------------------

_WRITABLE_HINT = "choose another output location or make it writable"
_FS_IOC_GETFLAGS = 0x80086601  # Linux ioctl: the inode flags that `lsattr` shows
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20  # chattr +i, chattr +a


def output_error(exc: OSError, path: str | Path, inside: bool = False) -> AnosegError:
    """The ``AnosegError`` for an ``OSError`` met while creating or replacing the output ``path`` (``inside``: while
    creating a file in the folder ``path``): one sentence naming what is in the way (a file where a folder must go, a
    folder where a file must go) or what cannot be written (permissions, an immutable file or folder, a read-only
    file system, a full disk). The sentence names ``path``, never the temporary file the error may be about."""
    path = Path(path)
    code = exc.errno
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOTEMPTY):
        blocker = _file_in_the_way(path)
        if blocker is not None:
            return AnosegError(f"cannot write {path}: {blocker} is a file, not a folder; remove it or choose "
                               "another output")
        if path.is_dir() and code in (errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY):
            return AnosegError(f"cannot write {path}: it is a folder, not a file; remove it or choose another output")
    where = f"in {path}" if inside else str(path)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "read-only file system" if code == errno.EROFS else (
            f"{exc.strerror.lower() if exc.strerror else 'not permitted'} (read-only or immutable)")
        return AnosegError(f"cannot write {where}: {why}; {_WRITABLE_HINT}")
    if code == errno.ENOSPC:
        return AnosegError(f"cannot write {where}: no space left on the device")
    return AnosegError(f"cannot write {where}: {exc.strerror or exc}")


def _file_in_the_way(path: Path) -> Path | None:
    """The deepest existing ancestor of ``path`` (or ``path``'s parent chain) that is a file, not a folder."""
    for ancestor in path.parents:
        if os.path.lexists(ancestor):
            return ancestor if not ancestor.is_dir() else None
    return None


def make_folder(folder: str | Path) -> Path:
    """``mkdir -p`` for an output folder; a file in the way or an unwritable parent is an ``AnosegError``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if os.path.lexists(folder) and not folder.is_dir():
            raise AnosegError(f"cannot write {folder}: it is a file, not a folder; remove it or choose another "
                              "output") from None
        raise output_error(exc, exc.filename or folder) from None  # the folder that could not be created
    return folder


def check_output(path: str | Path, *, folder: bool = False, replace: bool = True) -> None:
    """Refuse, before any work, an output that cannot be written: raise ``AnosegError`` naming the path.

    ``path`` is a file (``folder=False``) or a folder (``folder=True``) that a command will create or replace. Checked:
    no file in the way among its parents, ``path`` itself is not of the other kind, a file can be created where it
    goes, and an existing ``path`` is not immutable or append-only (``chattr +i``/``+a``). ``replace``: the folder is
    replaced as a whole by a rename (a result folder), so the probe goes beside it; else files are written inside it.
    Creates nothing that stays. Permission bits are not asked (``os.access`` says yes to root, whom an immutable or
    read-only mount still stops): a probe file is created and removed.
    """
    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise AnosegError(f"cannot write {path}: {blocker} is a file, not a folder; remove it or choose another "
                          "output")
    exists = os.path.lexists(path)
    if exists and folder and not path.is_dir():
        raise AnosegError(f"cannot write {path}: it is a file, not a folder; remove it or choose another output")
    if exists and not folder and path.is_dir():
        raise AnosegError(f"cannot write {path}: it is a folder, not a file; remove it or choose another output")
    if exists and _immutable(path):
        raise AnosegError(f"cannot write {path}: it is immutable or append-only (chattr +i/+a; see lsattr); "
                          f"{_WRITABLE_HINT}")
    probe = path if exists and folder and not replace else path.parent
    while not os.path.lexists(probe):
        probe = probe.parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise output_error(exc, probe, inside=True) from None


def check_removable(folder: str | Path) -> None:
    """Refuse, before any work, a folder that a command will delete to replace it (an older result, ``--overwrite``,
    ``--fresh``) when part of it cannot be deleted: an immutable or append-only entry, or a subfolder in which nothing
    can be created or removed. ``AnosegError`` naming the entry; nothing is changed."""
    for root, folders, files in os.walk(folder):
        for name in (*folders, *files):
            entry = Path(root) / name
            if _immutable(entry):
                raise AnosegError(f"cannot replace {folder}: {entry} is immutable or append-only (chattr +i/+a; see "
                                  f"lsattr); {_WRITABLE_HINT}")
        try:
            with tempfile.TemporaryFile(dir=root):
                pass
        except OSError as exc:
            raise output_error(exc, Path(root), inside=True) from None


def _immutable(path: Path) -> bool:
    """True when ``path`` carries the immutable or append-only inode flag; False where flags cannot be read."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        buffer = bytearray(8)
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buffer, True)
    except OSError:  # the file system keeps no such flags
        return False
    finally:
        os.close(fd)
    return bool(int.from_bytes(buffer[:4], sys.byteorder) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL))


# ---- files anoseg wrote, read back ----------------------------------------------------------------------------------

def read_json(path: str | Path, rerun: str, check: Callable[[Any], None] | None = None) -> Any:
    """Read a JSON file that anoseg wrote; a damaged one is an ``AnosegError`` naming it and what rewrites it.

    ``rerun`` completes the sentence, e.g. ``"run `anoseg prepare` again"``. ``check(document)`` validates the
    content and raises ``ValueError``, ``TypeError`` or ``KeyError`` with the reason (a missing key, a wrong type).
    A missing file raises ``FileNotFoundError`` (callers decide what absence means).
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError: truncated, edited
        raise damaged(path, f"not readable JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                      rerun) from None
    if check is not None:
        try:
            check(document)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            reason = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
            raise damaged(path, reason or type(exc).__name__, rerun) from None
    return document


def damaged(path: str | Path, reason: str, rerun: str) -> AnosegError:
    """The one sentence for a damaged file of anoseg's own: ``<path> is damaged (<reason>); <rerun>``."""
    return AnosegError(f"{path} is damaged ({reason}); {rerun}")


def expect(condition: bool, reason: str) -> None:
    """For ``read_json`` checks: raise ``ValueError(reason)`` unless ``condition``."""
    if not condition:
        raise ValueError(reason)


def is_number(value: Any, low: float = float("-inf"), high: float = float("inf")) -> bool:
    """A finite JSON number (not a bool) within [low, high]."""
    return (isinstance(value, int | float) and not isinstance(value, bool) and value == value
            and low <= value <= high and abs(value) != float("inf"))
