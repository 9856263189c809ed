#!/usr/bin/env bash
# The GPU checks of art-adr in one command, sized for one H100/H200 for <= 8 minutes (issue 15 §5), on a machine with
# Python 3.12, torch, numpy and scipy and nothing else, offline. See benchmarks/README.md ("GPU suite").
#
#   bash benchmarks/gpu_suite.sh [--out DIR] [--wheels DIR] [--steps tests,throughput] [--budget SECONDS]
#                                [--data-dir DIR] [--dry-run] [--install-only]
#
# 0. checks the host (benchmarks/gpu_host_check.py, also part of --dry-run): pip, numpy/scipy against the wheels'
#    Requires-Dist, a C compiler and Python.h (Triton), torch against compiling.py, free disk, the GPU; a step the
#    host cannot run (no compiler: the compiled steps; no GPU: all) is skipped with the reason, not failed;
# 1. installs the wheels of --wheels (default .whl/, made by benchmarks/gpu_wheels.sh) with pip --no-deps --no-index
#    into a private folder ($GPU_SUITE_SITE, default /tmp/art-adr-site), then art-adr itself from this tree;
# 2. runs the steps (default tests,throughput,tests-compiled,throughput-compiled; also speed, equivalence), each
#    under its cap (CAP below; the budget's rest caps them all): eager first, so that a cut compiled step leaves
#    the basics measured: tests = `pytest -m cuda -k "not compile" tests/test_cuda.py` (train -> resume ->
#    evaluate cycles, one validating with apgd, steps under torch.cuda.set_sync_debug_mode("error")); throughput =
#    the eager ResNet-18 rows (`throughput.py --preset suite-eager`); tests-compiled = `-k compile`: the AT cycle
#    under reduce-overhead and the graph counts (AT default, TRADES and MART reduce-overhead, CUDA-graph skips);
#    throughput-compiled = `--preset suite-compiled`;
# 3. writes everything into one JSON, DIR/suite.json ($OUT if set, else --out, else ./gpu-suite-out).
# Every step runs even when an earlier one fails; the exit code is 1 if any failed, 2 when art-adr does not import
# or torch sees no GPU (every step skipped).
# --dry-run: check the host and that every step resolves (files exist, modules import or come from a wheel,
# commands parse); nothing needs CUDA or installs anything.
# --install-only: steps 0 and 1 alone (no GPU needed), then check that art-adr imports from $GPU_SUITE_SITE; the
# simulated-host test (tests/test_simulated_host.py) installs through this very code.
set -uo pipefail
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-}
WHEELS=.whl
STEPS="tests,throughput,tests-compiled,throughput-compiled"
BUDGET=450
DATA_DIR=""
DRY=0
INSTALL_ONLY=0
REQS=${GPU_SUITE_REQUIREMENTS:-benchmarks/gpu_requirements.txt}
SITE=${GPU_SUITE_SITE:-/tmp/art-adr-site}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT_DIR=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --data-dir) DATA_DIR=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --install-only) INSTALL_ONLY=1; shift ;;
    -h|--help) sed -n '2,26p' "$SCRIPT"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
OUT_DIR=${OUT_DIR:-gpu-suite-out}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
export PYTHONUNBUFFERED=1

