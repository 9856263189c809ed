#!/usr/bin/env bash
# Download the wheels benchmarks/gpu_suite.sh installs on an offline GPU machine (Python 3.12, x86-64 Linux, torch,
# numpy and scipy preinstalled): exactly the pins of benchmarks/gpu_requirements.txt, cp312 manylinux x86-64 or pure
# Python (py3-none-any), without dependencies (--no-deps), into a folder (default .whl/, git-ignored). Prints each
# wheel with its size and the total, and fails when the total is above 60 MiB.
#
#   bash benchmarks/gpu_wheels.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=${1:-.whl}
REQS=${GPU_SUITE_REQUIREMENTS:-benchmarks/gpu_requirements.txt}
LIMIT_MIB=60
mkdir -p "$DIR"
mapfile -t PINS < <(grep -v '^\s*#' "$REQS" | awk 'NF {print $1}')
PLATFORMS=()
for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
         manylinux_2_34_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
$PY -m pip download -q --dest "$DIR" --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
  --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" "${PINS[@]}"
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
printf '%-72s %8.2f MiB\n' "total (${#PINS[@]} wheels)" "$(echo "$total / 1048576" | bc -l)"
[ "$total" -le $((LIMIT_MIB * 1048576)) ] || { echo "the wheels take more than $LIMIT_MIB MiB" >&2; exit 1; }
