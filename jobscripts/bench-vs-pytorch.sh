#!/usr/bin/env bash
# latdiff's network on the CPU beside the same U-Net in PyTorch (benches/pytorch_unet.py),
# like for like: same presets, lattice, batch and thread count, alternating the two
# programs ROUNDS times so that a shared machine's load hits both alike. Prints one table
# (median of the rounds, all rounds in brackets) with the ratio latdiff / PyTorch of the
# medians and of the best rounds (load only ever slows a run down, and PyTorch's OpenMP
# threads suffer more from it than rayon's, so on a shared machine the best rounds are the
# fairer comparison).
#   bash jobscripts/bench-vs-pytorch.sh [presets] [lattices]     # default: dmassq,small 32
# Environment: THREADS (2), BATCH (64), ROUNDS (3), SECONDS per measurement (4),
# LATDIFF (the binary; default: cargo build --release), TORCH_VENV (/tmp/latdiff-torch-venv:
# created with PyTorch CPU when it has no torch).
set -euo pipefail
cd "$(dirname "$0")/.."
presets=${1:-dmassq,small}
lattices=${2:-32}
THREADS=${THREADS:-2} BATCH=${BATCH:-64} ROUNDS=${ROUNDS:-3} SECONDS_PER=${SECONDS:-4}
venv=${TORCH_VENV:-/tmp/latdiff-torch-venv}
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing PyTorch (CPU) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu \
    || "$venv/bin/pip" install -q torch
fi
if [ -z "${LATDIFF:-}" ]; then
  cargo build --release -q
  LATDIFF="${CARGO_TARGET_DIR:-target}/release/latdiff"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$ROUNDS"); do
  for p in ${presets//,/ }; do
    for l in ${lattices//,/ }; do
      echo "round $r: $p L=$l" >&2
      RAYON_NUM_THREADS=$THREADS "$LATDIFF" --device cpu --threads "$THREADS" bench train --preset "$p" --lattice "$l" \
        --batch "$BATCH" --seconds "$SECONDS_PER" --json >"$out/ld-train-$p-$l-$r.json" 2>/dev/null
      RAYON_NUM_THREADS=$THREADS "$LATDIFF" --device cpu --threads "$THREADS" bench forward --preset "$p" --lattice "$l" \
        --batch "$BATCH" --seconds "$SECONDS_PER" --json >"$out/ld-fwd-$p-$l-$r.json" 2>/dev/null
      OMP_NUM_THREADS=$THREADS "$venv/bin/python" benches/pytorch_unet.py --device cpu --threads "$THREADS" --arch "$p" \
        --lattice "$l" --batch "$BATCH" --seconds "$SECONDS_PER" --json >"$out/pt-$p-$l-$r.json"
    done
  done
done
python3 - "$out" "$presets" "$lattices" "$ROUNDS" "$THREADS" "$BATCH" <<'PY'
import json, statistics, sys
out, presets, lattices, rounds, threads, batch = sys.argv[1:]
rd = range(1, int(rounds) + 1)
load = lambda f: json.load(open(f"{out}/{f}"))
torch = load(f"pt-{presets.split(',')[0]}-{lattices.split(',')[0]}-1.json")["torch"]
print(f"threads {threads}, batch {batch}, {rounds} rounds alternating; PyTorch {torch}")
print("| preset | L | what | latdiff | PyTorch | latdiff / PyTorch (medians) | (best rounds) | latdiff GEMM GFLOP/s (best) |")
print("|---|---|---|---|---|---|---|---|")
fmt = lambda v: f"{statistics.median(v):.1f} ({', '.join(f'{x:.1f}' for x in v)})"
for p in presets.split(","):
    for l in lattices.split(","):
        for what, ld, key, ptkey in [("train step, samples/s", "train", "samples_per_s", "train_samples_per_s"),
                                     ("forward, configs/s", "fwd", "network_evals_per_s", "forward_per_s")]:
            runs = [load(f"ld-{ld}-{p}-{l}-{r}.json")["runs"][0] for r in rd]
            a = [x[key] for x in runs]
            b = [load(f"pt-{p}-{l}-{r}.json")[ptkey] for r in rd]
            g = max(x["gflops"] for x in runs)
            ratio = statistics.median(a) / statistics.median(b)
            print(f"| {p} | {l} | {what} | {fmt(a)} | {fmt(b)} | {ratio:.2f} | {max(a) / max(b):.2f} | {g:.1f} |")
PY