# ---------------------------------------------------------------- the steps: name, seconds at most, command
# Caps from counted compilations (tests/test_suite_budget.py counts the Dynamo graphs of each compiled step on CPU
# with backend="eager" and fails when they differ from COMPILES): cap = RUN_S + COMPILES x S_PER_GRAPH.
# S_PER_GRAPH estimates one graph's compilation on the GPU machine (Dynamo + AOTAutograd + Inductor + Triton,
# 16 cores), not yet measured on a GPU: the CUDA tests' small CNN ~4 s a graph on average (~6 s new, ~1.5 s for
# the resumed trainer's identical graphs, an FX-graph-cache hit), ResNet-18 ~15 s (~5 s of Dynamo + AOTAutograd
# measured on a CPU, ~10 s of Inductor + Triton). RUN_S: the step's run without compiling.
#   tests-compiled      = 30 + 33 x 4  = 162 s   (33 graphs: the reduce-overhead cycle 14 = train 6 + resume 6 +
#                                                  evaluate 2; graph tests AT default 6, TRADES 7, MART 6)
#   throughput-compiled = 20 +  8 x 15 = 140 s   (8 graphs: AT+ADR 3 + plain loop 2 compiled, AT+ADR 3 with
#                                                  reduce-overhead)
#   tests 70 s, throughput 40 s: eager (no compilation), 2x their estimated runs (~35 s, ~20 s)
# Sum of the caps 412 s + install and host check ~20 s <= BUDGET - 15 s for the summary = 435 s (3 s spare); the
# budget, 450 s, is a hard bound (each step gets min(cap, what is left)), so the suite ends by 450 s + at most
# 10 s of kill grace = 460 s: 20 s (4 %) under the 8 minutes. The eager steps run first: a cut compiled step
# leaves the basics measured.
declare -A COMPILES=([tests-compiled]=33 [throughput-compiled]=8)
declare -A S_PER_GRAPH=([tests-compiled]=4 [throughput-compiled]=15)
declare -A RUN_S=([tests-compiled]=30 [throughput-compiled]=20)
declare -A CAP=([tests]=70 [throughput]=40 [speed]=300 [equivalence]=240)
for name in tests-compiled throughput-compiled; do
  CAP[$name]=$(( RUN_S[$name] + COMPILES[$name] * S_PER_GRAPH[$name] ))
done
DATA_ARGS=()
[ -n "$DATA_DIR" ] && DATA_ARGS=(--data-dir "$DATA_DIR")
step_command() {  # the command line of a step, one word per line
  case "$1" in
    tests) printf '%s\n' env "ART_ADR_GPU_OUT=$OUT_DIR" "$PY" -P -m pytest -q -m cuda -k "not compile" \
             tests/test_cuda.py -p no:cacheprovider "--junitxml=$OUT_DIR/cuda-tests.xml" ;;
    tests-compiled) printf '%s\n' env "ART_ADR_GPU_OUT=$OUT_DIR" "$PY" -P -m pytest -q -m cuda -k compile \
             tests/test_cuda.py -p no:cacheprovider "--junitxml=$OUT_DIR/cuda-tests-compiled.xml" ;;
    throughput) printf '%s\n' "$PY" benchmarks/throughput.py --preset suite-eager --out "$OUT_DIR/throughput.json" ;;
    throughput-compiled) printf '%s\n' "$PY" benchmarks/throughput.py --preset suite-compiled \
                           --out "$OUT_DIR/throughput-compiled.json" ;;
    speed) printf '%s\n' "$PY" benchmarks/speed_options.py --preset h100 --compile --out "$OUT_DIR/speed.json" ;;
    equivalence) printf '%s\n' "$PY" benchmarks/equivalence.py --device cuda "${DATA_ARGS[@]}" \
                   --out "$OUT_DIR/equivalence.json" ;;
    *) return 1 ;;
  esac
}
step_files() {
  case "$1" in
    tests|tests-compiled) echo tests/test_cuda.py tests/conftest.py pyproject.toml ;;
    throughput|throughput-compiled) echo benchmarks/throughput.py benchmarks/bench_utils.py ;;
    speed) echo benchmarks/speed_options.py benchmarks/throughput.py benchmarks/bench_utils.py ;;
    equivalence) echo benchmarks/equivalence.py benchmarks/bench_utils.py ;;
  esac
}
IFS=, read -r -a STEP_LIST <<< "$STEPS"
for name in "${STEP_LIST[@]}"; do
  step_command "$name" >/dev/null || {
    echo "unknown step: $name (tests, throughput, tests-compiled, throughput-compiled, speed, equivalence)" >&2; exit 2; }
done

# ---------------------------------------------------------------- --dry-run
if [ "$DRY" = 1 ]; then
  FAILED=0
  if bash -n "$SCRIPT"; then echo "ok    this script parses (bash -n)"; else echo "FAIL  this script parses"; FAILED=1; fi
  if "$PY" -P -c "import sys; assert sys.version_info >= (3, 11)" 2>/dev/null; then
    echo "ok    python: $PY (>= 3.11, for -P)"
  else echo "FAIL  python: $PY must be Python >= 3.11"; FAILED=1; fi
  STEP_ARGS=()
  for name in "${STEP_LIST[@]}"; do
    mapfile -t cmd < <(step_command "$name")
    echo "      step $name (at most ${CAP[$name]} s): ${cmd[*]}"
    STEP_ARGS+=("$name|$(step_files "$name")")
  done
  "$PY" -P benchmarks/gpu_host_check.py "$WHEELS" --site "$SITE" --out "$OUT_DIR/host.json" || FAILED=1
  "$PY" -P benchmarks/gpu_suite_check.py "$WHEELS" "$REQS" "${STEP_ARGS[@]}" || FAILED=1
  if [ "$FAILED" -ne 0 ]; then echo "dry run: some checks failed"; exit 1; fi
  echo "dry run: every step resolves"
  exit 0
