#!/usr/bin/env bash
# Issue 28 §4: calibration of AT vs AT+ADR final checkpoints, 3 seeds, outputs on PGD-10 and on apgd examples.
# Run as issue 28 §4 ran it (code of commit 221a232, where --output-attack was still called --attack): ro3 = the
# runs of fashion_mnist_ro3.sh step 1 (RO3_RUNS), ro and ro2 trained here with their recipes; then
# python benchmarks/calibration.py OUT/out/*/analysis.json.
# Set OUT (default benchmarks-out/calibration) and RO3_RUNS (default benchmarks-out/fashion-mnist-ro3-study/table/runs).
set -uo pipefail
export OMP_NUM_THREADS=1
OUT=${OUT:-benchmarks-out/calibration}
R=$(realpath -m "${RO3_RUNS:-benchmarks-out/fashion-mnist-ro3-study/table/runs}")
mkdir -p "$OUT" && cd "$OUT"
analyze() {  # regime seed at_run adr_run
  for attack in pgd apgd; do
    out="out/$1-s$2-$attack"
    [ -f "$out/analysis.json" ] && continue
    art-adr analyze "$3/checkpoints/final.pt" --vs "$4/checkpoints/final.pt" --label AT --label AT+ADR \
      --output-attack "$attack" --n-examples 500 --skip weights --skip inputs --out "$out" -q || echo "FAILED $out"
  done
}
for s in 0 1 2; do analyze ro3 $s $R/fashion-mnist-ro3-at-s$s $R/fashion-mnist-ro3-at-adr-s$s; done
for regime in ro ro2; do
  for s in 0 1 2; do
    for m in at at-adr; do
      run="runs/fashion-mnist-$regime-$m-s$s"
      [ -f "$run/checkpoints/final.pt" ] && continue
      if [ -f "$run/config.yaml" ]; then art-adr train --out "$run" --resume -q
      else art-adr train -r "fashion-mnist-$regime-$m" --seed $s --out "$run" -q; fi
    done
    analyze $regime $s runs/fashion-mnist-$regime-at-s$s runs/fashion-mnist-$regime-at-adr-s$s
  done
done
echo "cal done"
