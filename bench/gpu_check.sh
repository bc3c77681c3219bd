#!/usr/bin/env bash
# The GPU check (issue 21 §3): on a CUDA machine that already has torch, torchvision, lightning, onnxruntime, pandas,
# pillow, click and rich, install anoseg, run the `gpu` tests and time the models on the GPU, then print a summary.
# Bounded to GPU_CHECK_BUDGET seconds in all (default 470, under 8 minutes); each step gets what is left of it.
#
#   bash bench/gpu_check.sh                 # from the repository root
#   OUT=/some/dir bash bench/gpu_check.sh   # logs, junit XML and bench.json go to $OUT (default: a new temp folder)
#   WHEELS=dir bash bench/gpu_check.sh      # install missing packages from local wheels only (a machine offline);
#                                           # default: bench/gpu_wheels when it exists, else the package index
#
# Fill a wheel folder on a machine with network and the GPU machine's Python and platform, e.g.:
#   pip download -d bench/gpu_wheels pydantic submitit onnxscript onnx pytest    (what step 2 lists as missing)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
# the checkout itself comes first on the path, so the check runs this code even if the editable install is refused
# (e.g. an externally managed system Python)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-$(mktemp -d -t anoseg-gpu-check-XXXXXX)}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_BUDGET:-470}
START=$SECONDS
declare -A STATUS=()
ORDER=()

left() { echo $((BUDGET - (SECONDS - START))); }
# step NAME CAP COMMAND...: run COMMAND with a timeout of min(CAP, seconds left), log to $OUT/NAME.log, record status
step() {
  local name=$1 cap=$2
  shift 2
  local limit
  limit=$(left)
  ((limit > cap)) && limit=$cap
  ORDER+=("$name")
  if ((limit < 10)); then
    STATUS[$name]="not run (time budget spent)"
    echo "== $name: not run, the ${BUDGET} s budget is spent"
    return 1
  fi
  echo "== $name (at most ${limit} s)"
  # a fresh bash runs the step (timeout cannot run a shell function itself; they are exported below)
  timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  case $rc in
    0) STATUS[$name]="ok" ;;
    124 | 137) STATUS[$name]="TIMED OUT after ${limit} s" ;;
    *) STATUS[$name]="FAILED (exit $rc)" ;;
  esac
  return "$rc"
}

environment() {
  command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi || echo "nvidia-smi: not found"
  "$PY" - <<'EOF'
import platform, sys
print("python", sys.version.split()[0], platform.machine())
try:
    import torch
except ImportError:
    sys.exit("torch is not installed: this check needs a CUDA build of torch already there")
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available(), "devices:", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i}", torch.cuda.get_device_name(i), "capability", torch.cuda.get_device_capability(i),
          "bf16" if torch.cuda.is_bf16_supported() else "no bf16")
for name in ("torchvision", "lightning", "onnxruntime", "numpy", "pandas"):
    try:
        module = __import__(name)
        print(name, getattr(module, "__version__", "?"))
    except ImportError:
        print(name, "MISSING")
try:
    import onnxruntime
    print("onnxruntime providers:", onnxruntime.get_available_providers())
except ImportError:
    pass
if not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch")
EOF
}

# The requirements of pyproject.toml whose module does not import here (anomalib left out: only `generate --method
# perlin` uses it, no GPU test does), plus pytest to run the tests.
missing_requirements() {
  "$PY" - <<'EOF'
import importlib.util, re, tomllib
MODULE = {"pillow": "PIL", "pyyaml": "yaml", "annotated-types": "annotated_types"}
with open("pyproject.toml", "rb") as handle:
    deps = tomllib.load(handle)["project"]["dependencies"]
for requirement in [*deps, "pytest"]:
    name = re.split(r"[<>=~!\[ ;]", requirement, maxsplit=1)[0].strip()
    if name in ("anomalib", "torch", "torchvision"):
        continue
    if importlib.util.find_spec(MODULE.get(name, name.replace("-", "_"))) is None:
        print(requirement)
EOF
}