fi

# ---------------------------------------------------------------- install (offline, private folder)
T_START=$SECONDS
echo "== host (benchmarks/gpu_host_check.py)"
"$PY" -P benchmarks/gpu_host_check.py "$WHEELS" --site "$SITE" --out "$OUT_DIR/host.json" | tee "$OUT_DIR/host.log"
declare -A SKIP_REASON=()
while IFS=$'\t' read -r step why; do
  [ -n "$step" ] && SKIP_REASON[$step]=$why
done < <("$PY" -P -c 'import json, sys
for k, v in json.load(open(sys.argv[1]))["skip"].items(): print(f"{k}\t{v}")' "$OUT_DIR/host.json" 2>/dev/null)
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  echo "== installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE (--no-deps --no-index)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl || echo "some wheels failed to install" >&2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# python -P: the working directory is not on sys.path, so art_adr is the installed package, not ./art_adr (whose
# art_adr.cli lives in cli/); the scripts put only their own folder on sys.path
if ! "$PY" -P -c "import art_adr.cli" 2>/dev/null; then
  echo "== installing art-adr from this tree into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade \
    --target "$SITE" . || echo "art-adr did not install" >&2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ "$INSTALL_ONLY" = 1 ]; then
  "$PY" -P -c "import art_adr.cli" || { echo "art-adr does not import from $SITE" >&2; exit 2; }
  echo "== installed into $SITE (PYTHONPATH=$SITE)"
  exit 0
fi
"$PY" -P -c "import art_adr.cli" || {
  echo "art-adr does not import; see benchmarks/README.md (GPU suite)" >&2; exit 2; }
NO_GPU=0
"$PY" -P -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || {
  echo "torch sees no GPU: the GPU steps are skipped (host.json says why)" >&2; NO_GPU=1; }

# ---------------------------------------------------------------- run
STATUS_JSON="{"
sep=""
ANY_FAILED=0
for name in "${STEP_LIST[@]}"; do
  if [ -n "${SKIP_REASON[$name]:-}" ]; then
    echo "== $name: skipped (${SKIP_REASON[$name]})"
    why=$(printf '%s' "${SKIP_REASON[$name]}" | "$PY" -P -c 'import json, sys; print(json.dumps(sys.stdin.read()))')
    STATUS_JSON+="$sep\"$name\": {\"exit_code\": null, \"seconds\": 0, \"timed_out\": false, \"skipped\": true, \"reason\": $why}"
    sep=", "; continue
  fi
  left=$((BUDGET - (SECONDS - T_START) - 15))  # 15 s for the summary
  limit=${CAP[$name]}
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 10 ]; then
    echo "== $name: skipped (the suite's $BUDGET s budget is spent)"
    STATUS_JSON+="$sep\"$name\": {\"exit_code\": null, \"seconds\": 0, \"timed_out\": false, \"skipped\": true}"
    sep=", "; ANY_FAILED=1; continue
  fi
  mapfile -t cmd < <(step_command "$name")
  echo "== $name (at most $limit s): ${cmd[*]}"
  t0=$SECONDS
  timeout --kill-after=10 "$limit" "${cmd[@]}" 2>&1 | tee "$OUT_DIR/$name.log"
  rc=${PIPESTATUS[0]}
  timed_out=false
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && timed_out=true
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || ANY_FAILED=1
  STATUS_JSON+="$sep\"$name\": {\"exit_code\": $rc, \"seconds\": $((SECONDS - t0)), \"timed_out\": $timed_out, \"limit_s\": $limit}"
  sep=", "
done
STATUS_JSON+="}"
"$PY" benchmarks/gpu_summary.py "$OUT_DIR" "$STATUS_JSON"
echo "== suite: $((SECONDS - T_START)) s; everything in $OUT_DIR/suite.json"
[ "$NO_GPU" = 1 ] && exit 2
exit $ANY_FAILED
