#!/usr/bin/env bash
# The BatchNorm regime (issue 28), exactly as run for benchmarks/results/fashion-mnist-ro3*.{md,json}:
#   1. AT and AT+ADR (the recipes' defaults: the first regime's tau/lambda, apgd selection) x 3 seeds: clean,
#      PGD-10, apgd and standard AutoAttack on the first 500 test images, best (hold-out-selected) and final
#      checkpoints, student and EMA teacher; the paired verdicts;
#   2. the BatchNorm behaviours as experiments, AT+ADR x 3 seeds: the teacher's BN buffers taken from the student
#      (ema_buffers=student) instead of averaged; the training attack with BN in eval mode instead of train mode;
#      each paired with step 1's AT+ADR runs of the same seed.
# Every step is resumable and cached: re-running continues where it stopped. On 2 CPU cores, one thread per job:
# about 40 min per pair of runs, 10 min per AutoAttack evaluation of one run's student or teacher.
# Set OUT to put the outputs elsewhere (default benchmarks-out/fashion-mnist-ro3-study).
set -euo pipefail
OUT=${OUT:-benchmarks-out/fashion-mnist-ro3-study}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
EVAL=(--attacks pgd,apgd,aa --n-examples 500 --jobs 2 -q)

# 1. the table and its verdicts
art-adr benchmark --recipe-prefix fashion-mnist-ro3 --methods at,at-adr --seeds 0,1,2 "${EVAL[@]}" --out "$OUT/table"
python benchmarks/ro_verdicts.py "$OUT/table/table1.json" --out "$OUT/verdicts"

# 2. the BatchNorm behaviours, each against step 1's AT+ADR
art-adr benchmark --recipe-prefix fashion-mnist-ro3 --methods at-adr --seeds 0,1,2 --set ema_buffers=student \
  "${EVAL[@]}" --out "$OUT/ema-student"
python benchmarks/ro_verdicts.py "$OUT/ema-student/table1.json" --against "$OUT/table/table1.json" \
  --label "BN buffers from the student" --out "$OUT/ema-student-verdicts"
art-adr benchmark --recipe-prefix fashion-mnist-ro3 --methods at-adr --seeds 0,1,2 --set attack_bn_mode=eval \
  "${EVAL[@]}" --out "$OUT/attack-bn-eval"
python benchmarks/ro_verdicts.py "$OUT/attack-bn-eval/table1.json" --against "$OUT/table/table1.json" \
  --label "attack in BN eval mode" --out "$OUT/attack-bn-eval-verdicts"
