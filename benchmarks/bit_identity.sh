#!/usr/bin/env bash
# A refactor changes no number: the same 2-epoch runs with two installations of art-adr (e.g. a checkout before
# and after a change, each in its own venv), compared run by run (benchmarks/compare_runs.py); then a run of the
# first stopped after one epoch and resumed by the second, against the first's uninterrupted run.
#
#   bash benchmarks/bit_identity.sh OLD_ART_ADR NEW_ART_ADR [OUT]    # two art-adr executables
set -uo pipefail
OLD=$1; NEW=$2; OUT=${3:-bit-identity-out}
HERE="$(cd "$(dirname "$0")" && pwd)"
PY=$(dirname "$NEW")/python
export OMP_NUM_THREADS=1
ARGS=(--epochs 2 --subset 512 --val-size 128 --max-iter 2 --eval-max-iter 2 --device cpu -q)
FAILED=0
mkdir -p "$OUT"
for r in fashion-mnist-ro-at fashion-mnist-ro-at-adr fashion-mnist-ro-trades-adr fashion-mnist-ro-mart-adr \
         fashion-mnist-ro2-at-adr; do
  rm -rf "$OUT/old-$r" "$OUT/new-$r" "$OUT/resumed-$r"
  "$OLD" train -r "$r" "${ARGS[@]}" --out "$OUT/old-$r" >/dev/null || FAILED=1
  "$NEW" train -r "$r" "${ARGS[@]}" --out "$OUT/new-$r" >/dev/null || FAILED=1
  result=$("$PY" "$HERE/compare_runs.py" "$OUT/old-$r" "$OUT/new-$r") || FAILED=1
  echo "$r: $result"
  "$OLD" train -r "$r" "${ARGS[@]}" --stop-after-epochs 1 --out "$OUT/resumed-$r" >/dev/null || FAILED=1
  "$NEW" train --out "$OUT/resumed-$r" --resume -q >/dev/null || FAILED=1
  result=$("$PY" "$HERE/compare_runs.py" "$OUT/old-$r" "$OUT/resumed-$r") || FAILED=1
  echo "$r resumed by the new code: $result"
done
exit $FAILED
