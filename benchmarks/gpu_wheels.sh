#!/usr/bin/env bash
# Download the wheels benchmarks/gpu_suite.sh installs on an offline GPU machine (x86-64 Linux, Python with torch,
# numpy and scipy preinstalled; Python 3.12 on the lent machines): exactly the pins of
# benchmarks/gpu_requirements.txt, cpXY manylinux x86-64 or pure Python (py3-none-any), without dependencies
# (--no-deps), into a folder (default .whl/, git-ignored). Prints each wheel with its size and the total, and fails
# when the wheels and this tree (`git archive HEAD`) together take more than 62 MiB: what travels to the GPU machine
# is 64 MiB in all, 2 MiB are left for untracked files.
#
#   bash benchmarks/gpu_wheels.sh [DIR] [--python X.Y]     (--python: the target interpreter, default 3.12;
#                                                           the simulated-host test passes this machine's)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=.whl
TARGET=3.12
while [ $# -gt 0 ]; do
  case "$1" in
    --python) TARGET=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) DIR=$1; shift ;;
  esac
done
[[ "$TARGET" =~ ^3\.[0-9]+$ ]] || { echo "--python takes X.Y (3.12), got $TARGET" >&2; exit 2; }
ABI=cp${TARGET/./}
REQS=${GPU_SUITE_REQUIREMENTS:-benchmarks/gpu_requirements.txt}
LIMIT_MIB=62  # wheels + git archive HEAD
mkdir -p "$DIR"
mapfile -t PINS < <(grep -v '^\s*#' "$REQS" | awk 'NF {print $1}')
PLATFORMS=()
for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
         manylinux_2_34_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
$PY -m pip download -q --dest "$DIR" --only-binary=:all: --no-deps --python-version "$TARGET" --implementation cp \
  --abi "$ABI" --abi abi3 --abi none "${PLATFORMS[@]}" "${PINS[@]}"
total=0
for pin in "${PINS[@]}"; do
  name=${pin%%==*}; version=${pin#*==}
  stem=$(echo "$name" | tr '[:upper:]-.' '[:lower:]__')
  file=$(ls "$DIR" | awk -v s="$stem-$version-" 'tolower($0) ~ "^"tolower(s) && /\.whl$/' | head -n 1)
  [ -n "$file" ] || { echo "missing wheel for $pin in $DIR" >&2; exit 1; }
  size=$(stat -c %s "$DIR/$file")
  total=$((total + size))
  printf '%-72s %8.2f MiB\n' "$file" "$(echo "$size / 1048576" | bc -l)"
done
printf '%-72s %8.2f MiB\n' "total (${#PINS[@]} wheels, $ABI)" "$(echo "$total / 1048576" | bc -l)"
tree=$(git archive HEAD 2>/dev/null | wc -c || echo 0)
printf '%-72s %8.2f MiB\n' "this tree (git archive HEAD)" "$(echo "$tree / 1048576" | bc -l)"
[ $((total + tree)) -le $((LIMIT_MIB * 1048576)) ] || {
  echo "the wheels and the tree take more than $LIMIT_MIB MiB (64 MiB travel to the GPU machine)" >&2; exit 1; }
