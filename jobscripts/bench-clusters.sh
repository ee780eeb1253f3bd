#!/usr/bin/env bash
# τ_int of |M| and of χ's estimator (M²) and of the action density, in trajectories and in
# seconds, for HMC alone and HMC + Wolff cluster flips at κ = 0.27, λ = 0.022 (near the
# critical point), for several L. Prints a Markdown table (BENCHMARKS.md).
#   bash jobscripts/bench-clusters.sh [L ...]        default: 16 32 64 128
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LATDIFF:-target/release/latdiff}
OUT=${OUT:-out/bench-clusters}
mkdir -p "$OUT"
SIZES=${*:-16 32 64 128}
PER_CHAIN=${PER_CHAIN:-2000}
echo "| L | updates | tau_int abs_m [traj] | tau_int m2 [traj] | tau_int S/V [traj] | s/traj (16 chains, 2 threads) | tau_int abs_m [ms] | <\|M\|> | U_L |"
echo "|---|---|---|---|---|---|---|---|---|"
for L in $SIZES; do
  for K in 0 4; do
    f="$OUT/L${L}_c${K}.h5"
    log=$("$BIN" hmc --lattice "$L" --kappa 0.27 --lambda 0.022 --n-chains 16 --n-configs $((16 * PER_CHAIN)) \
      --n-sep 1 --n-therm 1000 --cluster-updates "$K" --seed 11 --out "$f" --force 2>&1 | tail -1)
    secs=$(echo "$log" | sed -E 's/.* ([0-9.]+) s$/\1/')
    "$BIN" analyze --json "$f" > "$f.json"
    python3 - "$f.json" "$L" "$K" "$secs" "$PER_CHAIN" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); L, K, secs, per = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
o = d["observables"]
traj = 16 * (per + 1000)              # production + thermalisation trajectories of all chains
s_per_traj = secs / (traj / 16)       # wall seconds per trajectory of one chain (chains run in parallel)
t = lambda k: o[k]["tau_int"]
mix = "HMC" if K == 0 else f"HMC + {K} Wolff"
print(f"| {L} | {mix} | {t('abs_m'):.1f} | {t('m2'):.1f} | {t('action_density'):.1f} | {s_per_traj:.2e} | {1e3*t('abs_m')*s_per_traj:.2f} | {o['abs_m']['mean']:.4f} ± {o['abs_m']['err']:.4f} | {o['binder']['mean']:.3f} ± {o['binder']['err']:.3f} |")
PY
  done
done
