#!/usr/bin/env bash
# The Fashion-MNIST robust-overfitting study (issue 9), exactly as run for benchmarks/results/fashion-mnist-ro.*:
#   1. the tau x lambda sweep of AT+ADR, selected on the 500-image hold-out of the training set;
#   2. AT, AT+ADR, TRADES, TRADES+ADR x 3 seeds: clean, PGD-10 and AutoAttack (standard) on 500 test images,
#      best (hold-out-selected) and final checkpoints of student and EMA teacher;
#   3. the same checkpoints' PGD-10 on 1 000 test images (the robust-overfitting criterion);
#   4. the ADR authors' AutoAttack protocol (--aa-version paper) beside the standard one;
#   5. tau/lambda selected on hold-out AutoAttack, and AT+ADR retrained with them;
#   6. MART and MART+ADR (issue 11), students.
# Every step is resumable and cached: re-running continues where it stopped. ~2 h on 2 CPU cores.
# Set OUT to put the outputs elsewhere (default benchmarks-out/fashion-mnist-ro-study).
set -euo pipefail
OUT=${OUT:-benchmarks-out/fashion-mnist-ro-study}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# 1. hold-out sweep (9 cells, seed 0); the selected cell's tau/lambda go into scripts/make_recipes.py (RO_ADR)
art-adr sweep --recipe fashion-mnist-ro-at-adr --temperatures 1.5,2.0,2.5 --interpolations 0.5,0.7,0.9 \
  --out "$OUT/sweep" -q

# 2. the table: 4 methods x 3 seeds, student and teacher, best and final
art-adr benchmark --recipe-prefix fashion-mnist-ro --seeds 0,1,2 --attacks pgd,aa --n-examples 500 \
  --out "$OUT/table" -q

# 3. and 4. the same runs, only evaluated (runs and evaluations are cached in the run directories)
runs=()
for m in at at-adr trades trades-adr; do
  for s in 0 1 2; do runs+=(--runs "$OUT/table/runs/fashion-mnist-ro-$m-s$s"); done
done
art-adr benchmark "${runs[@]}" --attacks pgd --n-examples 1000 --out "$OUT/pgd-n1000" -q
art-adr benchmark "${runs[@]}" --attacks aa --aa-version paper --which student --n-examples 500 --out "$OUT/aa-paper" -q

# 5. the same sweep scored by AutoAttack on the hold-out (reuses its 9 runs), then AT+ADR with the cell it selects
art-adr sweep --recipe fashion-mnist-ro-at-adr --temperatures 1.5,2.0,2.5 --interpolations 0.5,0.7,0.9 \
  --attacks aa --n-examples 500 --out "$OUT/sweep" -q
for s in 0 1 2; do
  art-adr benchmark --recipes fashion-mnist-ro-at-adr --seeds "$s" --set "temperature=[2.0, 1.5]" \
    --set "interpolation=[0.5, 0.8]" --attacks pgd,aa --n-examples 500 --out "$OUT/aasel-s$s" -q
done

# 6. (issue 11) MART and MART+ADR through the method registry, students, 3 seeds: MART+ADR with the recipe's
#    tau/lambda (AT+ADR's PGD-selected values) and with the AutoAttack-selected values of step 5
art-adr benchmark --recipe-prefix fashion-mnist-ro --methods mart,mart-adr --seeds 0,1,2 --attacks pgd,aa \
  --which student --n-examples 500 --out "$OUT/mart" -q
art-adr benchmark --recipes fashion-mnist-ro-mart-adr --seeds 0,1,2 --set "temperature=[2.0, 1.5]" \
  --set "interpolation=[0.5, 0.8]" --attacks pgd,aa --which student --n-examples 500 --out "$OUT/mart-aasel" -q
