"""Console output shared by every stage: rich consoles on stdout/stderr and warnings said once."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape

# Piped or captured output (CI logs, `| tee`) would otherwise be cut at 80 columns and truncate the tables.
_WIDTH = None if sys.stdout.isatty() else 160
# DDP worker processes (LOCAL_RANK > 0, set by the launcher) stay quiet: rank 0 speaks for the run.
console = Console(width=_WIDTH, quiet=os.environ.get("LOCAL_RANK", "0") != "0")
err_console = Console(stderr=True, width=_WIDTH)
_said: set[str] = set()


def print_undecodable_names() -> None:
    """Let stdout and stderr print file names that are not valid UTF-8 (lone surrogates, ``os.fsdecode``) as their
    own bytes, as ``ls`` does, instead of failing with ``UnicodeEncodeError`` (see ``anoseg.io.NAME_ERRORS``)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) == "strict":
            stream.reconfigure(errors="surrogateescape")


def warn(message: str) -> None:
    """Print a yellow warning line to stderr."""
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, markup=True)


def warn_once(message: str) -> None:
    """Print a warning only the first time this exact message is given in this process."""
    if message not in _said:
        _said.add(message)
        warn(message)
