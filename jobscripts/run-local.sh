#!/usr/bin/env bash
# The main job on a built-in small default, on one workstation: installs what is missing,
# builds, and runs the pipeline with 2 MPI ranks. Everything lands in one output folder.
#   bash jobscripts/run-local.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. jobscripts/setup.sh
OUT=${1:-out/local}
RANKS=${RANKS:-2}
mkdir -p "$OUT"
cargo build --release 2>&1 | tail -1
BIN=$PWD/target/release/latdiff
MPI="mpirun -n $RANKS --bind-to none"
command -v mpirun >/dev/null 2>&1 || MPI=""

echo "== HMC reference ensemble, L = 16, kappa = 0.27, lambda = 0.022 (near critical)"
$MPI "$BIN" hmc --lattice 16 --kappa 0.27 --lambda 0.022 --n-configs 1024 --n-chains 16 \
  --n-therm auto --n-sep 5 --seed 1 --out "$OUT/hmc_L16.h5" --force
"$BIN" info "$OUT/hmc_L16.h5"
