"""The run folder's safety rules for ``anoseg train``: one writer at a time, nothing destroyed before its replacement
exists, resume only with the run's own settings.

    <run>/                      the run (checkpoints/, last.pt, train_history.json, and eval's outputs)
    <run parent>/.<name>.lock   held by the training process; holds its pid (removed when it ends)
    <run parent>/.<name>.old    the previous run while ``--fresh`` trains its replacement

``--fresh`` moves the old run aside and trains into an empty folder; the old run is deleted once the new one has
saved its first epoch, and moved back if the new one fails (or is interrupted) before that. A crash in between is
repaired by the next ``train`` of the same run.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anoseg.errors import AnosegError
from anoseg.io import make_folder
from anoseg.recipes import TrainSettings

# Recipe settings that do not change the trained weights; a resumed run may change them.
FREE_SETTINGS = ("epochs", "workers", "checkpoint_every", "eval_epoch")
_TRAIN_DEFAULTS = json.loads(json.dumps(dataclasses.asdict(TrainSettings()), default=str))


def lock_path(run: Path) -> Path:
    """The lock file of a run folder (beside it, so that it outlives moving the run aside)."""
    return run.parent / f".{run.name}.lock"


def aside_path(run: Path) -> Path:
    """Where ``--fresh`` keeps the previous run until the new one has saved its first epoch."""
    return run.parent / f".{run.name}.old"


def is_worker_process() -> bool:
    """True in the DDP processes that Lightning's launcher starts (LOCAL_RANK > 0): rank 0 alone manages the folder."""
    return os.environ.get("LOCAL_RANK", "0") != "0"


@contextmanager
def run_lock(run: Path) -> Iterator[None]:
    """Hold the run folder's lock for the block; a second writer gets an ``AnosegError`` naming the holder's pid.

    The lock is an ``flock`` on ``.<name>.lock`` (released by the kernel if the process dies); the file is removed
    when the block ends. Folders created only to hold the lock are removed again if they stay empty.
    """
    created = _make_parents(run.parent)
    try:
        fd = _acquire(lock_path(run), run)
        try:
            yield
        finally:
            lock_path(run).unlink(missing_ok=True)
            os.close(fd)
    finally:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: the run is in it


def _acquire(path: Path, run: Path) -> int:
    import fcntl

    try:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise AnosegError(f"{run} is being written by another anoseg process (pid {holder}); wait for it to "
                                  f"end, or stop it") from None
            # the holder before us may have removed the file after we opened it: we must lock the file that is there
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)
    except OSError as exc:
        raise AnosegError(f"cannot write in {path.parent}: {exc.strerror}; choose a writable --output") from None


def _make_parents(folder: Path) -> list[Path]:
    """``mkdir -p`` that returns the folders it created, deepest first."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    make_folder(folder)
    return missing


def check_writable(folder: Path) -> None:
    """Write and remove a probe file in ``folder`` (an existing folder), so that an unwritable output is found before
    the first epoch, not after it. Root ignores permission bits, so the probe writes instead of asking ``os.access``."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise AnosegError(f"cannot write in {folder}: {exc.strerror or exc}; choose a writable --output") from None


