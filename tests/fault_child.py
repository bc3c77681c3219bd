"""Runs the ``anoseg`` CLI with one function hooked, for tests/test_faults.py: a deterministic fault point.

``ANOSEG_TEST_FAULT=ACTION:MODULE:ATTR:N`` replaces ``MODULE.ATTR`` (``ATTR`` may be ``Class.method``) by a wrapper
that, at its ``N``-th call and before calling it, SIGKILLs this process (``kill``) or touches ``$FAULT_READY`` and
waits until ``$FAULT_GO`` exists (``pause``). Not part of anoseg: only the tests start it.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from pathlib import Path


def hook(spec: str) -> None:
    action, module, attr, nth = spec.split(":")
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original, calls = getattr(owner, name), [0]

    def hooked(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(nth):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            Path(os.environ["FAULT_READY"]).touch()
            while not Path(os.environ["FAULT_GO"]).exists():
                time.sleep(0.05)
        return original(*args, **kwargs)

    setattr(owner, name, hooked)


if __name__ == "__main__":
    hook(os.environ["ANOSEG_TEST_FAULT"])
    from anoseg.cli import main

    main(sys.argv[1:], prog_name="anoseg")
