"""Pixel AUPRO: ``anoseg.metrics.aupro`` vs anomalib's ``AUPRO`` on the same maps, time and peak memory as ratios.

Builds (N, 256, 256) float32 anomaly maps and masks with ``bench/metrics.py``'s generator (default 763 maps = 50M
pixels, half of them with 1-3 elliptic defects), saves them once to a temporary folder, then runs each implementation
in a fresh subprocess, interleaved (anoseg, anomalib, anoseg, anomalib, …). Each child loads the arrays and imports
its libraries first, then times the one call (wall and CPU time) and reports its peak memory above what it held
before the call (``ru_maxrss`` minus the resident size just before; anomalib works in torch, whose buffers
``tracemalloc`` does not see, so both sides are measured the same way, by the OS). Prints min and median of each,
the ratios, and checks that both AUPROs agree (anomalib computes in float32).

    python bench/aupro.py                 # 50M pixels, 3 rounds (~2-4 min, anomalib dominates)
    python bench/aupro.py --images 40     # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4  # anomalib accumulates its curve in float32

CHILD = r"""
import json, resource, sys, time
import numpy as np

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

folder, impl = sys.argv[1], sys.argv[2]
scores, masks = np.load(f"{folder}/scores.npy"), np.load(f"{folder}/masks.npy")
if impl == "anoseg":
    import scipy.ndimage  # imported before timing, like torch and anomalib on the other side

    from anoseg.metrics import aupro

    def run():
        return aupro(scores, masks)
else:
    import torch
    from anomalib.metrics import AUPRO
    from types import SimpleNamespace

    def run():
        metric = AUPRO(fields=["anomaly_map", "gt_mask"])
        metric.update(SimpleNamespace(anomaly_map=torch.from_numpy(scores), gt_mask=torch.from_numpy(masks)))
        return float(metric.compute())
before = rss_mb()
start, cpu = time.perf_counter(), time.process_time()
value = run()
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10 - before
print(json.dumps({"value": value, "wall": wall, "cpu": cpu, "peak_mb": peak}))
"""


def run_child(folder: str, impl: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, folder, impl], capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode:
        raise SystemExit(f"{impl} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=763, help="number of 256² maps (default 763: 50M pixels)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from metrics import make_maps

    start = time.perf_counter()
    scores, masks = make_maps(args.images, 256, args.seed)
    print(f"data: {args.images} maps of 256², {scores.size:,} pixels, {np.count_nonzero(masks):,} in defects, "
          f"{scores.nbytes / 2**20:.0f} MB float32 scores, built in {time.perf_counter() - start:.1f} s")
    runs: dict[str, list[dict]] = {"anoseg": [], "anomalib": []}
    with tempfile.TemporaryDirectory(prefix="anoseg-aupro-") as folder:
        np.save(f"{folder}/scores.npy", scores)
        np.save(f"{folder}/masks.npy", masks)
        del scores, masks
        for _ in range(args.rounds):
            for impl in runs:
                runs[impl].append(run_child(folder, impl))

    med = statistics.median
    print(f"{'':10}{'wall min':>9}{'median':>8}{'CPU min':>9}{'median':>8}   peak memory above the inputs (min)")
    for impl, rs in runs.items():
        wall, cpu = [r["wall"] for r in rs], [r["cpu"] for r in rs]
        print(f"{impl:10}{min(wall):9.2f}{med(wall):8.2f}{min(cpu):9.2f}{med(cpu):8.2f}   "
              f"{min(r['peak_mb'] for r in rs):8,.0f} MB")

    def ratio(key: str) -> str:
        a, b = [r[key] for r in runs["anomalib"]], [r[key] for r in runs["anoseg"]]
        return f"min {min(a) / min(b):6.1f}  median {med(a) / med(b):6.1f}"

    print(f"anomalib / anoseg   wall: {ratio('wall')}   CPU: {ratio('cpu')}   (aim >= 10)")
    memory = min(r["peak_mb"] for r in runs["anomalib"]) / max(1.0, min(r["peak_mb"] for r in runs["anoseg"]))
    print(f"anomalib / anoseg   peak memory: {memory:.1f}")
    ours, ref = runs["anoseg"][0]["value"], runs["anomalib"][0]["value"]
    diff = abs(ours - ref)
    print(f"AUPRO: anoseg {ours:.9f}   anomalib {ref:.9f}   |diff| {diff:.1e}")
    if diff > TOLERANCE:
        print(f"MISMATCH: {diff:.1e} > {TOLERANCE:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
