#!/usr/bin/env bash
# The physics-informed score study (README, "Diffusion ensembles you can trust"): on one
# workstation, near the critical point κ = 0.27, λ = 0.022 and in the broken phase κ = 0.3:
#   L = 16: physics form (local preset) against the plain form (small preset, GroupNorm),
#           same steps and batch; prior alone (no network) as the baseline;
#   L = 32: physics form trained at 32;
# each sampled with the default em sampler + matched kernel and compared with HMC + Wolff.
#   bash jobscripts/study-physics.sh [OUT_DIR]
# Environment: STEPS16 (6000), STEPS32 (3000), STEPS_BROKEN (1500), N_GEN (1024),
# SAMPLE_STEPS (100). ~45 min on 2 cores with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
. jobscripts/setup.sh
OUT=${1:-out/study-physics}
STEPS16=${STEPS16:-6000}
STEPS32=${STEPS32:-3000}
STEPS_BROKEN=${STEPS_BROKEN:-1500}
N_GEN=${N_GEN:-1024}
SAMPLE_STEPS=${SAMPLE_STEPS:-100}
mkdir -p "$OUT"
cargo build --release 2>&1 | tail -1
BIN=$PWD/target/release/latdiff
export LATDIFF_LOG_SECONDS=${LATDIFF_LOG_SECONDS:-60}
t0=$(date +%s)
stage() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }
timed() { local s; s=$(date +%s); "$@"; echo "   (wall time $(( $(date +%s) - s )) s)"; }

hmc() { # L kappa out n
  "$BIN" hmc --lattice "$1" --kappa "$2" --lambda 0.022 --n-configs "$4" --n-chains 16 --n-sep 4 --seed 1 --out "$3" --force
}
train() { # data out preset form steps
  timed "$BIN" train --data "$1" --out "$2" --preset "$3" --score-form "$4" --steps "$5" --batch 32 --lr 2e-3 --seed 1 --force
}
sample() { # model L n out
  timed "$BIN" sample --model "$1" --lattice "$2" --n-configs "$3" --steps "$SAMPLE_STEPS" --seed 2 --out "$4" --force
}
compare() { # ref gen name
  "$BIN" analyze "$1" "$2" --json > "$OUT/$3.json"
  "$BIN" analyze "$1" "$2" | tee "$OUT/$3.txt"
  "$BIN" analyze --raw "$1" "$2" > "$OUT/$3_raw.txt"
}

stage "HMC + Wolff references (training data and comparison)"
hmc 16 0.27 "$OUT/hmc_L16.h5" 2048
hmc 32 0.27 "$OUT/hmc_L32.h5" 2048
hmc 32 0.3 "$OUT/hmc_L32_broken.h5" 2048

stage "L = 16, kappa = 0.27: prior alone, physics (local), plain (small); $STEPS16 steps each"
sample "prior:$OUT/hmc_L16.h5" 16 "$N_GEN" "$OUT/gen_L16_prior.h5"
train "$OUT/hmc_L16.h5" "$OUT/model_L16_physics.h5" local physics "$STEPS16"
sample "$OUT/model_L16_physics.h5" 16 "$N_GEN" "$OUT/gen_L16_physics.h5"
compare "$OUT/hmc_L16.h5" "$OUT/gen_L16_physics.h5" L16_physics
train "$OUT/hmc_L16.h5" "$OUT/model_L16_plain.h5" small plain "$STEPS16"
sample "$OUT/model_L16_plain.h5" 16 "$N_GEN" "$OUT/gen_L16_plain.h5"
compare "$OUT/hmc_L16.h5" "$OUT/gen_L16_plain.h5" L16_plain

stage "L = 32, kappa = 0.27: physics (local) trained at 32, $STEPS32 steps"
train "$OUT/hmc_L32.h5" "$OUT/model_L32_physics.h5" local physics "$STEPS32"
sample "$OUT/model_L32_physics.h5" 32 $(( N_GEN / 2 )) "$OUT/gen_L32_physics.h5"
compare "$OUT/hmc_L32.h5" "$OUT/gen_L32_physics.h5" L32_physics

stage "L = 32, kappa = 0.3 (broken phase): physics (local), $STEPS_BROKEN steps"
train "$OUT/hmc_L32_broken.h5" "$OUT/model_L32_broken.h5" local physics "$STEPS_BROKEN"
sample "$OUT/model_L32_broken.h5" 32 $(( N_GEN / 2 )) "$OUT/gen_L32_broken.h5"
compare "$OUT/hmc_L32_broken.h5" "$OUT/gen_L32_broken.h5" L32_broken
stage "done: tables in $OUT"
