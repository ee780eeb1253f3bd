#!/usr/bin/env bash
# The generalisation study: train on L = 32, sample on L = 32, 64 and 128, compare with
# HMC + cluster references at the same sizes, raw and reweighted, with ESS/N and the
# Metropolis acceptance per size. Results (tables, JSON, plots) go to $OUT.
#   bash jobscripts/study.sh            # both couplings
#   KAPPAS=0.27 bash jobscripts/study.sh
# Sizes are chosen to finish in about half an hour on 2 cores; on a cluster raise
# STEPS, N_HMC and N_GEN (or use the sbatch scripts with the same parameters).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LATDIFF:-$PWD/target/release/latdiff}
OUT=${OUT:-out/study}
KAPPAS=${KAPPAS:-0.27 0.3}
LAMBDA=${LAMBDA:-0.022}
PRESET=${PRESET:-small}
STEPS=${STEPS:-2000}
SAMPLE_STEPS=${SAMPLE_STEPS:-50}
N_HMC=${N_HMC:-1024}
N_TRAIN=${N_TRAIN:-2048}
RANKS=${RANKS:-2}
MPI="mpirun -n $RANKS --bind-to none"
command -v mpirun >/dev/null 2>&1 || MPI=""
mkdir -p "$OUT"
for K in $KAPPAS; do
  T="--kappa $K --lambda $LAMBDA"
  D="$OUT/k$K"
  mkdir -p "$D"
  echo "== kappa = $K: HMC + clusters training ensemble at L = 32"
  $MPI "$BIN" hmc --lattice 32 $T --n-configs "$N_TRAIN" --n-chains 32 --n-sep 4 --seed 1 --out "$D/train_L32.h5" --force
  echo "== kappa = $K: train '$PRESET' ($STEPS steps)"
  $MPI "$BIN" train --data "$D/train_L32.h5" --out "$D/model.h5" --preset "$PRESET" --score-form "${SCORE_FORM:-plain}" --steps "$STEPS" \
    --batch 32 --lr 2e-3 --seed 1 --force
  for L in 32 64 128; do
    case $L in 32) NG=512 ;; 64) NG=256 ;; 128) NG=64 ;; esac
    NG=${N_GEN:-$NG}
    echo "== kappa = $K, L = $L: HMC + clusters reference, diffusion samples (weighted and Metropolis)"
    $MPI "$BIN" hmc --lattice "$L" $T --n-configs "$N_HMC" --n-chains 16 --n-sep 4 --seed 2 --out "$D/hmc_L$L.h5" --force
    $MPI "$BIN" sample --model "$D/model.h5" --lattice "$L" --n-configs "$NG" --steps "$SAMPLE_STEPS" \
      --seed 3 --out "$D/gen_L$L.h5" --force
    $MPI "$BIN" sample --model "$D/model.h5" --lattice "$L" --n-configs "$NG" --steps "$SAMPLE_STEPS" \
      --seed 3 --metropolis --out "$D/mh_L$L.h5" --force
    "$BIN" analyze "$D/hmc_L$L.h5" "$D/gen_L$L.h5" "$D/mh_L$L.h5" --json > "$D/compare_L$L.json"
    "$BIN" analyze "$D/hmc_L$L.h5" "$D/gen_L$L.h5" --raw --json > "$D/raw_L$L.json"
    "$BIN" analyze "$D/hmc_L$L.h5" "$D/gen_L$L.h5" "$D/mh_L$L.h5" --plot "$D/plots_L$L" --force > "$D/compare_L$L.txt"
  done
done
python3 jobscripts/study_table.py "$OUT" | tee "$OUT/summary.md"
