#!/usr/bin/env bash
# One command for the GPU checks of art-adr (issue 10 §1): the `pytest -m cuda` train/resume/evaluate cycles
# (bf16, fp16+AWP, channels_last + streamed batches, compile) and the GPU benchmark presets, each written as
# JSON under the output folder ($OUT if set, else --out, else ./gpu-suite-out). See benchmarks/README.md.
#
#   bash benchmarks/gpu_suite.sh [--out DIR] [--data-dir DIR] [--steps tests,throughput,speed,equivalence]
#
# Offline machines: wheels in ./.whl are installed first (--no-deps --no-index), then art-adr itself.
# --data-dir: a folder with the Fashion-MNIST IDX .gz files (equivalence.py; default: the system copy, else
# the synthetic task). Every step runs even when an earlier one fails; the exit code is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-}
DATA_DIR=""
STEPS="tests,throughput,speed,equivalence"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT_DIR=$2; shift 2 ;;
    --data-dir) DATA_DIR=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
OUT_DIR=${OUT_DIR:-gpu-suite-out}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  echo "== installing carried wheels from .whl/"
  $PY -m pip install -q --no-deps --no-index .whl/*.whl || echo "some wheels failed to install" >&2
fi
if ! $PY -c "import art_adr.cli" 2>/dev/null; then
  echo "== installing art-adr (no deps, no build isolation)"
  $PY -m pip install -q --no-deps --no-build-isolation -e . || $PY -m pip install -q --no-deps --no-build-isolation .
fi
$PY -c "import art_adr.cli, torch; assert torch.cuda.is_available(), 'no CUDA GPU'" || {
  echo "art-adr does not import or torch sees no GPU; see benchmarks/README.md (GPU suite)" >&2; exit 2; }

declare -A RC SECS
run_step() {  # name, command...
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  RC[$name]=${PIPESTATUS[0]}
  SECS[$name]=$((SECONDS - t0))
  echo "== $name: exit ${RC[$name]} after ${SECS[$name]} s"
}
want() { [[ ",$STEPS," == *",$1,"* ]]; }

DATA_ARGS=()
[ -n "$DATA_DIR" ] && DATA_ARGS=(--data-dir "$DATA_DIR")
want tests && run_step cuda-tests env ART_ADR_GPU_OUT="$OUT_DIR" $PY -m pytest -q -m cuda tests/test_cuda.py \
  -p no:cacheprovider --junitxml="$OUT_DIR/cuda-tests.xml"
want throughput && run_step throughput $PY benchmarks/throughput.py --preset h100 --out "$OUT_DIR/h100.json"
want speed && run_step speed $PY benchmarks/speed_options.py --preset h100 --compile \
  --out "$OUT_DIR/speed-h100.json"
want equivalence && run_step equivalence $PY benchmarks/equivalence.py --device cuda "${DATA_ARGS[@]}" \
  --out "$OUT_DIR/equivalence-h100.json"

STATUS_JSON="{"
sep=""
for name in "${!RC[@]}"; do
  STATUS_JSON+="$sep\"$name\": {\"exit_code\": ${RC[$name]}, \"seconds\": ${SECS[$name]}}"
  sep=", "
done
STATUS_JSON+="}"
$PY - "$OUT_DIR" "$STATUS_JSON" <<'EOF'
import json, platform, subprocess, sys, time
import torch
out, steps = sys.argv[1], json.loads(sys.argv[2])
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30).stdout.strip()
except (OSError, subprocess.SubprocessError):
    smi = None
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = None
summary = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "gpu": torch.cuda.get_device_name(), "nvidia_smi": smi,
           "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "git_commit": commit or None, "steps": steps}
with open(f"{out}/suite.json", "w") as f:
    json.dump(summary, f, indent=2)
print(json.dumps(summary, indent=2))
EOF
for name in "${!RC[@]}"; do
  [ "${RC[$name]}" -eq 0 ] || exit 1
done
exit 0
