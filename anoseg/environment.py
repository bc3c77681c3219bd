"""The environment variables anoseg's libraries read at start-up, checked before any of them is imported.

OpenMP (PyTorch's CPU threads, through libgomp) and MKL read their thread counts once, when torch is first imported.
A value they cannot use (``OMP_NUM_THREADS=0``, ``-1``, ``four``) makes libgomp print "Invalid value for environment
variable OMP_NUM_THREADS" in the middle of the output and fall back to one thread per core, which the user did not
ask for. ``check_thread_settings`` refuses such a value first, with one line naming it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from anoseg.errors import AnosegError

#: Thread-count variables read by the libraries under torch (OpenMP accepts a comma list, one count per nesting level).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def check_thread_settings(environ: Mapping[str, str] = os.environ) -> None:
    """Raise ``AnosegError`` naming the first of ``THREAD_VARIABLES`` set to something other than positive whole
    numbers (``4``, or OpenMP's ``4,2``). Unset variables pass: the libraries then use every core.

    Example:
        >>> check_thread_settings({"OMP_NUM_THREADS": "4"})
        >>> try:
        ...     check_thread_settings({"OMP_NUM_THREADS": "0"})
        ... except AnosegError as exc:
        ...     print(str(exc).split(":")[0])
        OMP_NUM_THREADS=0 is not a thread count
    """
    for name in THREAD_VARIABLES:
        value = environ.get(name)
        if value is None:
            continue
        counts = value.strip().split(",")
        if not all(re.fullmatch(r"\s*\d+\s*", c) and int(c) > 0 for c in counts):
            raise AnosegError(f"{name}={value} is not a thread count: set it to a positive whole number (e.g. 4), or "
                              "unset it to use every core")
