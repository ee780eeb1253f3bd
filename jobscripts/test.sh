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
"${CARGO_TARGET_DIR:-target}/release/latdiff" hmc --theory u1 --beta 2 --lattice 4x6 --n-configs 6 --n-chains 2 --n-therm 10 --out "$h5out/u1.h5" 2>/dev/null
/usr/bin/python3 - "$h5out/u1.h5" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
c = f["configs"][:].astype(np.float64)
assert c.shape == (6, 2, 4, 6) and f.attrs["theory"] == "u1" and f.attrs["beta"] == 2.0, (c.shape, dict(f.attrs))
# The README's plaquette convention: theta_P(t, x) = theta_0(t, x) + theta_1(t+1, x) - theta_0(t, x+1) - theta_1(t, x).
t0, t1 = c[:, 0], c[:, 1]
P = t0 + np.roll(t1, -1, 1) - np.roll(t0, -1, 2) - t1
assert np.allclose(-2.0 * np.cos(P).sum(axis=(1, 2)), f["action"][:], atol=1e-4), "plaquette convention"
Q = ((P + np.pi) % (2 * np.pi) - np.pi).sum(axis=(1, 2)) / (2 * np.pi)
assert np.array_equal(np.rint(Q).astype(np.int64), f["topological_charge"][:]), (Q, f["topological_charge"][:])
print("h5py reads", sys.argv[1], "(U(1): plaquette convention and Q as documented)")
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
