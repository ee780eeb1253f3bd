#!/usr/bin/env bash
# Every GPU check and benchmark of docs/cuda.md in one go, on a machine with an NVIDIA GPU
# (driver, libnvrtc and libcublas on the loader path; Rust; optional: PyTorch for the
# side-by-side timing). Writes logs and JSON into one folder; exits non-zero at the first
# failed check.
#   bash jobscripts/gpu-checks.sh [OUT_DIR]          (default out/gpu-checks)
# Environment: QUICK=1 for small sizes (a minute), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/gpu-checks}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
t0=$(date +%s)
stage() { echo; echo "== [$(( $(date +%s) - t0 ))s] $*"; }
if [ "${QUICK:-0}" = 1 ]; then
  LATS=32,64; NETL=(32); N=256; STEPS=100; SECS=1
else
  LATS=32,64,128,256,512; NETL=(32 64 128); N=2048; STEPS=1000; SECS=5
fi

# Fails unless every scalar observable of the comparison in analyze's JSON ($1) is within
# 4 combined standard errors and the comparison is reliable (enough effective samples).
within_4_sigma() {
  "$PYTHON" - "$1" <<'PY'
import json, math, sys
c = json.load(open(sys.argv[1]))["comparison"][0]
bad = [f"{k}: {v['sigma']:+.2f} sigma" for k, v in c["observables"].items()
       if isinstance(v, dict) and isinstance(v.get("sigma"), (int, float)) and abs(v["sigma"]) > 4]
if not c.get("reliable", True):
    bad.append("unreliable: " + str(c.get("unreliable_reason")))
if bad:
    sys.exit(f"error: {c['file']} vs {c['reference']} beyond 4 sigma: " + "; ".join(bad))
print(f"ok: {c['file']} within 4 sigma of {c['reference']}")
PY
}

stage "build"
cargo build --release 2>&1 | tail -1
BIN=$PWD/target/release/latdiff
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt" || true

stage "parity: every kernel, the whole network, a training step and a sampled batch vs the CPU"
# One test at a time with a synchronisation after each launch, so a fault names its kernel.
LATDIFF_CUDA_SYNC=1 cargo test --release --test cuda_parity -- --nocapture --test-threads=1 2>&1 \
  | tee "$OUT/parity.log"
if grep -q "skipped: no CUDA device" "$OUT/parity.log"; then
  echo "error: the parity tests found no usable GPU" >&2
  exit 1
fi

stage "HMC on the GPU and on the CPU (same parameters), compared by latdiff analyze"
T="--lattice 16 --kappa 0.26 --lambda 0.022 --n-configs $N --n-chains 64 --n-sep 4 --seed 1 --cluster-updates 0"
"$BIN" --device cuda hmc $T --out "$OUT/hmc_gpu.h5" --force
"$BIN" --device cpu hmc $T --out "$OUT/hmc_cpu.h5" --force
"$BIN" analyze "$OUT/hmc_cpu.h5" "$OUT/hmc_gpu.h5" | tee "$OUT/hmc_compare.txt"
"$BIN" analyze "$OUT/hmc_cpu.h5" "$OUT/hmc_gpu.h5" --json > "$OUT/hmc_compare.json"
within_4_sigma "$OUT/hmc_compare.json"

stage "U(1) HMC on the GPU and on the CPU (beta = 3, L = 16), compared by latdiff analyze"
U="--theory u1 --beta 3 --lattice 16 --n-configs $N --n-chains 64 --n-sep 2 --seed 1 --cluster-updates 0"
"$BIN" --device cuda hmc $U --out "$OUT/u1_gpu.h5" --force
"$BIN" --device cpu hmc $U --out "$OUT/u1_cpu.h5" --force
"$BIN" analyze "$OUT/u1_cpu.h5" "$OUT/u1_gpu.h5" | tee "$OUT/u1_compare.txt"
"$BIN" analyze "$OUT/u1_cpu.h5" "$OUT/u1_gpu.h5" --json > "$OUT/u1_compare.json"
within_4_sigma "$OUT/u1_compare.json"

stage "train and sample on the GPU, compared with the HMC ensemble"
"$BIN" --device cuda train --data "$OUT/hmc_gpu.h5" --out "$OUT/model.h5" --preset local \
  --steps "$STEPS" --batch 32 --lr 2e-3 --seed 1 --force
"$BIN" info "$OUT/model.h5" | tee "$OUT/model_info.txt"
"$BIN" --device cuda sample --model "$OUT/model.h5" --n-configs "$N" --steps 100 --seed 2 \
  --out "$OUT/gen_gpu.h5" --force
"$BIN" analyze "$OUT/hmc_cpu.h5" "$OUT/gen_gpu.h5" | tee "$OUT/gen_compare.txt"
"$BIN" analyze "$OUT/hmc_cpu.h5" "$OUT/gen_gpu.h5" --json > "$OUT/gen_compare.json"
within_4_sigma "$OUT/gen_compare.json"

stage "benchmarks (record in BENCHMARKS.md with the GPU's name)"
"$BIN" --device cuda bench hmc --lattice "$LATS" --seconds "$SECS" | tee "$OUT/bench_hmc.txt"
"$BIN" --device cuda bench hmc --theory u1 --lattice "$LATS" --seconds "$SECS" | tee "$OUT/bench_hmc_u1.txt"
for l in "${NETL[@]}"; do
  "$BIN" --device cuda bench train --preset dmassq --lattice "$l" --batch 64 --seconds "$SECS" \
    | tee "$OUT/bench_train_L$l.txt"
done
"$BIN" --device cuda bench sample --preset dmassq --lattice "$(IFS=,; echo "${NETL[*]}")" --seconds "$SECS" \
  | tee "$OUT/bench_sample.txt"
if "$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  for l in "${NETL[@]}"; do
    for tf32 in "" --tf32; do
      "$PYTHON" benches/pytorch_unet.py --arch dmassq --lattice "$l" --batch 64 $tf32 \
        | tee -a "$OUT/bench_pytorch.txt"
    done
  done
else
  echo "PyTorch with CUDA not found: side-by-side timing skipped" | tee "$OUT/bench_pytorch.txt"
fi
stage "done: $OUT"
