#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what is missing, builds
# optimised (statistical and MPI tests run against optimised code), runs every test.
#   bash jobscripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. jobscripts/setup.sh
export CI="${CI:-}"
echo "== cargo test --release (unit, integration, MPI under mpirun)"
cargo test --release --all-features 2>&1
echo "== Slurm: job scripts under a real single-node Slurm (tests/slurm.sh)"
cargo build --release --all-features 2>&1 | tail -1
bash tests/slurm.sh "${CARGO_TARGET_DIR:-target}/release/latdiff"
echo "== the files read with h5py (Debian's python3-h5py)"
h5out=$(mktemp -d)
"${CARGO_TARGET_DIR:-target}/release/latdiff" hmc --lattice 4x6 --n-configs 6 --n-chains 2 --n-therm 10 --out "$h5out/e.h5" 2>/dev/null
/usr/bin/python3 - "$h5out/e.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f["configs"].shape == (6, 4, 6) and f["configs"].dtype.name == "float32", f["configs"]
assert f["action"].shape == (6,) and f.attrs["theory"] == "phi4" and list(f.attrs["lattice"]) == [4, 6]
assert "n_configs = 6" in f.attrs["config"]
print("h5py reads", sys.argv[1], dict((k, f.attrs[k]) for k in ("theory", "kappa", "lambda", "seed", "n_ranks")))
PY
rm -rf "$h5out"
echo "== benches compile"
cargo bench --no-run 2>&1 | tail -1
if [ -x jobscripts/check-kernels.sh ]; then
  echo "== CUDA kernels compile (NVRTC + ptxas, no GPU needed)"
  bash jobscripts/check-kernels.sh
fi
# Last: it rebuilds the crate without the mpi feature in the same target folder (the
# dependencies are shared), so the MPI binary of the stages above is not needed after it.
echo "== build without MPI (single-process binary must still build and run)"
cargo build --release --no-default-features 2>&1 | tail -1
mkdir -p target/nompi-check
cp "${CARGO_TARGET_DIR:-target}/release/latdiff" target/nompi-check/latdiff
target/nompi-check/latdiff hmc --lattice 4 --n-configs 4 --n-chains 2 --n-therm 10 --out target/nompi-check/check.h5 --force 2>/dev/null
target/nompi-check/latdiff info target/nompi-check/check.h5 >/dev/null
echo "all test stages passed"
