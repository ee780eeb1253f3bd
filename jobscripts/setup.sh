#!/usr/bin/env bash
# Shared set-up for run-local.sh and test.sh: installs what a fresh Debian machine lacks
# (as root through apt; otherwise prints what to install or `module load`), and exports
# the environment OpenMPI needs. Source it: `. jobscripts/setup.sh`.

LATDIFF_APT_PACKAGES="libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libclang-dev pkg-config cmake fonts-dejavu-core python3 python3-pip python3-venv python3-h5py"

latdiff_missing_packages() {
  local missing=""
  for p in $LATDIFF_APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  echo "$missing"
}

if command -v dpkg-query >/dev/null 2>&1; then
  missing=$(latdiff_missing_packages)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing$missing" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "setup: missing packages:$missing" >&2
      echo "setup: install them (sudo apt-get install$missing) or load modules, e.g." >&2
      echo "setup:   module load openmpi hdf5 llvm cmake" >&2
      return 1 2>/dev/null || exit 1
    fi
  fi
else
  echo "setup: not a Debian system; make sure MPI (mpicc, mpirun), HDF5 (libhdf5), libclang and pkg-config are available (module load ...)" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust >= 1.89 (rustup: https://rustup.rs), or 'module load rust'" >&2
  return 1 2>/dev/null || exit 1
fi

# OpenMPI refuses to run as root unless told; more ranks than cores need oversubscription;
# containers without CMA need the single-copy mechanism off.
if [ "$(id -u)" = "0" ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# hdf5-sys finds Debian's serial HDF5 here.
if [ -z "${HDF5_DIR:-}" ] && [ -d /usr/lib/x86_64-linux-gnu/hdf5/serial ]; then
  export HDF5_DIR=/usr/lib/x86_64-linux-gnu/hdf5/serial
fi
true
