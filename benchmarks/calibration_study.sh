#!/usr/bin/env bash
# Issue 28 §4: calibration of the final checkpoints of standard training, AT and AT+ADR, 3 seeds per regime,
# outputs on PGD-10 and on apgd examples; then
#   python benchmarks/calibration.py OUT/out/*/analysis.json --pairs Standard:AT,AT:AT+ADR
# How the committed results ran (benchmarks/README.md, "Calibration, measured"): AT and AT+ADR as at code 221a232
# (ro3: the runs of fashion_mnist_ro3.sh step 1), the standard runs and the three-model analyses at 7880a34.
# Set OUT (default benchmarks-out/calibration) and RO3_RUNS (default benchmarks-out/fashion-mnist-ro3-study/table/runs).
set -uo pipefail
export OMP_NUM_THREADS=1
OUT=${OUT:-benchmarks-out/calibration}
R=$(realpath -m "${RO3_RUNS:-benchmarks-out/fashion-mnist-ro3-study/table/runs}")
mkdir -p "$OUT" && cd "$OUT"
train() {  # recipe seed run_dir [option...]
  [ -f "$3/checkpoints/final.pt" ] && return
  if [ -f "$3/config.yaml" ]; then art-adr train --out "$3" --resume -q
  else art-adr train -r "$1" --seed "$2" --out "$3" "${@:4}" -q; fi
}
analyze() {  # regime seed standard_run at_run adr_run
  for attack in pgd apgd; do
    out="out/$1-s$2-$attack"
    [ -f "$out/analysis.json" ] && continue
    art-adr analyze "$3/checkpoints/final.pt" --vs "$4/checkpoints/final.pt" --vs "$5/checkpoints/final.pt" \
      --label Standard --label AT --label AT+ADR --output-attack "$attack" --n-examples 500 --skip weights \
      --skip inputs --out "$out" -q || echo "FAILED $out"
  done
}
for regime in ro ro2 ro3; do
  for s in 0 1 2; do
    # standard training validates every 50 epochs only: its final checkpoint is analysed, its selection is unused
    train "fashion-mnist-$regime-standard" $s "runs/fashion-mnist-$regime-standard-s$s" --set eval_every=50
    if [ $regime != ro3 ]; then
      for m in at at-adr; do train "fashion-mnist-$regime-$m" $s "runs/fashion-mnist-$regime-$m-s$s"; done
    fi
    if [ $regime = ro3 ]; then at=$R/fashion-mnist-ro3-at-s$s adr=$R/fashion-mnist-ro3-at-adr-s$s
    else at=runs/fashion-mnist-$regime-at-s$s adr=runs/fashion-mnist-$regime-at-adr-s$s; fi
    analyze $regime $s "runs/fashion-mnist-$regime-standard-s$s" "$at" "$adr"
  done
done
echo "cal done"
