#!/usr/bin/env bash
# Shared part of the latdiff Slurm job scripts (hmc/train/sample/analyze/scan.sbatch).
# Sourced by them; nothing here needs editing for a site (use the variables below).
#
#   LATDIFF   path to the latdiff binary (default: `latdiff` on PATH, else
#             $SLURM_SUBMIT_DIR/target/release/latdiff)
#   OUTDIR    folder for every output (default: $SLURM_SUBMIT_DIR/out)
#   DEVICE    auto | cpu | cuda, passed as --device (default auto)
#   THREADS   worker threads per rank (default: $SLURM_CPUS_PER_TASK)
#   LAUNCH    how to start the ranks; empty = run the binary directly. Default: chosen at
#             run time: one task -> directly; several -> `srun --mpi=pmix` (or pmi2) when
#             srun offers it AND a 2-second probe shows the ranks really form one MPI
#             world, else `mpirun -n $SLURM_NTASKS --bind-to none`.
#   MAX_REQUEUE  how many times a job may requeue itself (default 20)
#   FORCE=1   overwrite existing outputs (passes --force)
#   THEORY    phi4 (default; KAPPA or M2, and LAMBDA) or u1 (BETA): see latdiff_theory
#   L, SEED   lattice extent (16) and seed (1)

# OpenMPI refuses to run as root unless told (containers, test clusters).
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

latdiff_log() { echo "[$(date +%T) ${SLURM_JOB_ID:-nojob}] $*" >&2; }

latdiff_die() {
  latdiff_log "error: $*"
  exit 1
}

latdiff_init() {
  if [ -z "${LATDIFF:-}" ]; then
    if command -v latdiff >/dev/null 2>&1; then
      LATDIFF=$(command -v latdiff)
    else
      LATDIFF=${SLURM_SUBMIT_DIR:-.}/target/release/latdiff
    fi
  fi
  [ -x "$LATDIFF" ] || latdiff_die "latdiff binary '$LATDIFF' not found or not executable (set LATDIFF=/path/to/latdiff)"
  OUTDIR=${OUTDIR:-${SLURM_SUBMIT_DIR:-.}/out}
  mkdir -p "$OUTDIR" || latdiff_die "cannot create OUTDIR '$OUTDIR'"
  DEVICE=${DEVICE:-auto}
  THREADS=${THREADS:-${SLURM_CPUS_PER_TASK:-}}
  GLOBAL_ARGS=(--device "$DEVICE")
  [ -n "$THREADS" ] && GLOBAL_ARGS+=(--threads "$THREADS")
  FORCE_ARGS=()
  [ "${FORCE:-0}" = 1 ] && FORCE_ARGS=(--force)
  latdiff_theory
  SEED=${SEED:-1}
  latdiff_log "job ${SLURM_JOB_NAME:-?} on ${SLURMD_NODENAME:-$(hostname)}: ${SLURM_NTASKS:-1} task(s) x ${SLURM_CPUS_PER_TASK:-?} cpu(s), restart ${SLURM_RESTART_COUNT:-0}, binary $LATDIFF"
}

# The theory's flags (THEORY_ARGS) and the tag of the output names (TAG), from THEORY and
# its couplings: phi4 (default): KAPPA (0.27) or M2, and LAMBDA (0.022), tag
# L32_k0.27_l0.022 (L32_m2-0.5_l0.5); u1: BETA (3), tag L32_u1_b3.
latdiff_theory() {
  L=${L:-16}
  THEORY=${THEORY:-phi4}
  case $THEORY in
    phi4)
      [ -z "${BETA:-}" ] || latdiff_die "BETA=$BETA is a coupling of THEORY=u1, not of phi4 (set THEORY=u1, or KAPPA/M2 and LAMBDA)"
      LAMBDA=${LAMBDA:-0.022}
      if [ -n "${M2:-}" ]; then
        THEORY_ARGS=(--m2 "$M2" --lambda "$LAMBDA")
        TAG=L${L}_m2${M2}_l${LAMBDA}
      else
        KAPPA=${KAPPA:-0.27}
        THEORY_ARGS=(--kappa "$KAPPA" --lambda "$LAMBDA")
        TAG=L${L}_k${KAPPA}_l${LAMBDA}
      fi
      ;;
    u1)
      [ -z "${KAPPA:-}${M2:-}${LAMBDA:-}" ] || latdiff_die "THEORY=u1 takes only BETA (unset KAPPA, M2, LAMBDA)"
      BETA=${BETA:-3}
      THEORY_ARGS=(--theory u1 --beta "$BETA")
      TAG=L${L}_u1_b${BETA}
      ;;
    *) latdiff_die "THEORY '$THEORY': phi4 or u1" ;;
  esac
}

