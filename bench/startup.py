"""`anoseg models` start-up: the registry listing vs the CLI's own floor and vs importing the architectures.

Each command runs in a fresh interpreter, interleaved (A, B, C, A, B, C, ...), so machine load hits all alike:

* ``models``: ``anoseg models`` (reads the registry records; must not import torch);
* ``help``: ``anoseg --help`` (the CLI's floor: Python, click, rich);
* ``architectures``: importing every architecture module, which is what listing the models cost when the registry
  was filled by importing them (torch, torchvision and the networks).

Prints min and median wall time and CPU time (user + system of the child process, less sensitive to a loaded
machine) of each, and the ratios ``models / help`` and ``models / architectures``.
Run: ``python bench/startup.py [--runs 7]``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

CLI = "from anoseg.cli import main; main()"
COMMANDS = {
    "models": [sys.executable, "-c", CLI, "models"],
    "help": [sys.executable, "-c", CLI, "--help"],
    "architectures": [sys.executable, "-c", "import importlib; from anoseg.models import MODELS; "
                      "[importlib.import_module(m.arch.partition(':')[0]) for m in MODELS.values()]"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            wall[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    for label, times in (("wall", wall), ("cpu", cpu)):
        for name, values in times.items():
            print(f"{label} {name:>13}: min {min(values):.3f} s  median {statistics.median(values):.3f} s")
        for ref in ("help", "architectures"):
            print(f"{label} models / {ref}: min {min(times['models']) / min(times[ref]):.2f}  "
                  f"median {statistics.median(times['models']) / statistics.median(times[ref]):.2f}")


if __name__ == "__main__":
    main()
