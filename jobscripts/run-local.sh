#!/usr/bin/env bash
# The main job on a built-in small default, on one workstation: installs what is missing,
# builds, and runs the whole pipeline with 2 MPI ranks, everything in one output folder:
#   HMC at L = 16 -> train the physics-informed score network (local preset) -> sample at
#   L = 16 and L = 32 with exact weights -> HMC at L = 32 -> `latdiff analyze` comparison
#   tables and plots.
#   bash jobscripts/run-local.sh [OUT_DIR]
# Environment: RANKS (2), KAPPA (0.27), LAMBDA (0.022), PRESET (local), STEPS (2500),
# N_CONFIGS (1024), SAMPLE_STEPS (100).
set -euo pipefail
cd "$(dirname "$0")/.."
. jobscripts/setup.sh
OUT=${1:-out/local}
RANKS=${RANKS:-2}
KAPPA=${KAPPA:-0.27}
LAMBDA=${LAMBDA:-0.022}
PRESET=${PRESET:-local}
STEPS=${STEPS:-2500}
N_CONFIGS=${N_CONFIGS:-1024}
SAMPLE_STEPS=${SAMPLE_STEPS:-100}
mkdir -p "$OUT"
cargo build --release 2>&1 | tail -1
BIN=$PWD/target/release/latdiff
MPI="mpirun -n $RANKS --bind-to none"
command -v mpirun >/dev/null 2>&1 || MPI=""
export LATDIFF_LOG_SECONDS=${LATDIFF_LOG_SECONDS:-20}
T="--kappa $KAPPA --lambda $LAMBDA"
t0=$(date +%s)
stage() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }

stage "HMC reference ensemble, L = 16 (kappa = $KAPPA, lambda = $LAMBDA), $RANKS ranks"
$MPI "$BIN" hmc --lattice 16 $T --n-configs "$N_CONFIGS" --n-chains 16 --n-sep 4 --seed 1 \
  --out "$OUT/hmc_L16.h5" --force

stage "train the '$PRESET' score network on it ($STEPS steps), $RANKS ranks"
$MPI "$BIN" train --data "$OUT/hmc_L16.h5" --out "$OUT/model.h5" --preset "$PRESET" \
  --steps "$STEPS" --seed 1 --force   # the defaults' recipe: batch 32, lr 2e-3

stage "sample at L = 16 and at L = 32 (twice the training lattice), with path weights"
$MPI "$BIN" sample --model "$OUT/model.h5" --lattice 16 --n-configs "$N_CONFIGS" \
  --steps "$SAMPLE_STEPS" --seed 2 --out "$OUT/gen_L16.h5" --force
$MPI "$BIN" sample --model "$OUT/model.h5" --lattice 32 --n-configs $(( N_CONFIGS / 4 )) \
  --steps "$SAMPLE_STEPS" --seed 3 --out "$OUT/gen_L32.h5" --force

stage "HMC reference at L = 32"
$MPI "$BIN" hmc --lattice 32 $T --n-configs "$N_CONFIGS" --n-chains 16 --n-sep 4 --seed 4 \
  --out "$OUT/hmc_L32.h5" --force

stage "analysis: HMC against diffusion (reweighted), tables and plots in $OUT"
"$BIN" info "$OUT/model.h5"
"$BIN" analyze "$OUT/hmc_L16.h5" "$OUT/gen_L16.h5" --plot "$OUT/plots_L16" --force --json > "$OUT/compare_L16.json"
"$BIN" analyze "$OUT/hmc_L32.h5" "$OUT/gen_L32.h5" --plot "$OUT/plots_L32" --force --json > "$OUT/compare_L32.json"
"$BIN" analyze "$OUT/hmc_L16.h5" "$OUT/gen_L16.h5" | tee "$OUT/compare_L16.txt"
echo
"$BIN" analyze "$OUT/hmc_L32.h5" "$OUT/gen_L32.h5" | tee "$OUT/compare_L32.txt"
stage "done: outputs in $OUT"