# Does `$1` start ${SLURM_NTASKS} ranks that see each other? (hmc prints "over N rank(s)".)
_latdiff_probe_launch() {
  local n=${SLURM_NTASKS:-1} probe out
  probe=$OUTDIR/.launch-probe.${SLURM_JOB_ID:-$$}.h5
  out=$(timeout 60 $1 "$LATDIFF" --device cpu --threads 1 hmc --lattice 4 --n-configs "$n" --n-chains "$n" \
    --n-therm 0 --n-sep 1 --out "$probe" --force 2>&1)
  rm -f "$probe"
  grep -q "over $n rank(s)" <<<"$out"
}

latdiff_pick_launch() {
  if [ -n "${LAUNCH+set}" ]; then
    latdiff_log "launcher (from LAUNCH): '${LAUNCH}'"
    return
  fi
  local n=${SLURM_NTASKS:-1} mpi
  if [ "$n" -le 1 ]; then
    LAUNCH=""
    latdiff_log "launcher: none (one task)"
    return
  fi
  if command -v srun >/dev/null 2>&1; then
    for mpi in pmix pmi2; do
      if srun --mpi=list 2>&1 | grep -qw "$mpi"; then
        if _latdiff_probe_launch "srun --mpi=$mpi"; then
          LAUNCH="srun --mpi=$mpi"
          latdiff_log "launcher: '$LAUNCH' (probe: $n ranks in one MPI world)"
          return
        fi
        latdiff_log "launcher: 'srun --mpi=$mpi' does not give one MPI world here; trying the next"
      fi
    done
  fi
  if command -v mpirun >/dev/null 2>&1; then
    LAUNCH="mpirun -n $n --bind-to none"
    latdiff_log "launcher: '$LAUNCH'"
    return
  fi
  latdiff_die "$n tasks requested but neither srun with PMIx/PMI2 nor mpirun works (set LAUNCH)"
}

# Signals from Slurm reach only the batch shell (--signal=B:..., scancel --batch). The
# program runs in the background so the trap runs at once; the signal goes to the launcher
# (srun and mpirun both pass USR1/TERM on to every rank) and to its direct children (the
# ranks under mpirun on this node, or the program itself).
LATDIFF_SIGNALLED=""
_LATDIFF_PENDING=""
_latdiff_forward() {
  local sig=$1 pid=$2 kids
  LATDIFF_SIGNALLED=$sig
  _LATDIFF_PENDING=1
  kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr '\n' ' ')
  latdiff_log "batch shell got SIG$sig: forwarding to the launcher (pid $pid) and its children (${kids:-none})"
  kill -s "$sig" "$pid" 2>/dev/null || true
  [ -n "$kids" ] && kill -s "$sig" $kids 2>/dev/null || true
}

# latdiff_run ARGS...: runs `$LAUNCH $LATDIFF GLOBAL_ARGS ARGS`, forwarding USR1 and TERM.
# Returns the program's exit status; LATDIFF_SIGNALLED names a signal received meanwhile.
latdiff_run() {
  latdiff_log "run: $LAUNCH $LATDIFF ${GLOBAL_ARGS[*]} $*"
  LATDIFF_SIGNALLED=""
  # shellcheck disable=SC2086
  $LAUNCH "$LATDIFF" "${GLOBAL_ARGS[@]}" "$@" &
  local child=$! rc
  trap "_latdiff_forward USR1 $child" USR1
  trap "_latdiff_forward TERM $child" TERM
  while :; do
    _LATDIFF_PENDING=""
    rc=0
    wait "$child" || rc=$?
    # A trapped signal interrupts `wait`: wait again for the program's own status.
    [ -n "$_LATDIFF_PENDING" ] && continue
    break
  done
  trap - USR1 TERM
  latdiff_log "program exited with status $rc${LATDIFF_SIGNALLED:+ after SIG$LATDIFF_SIGNALLED}"
  return "$rc"
}

# Puts this job back in the queue (same job id, so afterok dependants keep waiting).
latdiff_requeue() {
  local n=${SLURM_RESTART_COUNT:-0} max=${MAX_REQUEUE:-20}
  [ -n "${SLURM_JOB_ID:-}" ] || latdiff_die "not under Slurm: cannot requeue; run the script again to continue"
  if [ "$n" -ge "$max" ]; then
    latdiff_die "already requeued $n times (MAX_REQUEUE=$max); giving up"
  fi
  latdiff_log "requeueing job $SLURM_JOB_ID (restart $((n + 1)) of at most $max)"
  scontrol requeue "$SLURM_JOB_ID" || latdiff_die "scontrol requeue $SLURM_JOB_ID failed (is the job requeueable? #SBATCH --requeue)"
  exit 0
}

# latdiff_to_file FILE CMD...: CMD's stdout to FILE, atomically (temp name + rename, only
# when CMD succeeds): readers never see half a file, a failure leaves the previous one.
latdiff_to_file() {
  local f=$1 tmp rc=0
  shift
  tmp=$(dirname "$f")/.$(basename "$f").tmp.$$
  "$@" >"$tmp" || rc=$?
  if [ "$rc" != 0 ]; then
    rm -f "$tmp"
    return "$rc"
  fi
  mv -f "$tmp" "$f"
}