install() {
  local wheels=${WHEELS:-}
  [[ -z $wheels && -d bench/gpu_wheels ]] && wheels=bench/gpu_wheels
  local source=()
  [[ -n $wheels ]] && source=(--no-index --find-links "$wheels")
  # --no-build-isolation: the editable build uses the setuptools already installed (no download)
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . ||
    "$PY" -m pip install -q --no-deps -e . ||
    echo "pip install -e . refused: running from the checkout (PYTHONPATH)"
  local missing
  mapfile -t missing < <(missing_requirements)
  if ((${#missing[@]})); then
    echo "missing here: ${missing[*]}"
    "$PY" -m pip install -q "${source[@]}" "${missing[@]}" ||
      "$PY" -m pip install -q --user "${source[@]}" "${missing[@]}" || return 1
  else
    echo "every package anoseg imports is installed"
  fi
  "$PY" -c "import anoseg.cli, pydantic, submitit, pytest; print('anoseg installed from', anoseg.__path__[0])"
}

gpu_tests() {
  "$PY" -m pytest -m gpu tests/gpu -v -rs -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml"
}

# LFD alone with ONNX Runtime (its export takes seconds per batch size), then every model without it.
bench_lfd() {
  "$PY" -m anoseg bench --device cuda --model lfd --size 256 256 --warmup 20 --runs 100 --batch 32 --onnx \
    --output "$OUT/lfd"
}
bench_all() {
  "$PY" -m anoseg bench --device cuda --size 256 256 --warmup 10 --runs 30 --batch 32 --output "$OUT/all"
}

summary() {
  OUT="$OUT" "$PY" - <<'EOF'
import json, os
import xml.etree.ElementTree as ET
from pathlib import Path

out = Path(os.environ["OUT"])
report = out / "gpu_tests.xml"
if report.is_file():
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    print(f"gpu tests: {suite.get('tests')} run, {suite.get('failures')} failed, {suite.get('errors')} errors, "
          f"{suite.get('skipped')} skipped")
    for case in suite.iter("testcase"):
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                print(f"  {kind:8} {case.get('name')}: {(found.get('message') or '').splitlines()[0][:150]}")
for name in ("lfd", "all"):
    path = out / name / "bench" / "bench.json"
    if not path.is_file():
        print(f"bench ({name}): no bench.json")
        continue
    bench = json.loads(path.read_text())
    print(f"bench ({name}) on {bench.get('device_kind')}, {bench['size'][0]}×{bench['size'][1]}, "
          f"median of {bench['runs']} after {bench['warmup']} warm-up (CUDA-synchronised):")
    print(f"  {'model':14} {'b1 ms':>8} {'b1 FPS':>8} {'fast FPS':>9} {'ORT FPS':>8} {'b32 img/s':>10} "
          f"{'fast b32':>9} {'ORT b32':>8}")
    for row in bench["models"]:
        b32 = row.get("batches", {}).get("32", {})
        ort = row.get("onnx_latency_ms")
        cells = [f"{row['latency_ms']:8.2f}", f"{row['fps']:8.1f}", f"{1000 / row['fast_latency_ms']:9.1f}",
                 f"{1000 / ort:8.1f}" if ort else f"{'-':>8}", f"{b32.get('images_per_s', float('nan')):10.1f}",
                 f"{b32.get('fast_images_per_s', float('nan')):9.1f}",
                 f"{b32['onnx_images_per_s']:8.1f}" if "onnx_images_per_s" in b32 else f"{'-':>8}"]
        provider = f"  (ONNX Runtime: {row['onnx_provider']})" if row.get("onnx_provider") else ""
        print(f"  {row['model']:14} " + " ".join(cells) + provider)
    lfd = next((row for row in bench["models"] if row["model"] == "lfd"), None)
    if lfd is not None and name == "lfd":
        print(f"  LFD here: {lfd['fps']:.1f} FPS eager, {1000 / lfd['fast_latency_ms']:.1f} FPS fast path at batch 1.")
        print("  LFD paper's A100 figure: not found in /work/shared/specs/*.md, docs/ or the authors' README (it "
              "says only that they ran on one A100); no reference number is printed rather than an invented one.")
EOF
}

export PY OUT
export -f environment missing_requirements install gpu_tests bench_lfd bench_all
step environment 40 environment || {
  echo "no usable CUDA torch: stopping"
  exit 1
}
step install 120 install
step gpu_tests 240 gpu_tests
step bench_lfd 120 bench_lfd
step bench_all 90 bench_all
echo
echo "== summary ($((SECONDS - START)) s of ${BUDGET} s; logs in $OUT)"
for name in "${ORDER[@]}"; do
  printf '  %-12s %s\n' "$name" "${STATUS[$name]}"
done
summary
failed=0
for name in "${ORDER[@]}"; do
  [[ ${STATUS[$name]} == ok ]] || failed=1
done
exit $failed
