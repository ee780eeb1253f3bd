#!/usr/bin/env bash
# Compiles every CUDA kernel in kernels/ with NVRTC for sm_80 and sm_90 and assembles the
# PTX with ptxas. Needs no GPU: NVRTC and ptxas come from PyPI wheels installed (once) into
# a venv under target/ (nvidia-cuda-nvrtc-cu12: libnvrtc; nvidia-cuda-nvcc-cu12: ptxas).
# Exits non-zero naming the kernel and printing the compiler log when one fails.
#   bash jobscripts/check-kernels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$ROOT/target/cuda-venv"
WHEELS="nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12"

site_nvidia() { "$VENV/bin/python" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")' 2>/dev/null; }

have_tools() {
  local d
  d=$(site_nvidia) || return 1
  [ -e "$d/cuda_nvrtc/lib/libnvrtc.so.12" ] && [ -x "$d/cuda_nvcc/bin/ptxas" ]
}

if ! have_tools; then
  echo "check-kernels: installing $WHEELS into $VENV" >&2
  if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      fi
      python3 -m venv "$VENV"
    fi
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check $WHEELS
  have_tools || { echo "check-kernels: libnvrtc.so.12 / ptxas not found after installing $WHEELS" >&2; exit 1; }
fi
NV=$(site_nvidia)
export LD_LIBRARY_PATH="$NV/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PTXAS="$NV/cuda_nvcc/bin/ptxas"
echo "check-kernels: $("$PTXAS" --version | tail -1)"

PTX_OUT="$TARGET/kernel-check"
rm -rf "$PTX_OUT"
mkdir -p "$PTX_OUT"
# NVRTC: the Rust test compiles every kernel with the loader the binary uses at run time.
LATDIFF_REQUIRE_NVRTC=1 LATDIFF_PTX_OUT="$PTX_OUT" \
  cargo test --release --test cuda_kernels_compile -- --nocapture >"$PTX_OUT/nvrtc.log" 2>&1 || true
grep -E "^ok:" "$PTX_OUT/nvrtc.log" || true
if ! grep -q "test result: ok" "$PTX_OUT/nvrtc.log"; then
  # The failing kernels with their NVRTC logs (the panic message), without the backtrace.
  sed -n '/panicked at/,/stack backtrace/p' "$PTX_OUT/nvrtc.log" | grep -v "stack backtrace" >&2 || tail -40 "$PTX_OUT/nvrtc.log" >&2
  echo "check-kernels: NVRTC compilation FAILED (full log: $PTX_OUT/nvrtc.log)" >&2
  exit 1
fi

# ptxas: assemble every PTX for its real architecture.
fail=0
for arch in sm_80 sm_90; do
  for ptx in "$PTX_OUT/$arch"/*.ptx; do
    name=$(basename "$ptx" .ptx)
    if ! "$PTXAS" -arch="$arch" -O3 "$ptx" -o "$PTX_OUT/$arch/$name.cubin" 2>"$PTX_OUT/$arch/$name.ptxas.log"; then
      echo "check-kernels: ptxas FAILED for kernel $name.cu ($arch):" >&2
      cat "$PTX_OUT/$arch/$name.ptxas.log" >&2
      fail=1
    else
      echo "ok: ptxas $name.cu ($arch)"
    fi
  done
done
n=$(ls "$PTX_OUT"/sm_*/*.cubin 2>/dev/null | wc -l)
[ "$fail" = 0 ] || exit 1
[ "$n" -gt 0 ] || { echo "check-kernels: no PTX produced" >&2; exit 1; }
echo "check-kernels: $n kernel images compiled and assembled"