def remove_stale_temp_files(run: Path) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in the run (``.<stem>.*.tmp*``, see
    anoseg/io.py). Only called while holding the run's lock, so no live writer owns them."""
    if not run.is_dir():
        return []
    stale = [p for p in run.rglob(".*.tmp*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def recover_replaced_run(run: Path, last: str) -> str | None:
    """Finish what a crashed ``--fresh`` left: the old run moved aside. Returns a note for the user, or None."""
    old = aside_path(run)
    if not old.exists():
        return None
    if (run / last).is_file():  # the new run had saved an epoch: it replaced the old one
        shutil.rmtree(old)
        return None
    if run.exists():
        shutil.rmtree(run)
    os.replace(old, run)
    return f"restored {run} that an interrupted --fresh had moved aside"


@dataclass
class FreshSwap:
    """The old run moved aside while a ``--fresh`` run trains; ``commit`` after the first saved epoch, ``rollback``
    on failure."""

    run: Path
    active: bool = False

    def begin(self) -> None:
        """Move the old run aside (one rename) and start from an empty run folder."""
        if self.run.exists():
            try:
                os.replace(self.run, aside_path(self.run))
            except OSError as exc:
                raise AnosegError(f"cannot move {self.run} aside for --fresh: {exc.strerror}") from None
            self.active = True

    def commit(self) -> None:
        """The new run has a checkpoint: delete the old one."""
        if self.active:
            shutil.rmtree(aside_path(self.run), ignore_errors=True)
            self.active = False

    def rollback(self) -> bool:
        """Put the old run back (the new one has no checkpoint); True if there was one."""
        if not self.active:
            return False
        shutil.rmtree(self.run, ignore_errors=True)
        os.replace(aside_path(self.run), self.run)
        self.active = False
        return True


@dataclass
class ResumePlan:
    """What ``--resume`` continues: the epoch to start at, the target epoch count, and a changed epoch count."""

    start_epoch: int
    epochs: int
    extended_from: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def plan_resume(previous: dict[str, Any], settings: dict[str, Any], epochs: int | None, last: Path) -> ResumePlan:
    """Check a resumed run against its stored settings and decide its epoch count.

    ``settings`` are the current ones, in the form of the checkpoint's ``meta`` (``_meta`` of train.py). Any
    difference other than the epoch count is refused with the list of differences; ``epochs`` (the command's
    ``--epochs``, None = keep the run's) may only extend the run.
    """
    stored_meta = previous["meta"]
    train = stored_meta.get("train")
    if not (isinstance(train, dict) and isinstance(train.get("epochs"), int)
            and isinstance(previous.get("history"), list)):
        raise AnosegError(f"--resume: {last} lacks what a resume needs (the history and the training settings that "
                          "`anoseg train` saves in last.pt); start a new run with --fresh")
    stored_epochs = int(train["epochs"])
    changed = [f"{name} {old} → {new}" for name, old, new in _differences(stored_meta, settings)]
    if changed:
        raise AnosegError(f"--resume continues {last} with its own settings; these differ: {'; '.join(changed)} "
                          "(drop them, or start a new run with --fresh)")
    target = stored_epochs if epochs is None else epochs
    done = int(previous["epoch"])
    if target < stored_epochs:
        raise AnosegError(f"--resume --epochs {target}: the run was started for {stored_epochs} epochs; --epochs can "
                          "only extend it")
    if done >= target:
        raise AnosegError(f"--resume: {last.parent} already finished {done} of {target} epochs; pass --epochs N "
                          f"(N > {done}) to extend it")
    return ResumePlan(done, target, stored_epochs if target != stored_epochs else None, list(previous["history"]))


def _differences(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    # backbone_weights is not compared: a resumed run's weights come from its checkpoint, whatever is asked
    # the train data too (n_train_images, train_data_sha256): `prepare` re-run on a changed dataset is another run
    keys = ["dataset", "generator", "image_size", "mean", "std", "protocol", "seed", "precision", "paper_numerics",
            "devices", "trained_on", "n_train_images", "train_data_sha256"]
    out = [(k, _short(stored[k]), _short(current[k])) for k in keys if k in stored and k in current
           and _norm(stored[k]) != _norm(current[k])]
    old_train, new_train = stored.get("train", {}), current.get("train", {})
    for key in sorted(set(old_train) | set(new_train)):
        # a setting added since the run was saved counts as its default (the run trained without it)
        old = old_train.get(key, _TRAIN_DEFAULTS.get(key))
        if key not in FREE_SETTINGS and _norm(old) != _norm(new_train.get(key)):
            out.append((key, old, new_train.get(key)))
    return out


def _short(value: Any) -> Any:
    return value[:12] if isinstance(value, str) and len(value) == 64 else value  # a digest: its first 12 digits


def _norm(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def describe_os_error(exc: OSError, where: Path) -> str:
    """One line for an OSError met while writing a run (disk full, permissions)."""
    reason = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return f"cannot write in {where}: {reason}"
