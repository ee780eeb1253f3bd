#!/usr/bin/env bash
# The job scripts under a real Slurm: starts a private single-node cluster (munged,
# slurmctld, slurmd from Debian's slurm-wlm; tests/slurm/harness.sh), submits the pipeline
# (jobscripts/pipeline.sh) and a κ scan (scan.sbatch) with tiny sizes, waits for them
# (bounded), checks the outputs, then checks that USR1 reaches the program through the
# batch shell and that the jobs requeue themselves. Stops every daemon it started, on any exit.
#   bash tests/slurm.sh [path/to/latdiff]      (default: $CARGO_TARGET_DIR|target /release/latdiff)
# Installs slurm-wlm and munge with apt when root and missing; prints
# "skipped: cannot install slurm" and succeeds only where that is impossible (not root or
# no apt-get), except under CI=true as root, where it fails.
# train/sample stages run only when `latdiff train --help` / `sample --help` succeed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${LATDIFF:-${CARGO_TARGET_DIR:-$ROOT/target}/release/latdiff}}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
WAIT=${SLURM_TEST_WAIT:-150}   # seconds any one wait may take
T0=$SECONDS
say() { echo "slurm test [$((SECONDS - T0))s]: $*" >&2; }
fail() {
  echo "slurm test FAILED: $*" >&2
  exit 1
}

[ -x "$BIN" ] || fail "no latdiff binary at $BIN (cargo build --release first)"
. "$ROOT/tests/slurm/harness.sh"
if ! slurm_harness_have && ! slurm_harness_install; then
  if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ]; then
    fail "CI=true as root, but slurm-wlm/munge could not be installed"
  fi
  echo "skipped: cannot install slurm (needs slurm-wlm and munge, or root with apt-get)"
  exit 0
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/latdiff-slurm-test.XXXXXX")
chmod 755 "$W"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  slurm_harness_down
  if [ "$rc" = 0 ]; then
    rm -rf "$W"
  else
    echo "slurm test: logs kept in $W (job logs in $W/out, daemons in $W/slurm/log)" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
slurm_harness_up "$W/slurm" || fail "could not start Slurm (logs in $W/slurm/log)"

# Containers: OpenMPI as root, no CMA; more ranks than cores is fine.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export LATDIFF=$BIN OUTDIR=$W/out DEVICE=cpu
mkdir -p "$OUTDIR"
cd "$W"

# ---- helpers ---------------------------------------------------------------------
job_field() { scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
job_log() { job_field "$1" StdOut; }
is_final() {
  case $1 in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED) return 0 ;; esac
  return 1
}
show_job() {
  echo "---- job $1: $(scontrol -o show job "$1" 2>/dev/null | grep -o 'JobState=[^ ]*\|ExitCode=[^ ]*\|Reason=[^ ]*\|Restarts=[^ ]*' | tr '\n' ' ')" >&2
  local log
  log=$(job_log "$1")
  [ -n "$log" ] && [ -f "$log" ] && tail -n 25 "$log" >&2
  return 0
}
# wait_final ID...: until every job has ended; fails on timeout.
wait_final() {
  local end=$((SECONDS + WAIT)) j s pending
  while :; do
    pending=""
    for j in "$@"; do
      s=$(job_field "$j" JobState)
      is_final "$s" || pending="$pending $j"
    done
    [ -z "$pending" ] && return 0
    if [ "$SECONDS" -ge "$end" ]; then
      for j in $pending; do show_job "$j"; done
      squeue >&2 || true
      fail "jobs$pending still not finished after ${WAIT}s"
    fi
    sleep 0.5
  done
}
expect_completed() {
  local j s e
  for j in "$@"; do
    s=$(job_field "$j" JobState)
    e=$(job_field "$j" ExitCode)
    if [ "$s" != COMPLETED ] || [ "$e" != 0:0 ]; then
      show_job "$j"
      fail "job $j ended $s (exit $e), expected COMPLETED 0:0"
    fi
  done
}
# wait_log ID PATTERN: until the job's log has a line matching PATTERN (grep -E).
wait_log() {
  local end=$((SECONDS + WAIT)) log
  while :; do
    log=$(job_log "$1")
    [ -n "$log" ] && [ -f "$log" ] && grep -qE "$2" "$log" && return 0
    if [ "$SECONDS" -ge "$end" ]; then
      show_job "$1"
      fail "job $1: no '$2' in its log after ${WAIT}s"
    fi
    sleep 0.2
  done
}
# wait_restarts ID N: until the job has been requeued N times.
wait_restarts() {
  local end=$((SECONDS + WAIT))
  while [ "$(job_field "$1" Restarts)" -lt "$2" ]; do
    if [ "$SECONDS" -ge "$end" ] || is_final "$(job_field "$1" JobState)"; then
      show_job "$1"
      fail "job $1 was not requeued (Restarts $(job_field "$1" Restarts), expected $2)"
    fi
    sleep 0.2
  done
}
info_ok() { "$BIN" info "$1" >/dev/null 2>&1 || fail "latdiff info $1 failed: $("$BIN" info "$1" 2>&1 | tail -n 3)"; }
launcher_of() { sed -n "s/.*launcher[^:]*: '\([^']*\)'.*/\1/p" "$(job_log "$1")" | head -n 1; }

HAVE_TRAIN=0
HAVE_SAMPLE=0
"$BIN" train --help >/dev/null 2>&1 && HAVE_TRAIN=1
"$BIN" sample --help >/dev/null 2>&1 && HAVE_SAMPLE=1
SKIPPED=()
[ "$HAVE_TRAIN" = 1 ] || SKIPPED+=("train stage" "train checkpoint/requeue/resume on USR1")
[ "$HAVE_SAMPLE" = 1 ] || SKIPPED+=("sample stage")

# ---- 1. the pipeline, tiny ---------------------------------------------------------
export L=8 KAPPA=0.26 LAMBDA=0.022 N_CONFIGS=64 N_CHAINS=4 N_THERM=20 N_SEP=2
export PRESET=tiny STEPS=${SLURM_TEST_TRAIN_STEPS:-200} BATCH=8 LR=1e-3 SAMPLER=em SAMPLE_STEPS=10
export SBATCH_ARGS="--ntasks=1 --cpus-per-task=1 --mem-per-cpu=200M --time=10"
export HMC_SBATCH_ARGS="--ntasks=2"
TAG=L${L}_k${KAPPA}_l${LAMBDA}
if [ "$HAVE_TRAIN" = 1 ] && [ "$HAVE_SAMPLE" = 1 ]; then
  say "pipeline hmc -> train -> sample -> analyze (pipeline.sh)"
  STAGES="hmc train sample analyze" SEED=1 bash "$ROOT/jobscripts/pipeline.sh" >"$W/pipeline.jobs"
else
  # Something to compare with until sample exists: a second HMC ensemble (seed 2).
  say "pipeline hmc -> analyze (pipeline.sh; train/sample not built yet), compared with a seed-2 HMC job"
  other=$(SEED=2 sbatch --parsable $SBATCH_ARGS $HMC_SBATCH_ARGS --chdir="$OUTDIR" \
    --export=ALL,LATDIFF_JOBSCRIPTS="$ROOT/jobscripts" "$ROOT/jobscripts/hmc.sbatch")
  STAGES="hmc analyze" SEED=1 AFTER=$other EXTRA_FILES="$OUTDIR/hmc_${TAG}_s2.h5" \
    bash "$ROOT/jobscripts/pipeline.sh" >"$W/pipeline.jobs"
  echo "hmc-seed2 $other" >>"$W/pipeline.jobs"
fi
cat "$W/pipeline.jobs" >&2
grep -qE '^hmc [0-9]+$' "$W/pipeline.jobs" || fail "pipeline.sh printed no job ids"

# ---- 2. a κ scan as an array, alongside ------------------------------------------------
# Its tasks start their 2 ranks with mpirun inside the allocation (LAUNCH set by hand).
say "scan.sbatch: array over KAPPAS='0.24 0.25', 2 ranks each under LAUNCH=mpirun"
scan=$(KAPPAS="0.24 0.25" SEED=3 LAUNCH="mpirun -n 2 --bind-to none" \
  sbatch --parsable $SBATCH_ARGS --ntasks=2 --array=0-1 --chdir="$OUTDIR" \
  --export=ALL,LATDIFF_JOBSCRIPTS="$ROOT/jobscripts" "$ROOT/jobscripts/scan.sbatch")
scan=${scan%%;*}

# ---- 2b. U(1) through the same scripts: THEORY/BETA, names from the couplings ----------
say "hmc.sbatch with THEORY=u1 BETA=2 (flux moves by default)"
u1job=$(env -u KAPPA -u LAMBDA THEORY=u1 BETA=2 SEED=4 sbatch --parsable $SBATCH_ARGS --chdir="$OUTDIR" \
  --export=ALL,LATDIFF_JOBSCRIPTS="$ROOT/jobscripts" "$ROOT/jobscripts/hmc.sbatch")
u1job=${u1job%%;*}

ids=$(awk '{print $2}' "$W/pipeline.jobs")
# shellcheck disable=SC2086
wait_final $ids "${scan}_0" "${scan}_1" "$u1job"
# shellcheck disable=SC2086
expect_completed $ids "${scan}_0" "${scan}_1" "$u1job"
say "all pipeline, scan and U(1) jobs COMPLETED"
U1=$OUTDIR/hmc_L8_u1_b2_s4.h5
[ -f "$U1" ] || fail "no $U1 (U(1) output name from THEORY and BETA)"
grep -q "theory        u1" <<<"$("$BIN" info "$U1")" || fail "$U1 is not a U(1) ensemble: $("$BIN" info "$U1" | head -n 3)"

hmc_id=$(awk '$1 == "hmc" {print $2}' "$W/pipeline.jobs")
say "hmc job (2 tasks) launched with: '$(launcher_of "$hmc_id")'"
for j in "$hmc_id" "${scan}_0"; do
  grep -q "over 2 rank(s)" "$(job_log "$j")" || { show_job "$j"; fail "job $j: the 2 tasks did not form one MPI world"; }
done
DATA=$OUTDIR/hmc_${TAG}_s1.h5
[ -f "$DATA" ] || fail "no $DATA"
info_ok "$DATA"
for k in 0.24 0.25; do
  f=$OUTDIR/hmc_L8_k${k}_l0.022_s3.h5
  [ -f "$f" ] || fail "scan: no $f"
  info_ok "$f"
done
ANA=$(ls "$OUTDIR"/analyze_*.txt)
[ -f "$ANA" ] || fail "no analyze table"
grep -q "B-A /sigma" "$ANA" || fail "analyze table without the comparison column: $(head -n 5 "$ANA")"
grep -q '"comparison"' "${ANA%.txt}.json" || fail "analyze JSON without the comparison"
if [ "$HAVE_TRAIN" = 1 ] && [ "$HAVE_SAMPLE" = 1 ]; then
  M=$OUTDIR/model_${TAG}_tiny_s1.h5
  G=$OUTDIR/gen_${TAG}_tiny_em10_s1.h5
  [ -f "$M" ] || fail "no $M"
  [ -f "$G" ] || fail "no $G"
  info_ok "$M"
  info_ok "$G"
fi
stray=$(find "$OUTDIR" -name '.*.tmp.*' -o -name '.launch-probe*')
[ -z "$stray" ] || fail "temporary files left behind: $stray"
say "outputs checked: $(cd "$OUTDIR" && ls *.h5 *.txt *.json | tr '\n' ' ')"

# ---- 3. USR1 to the batch shell: forwarded, program stops, job requeues itself --------
# HMC checkpoints on the signal and the requeued job resumes from it. The (long) rerun is
# cancelled once it has resumed; bit-for-bit resumption is tests/fault_tolerance.rs's job.
say "signal test: hmc (2 ranks) + scancel --signal=USR1 --batch -> checkpoint, requeue, --resume"
sig=$(L=48 N_CONFIGS=1000000 N_CHAINS=4 N_THERM=10 N_SEP=10 SEED=9 \
  sbatch --parsable $SBATCH_ARGS $HMC_SBATCH_ARGS --chdir="$OUTDIR" \
  --export=ALL,LATDIFF_JOBSCRIPTS="$ROOT/jobscripts" "$ROOT/jobscripts/hmc.sbatch")
wait_log "$sig" "^latdiff hmc: "    # the program's header: its signal handler is installed
scancel --signal=USR1 --batch "$sig"
wait_restarts "$sig" 1
log=$(job_log "$sig")
grep -q "batch shell got SIGUSR1: forwarding" "$log" || fail "no forwarding in $log"
grep -q "stopped by signal" "$log" || fail "the program did not report a stop by signal: $(tail -n 10 "$log")"
grep -q "requeueing job $sig" "$log" || fail "no requeue message in $log"
[ ! -e "$OUTDIR/hmc_L48_k${KAPPA}_l${LAMBDA}_s9.h5" ] || fail "a stopped HMC run left an output file"
[ -e "$OUTDIR/hmc_L48_k${KAPPA}_l${LAMBDA}_s9.h5.ckpt" ] || fail "the stopped HMC run left no checkpoint"
wait_log "$sig" "^resuming from .*hmc_L48"  # it started again, from the checkpoint
scancel "$sig"
wait_final "$sig"
rm -f "$OUTDIR"/hmc_L48_*.ckpt "$OUTDIR"/.hmc_L48_*.partial
say "USR1 forwarded, HMC checkpointed, job requeued and resumed"

# ---- 4. train: checkpoint on USR1, requeue, resume to the end ------------------------
if [ "$HAVE_TRAIN" = 1 ]; then
  say "signal test: train + scancel --signal=USR1 --batch -> checkpoint, requeue, --resume"
  # Enough steps for ~15 s, from how long the pipeline's train stage took for $STEPS.
  tlog=$(job_log "$(awk '$1 == "train" {print $2}' "$W/pipeline.jobs")")
  t1=$(sed -n 's/^\[\([0-9:]*\) .*\] run: .* train .*/\1/p' "$tlog" | head -n 1)
  t2=$(sed -n 's/^\[\([0-9:]*\) .*\] program exited.*/\1/p' "$tlog" | head -n 1)
  dt=$(($(date -d "$t2" +%s) - $(date -d "$t1" +%s)))
  [ "$dt" -ge 1 ] || dt=1
  tsteps=$((STEPS * 15 / dt))
  [ "$tsteps" -ge 400 ] || tsteps=400
  tsteps=${SLURM_TEST_TRAIN_SIGNAL_STEPS:-$tsteps}
  say "train signal test with $tsteps steps (the pipeline's $STEPS took ${dt}s)"
  tj=$(STEPS=$tsteps SEED=5 MODEL="$OUTDIR/model_sig.h5" DATA="$DATA" \
    sbatch --parsable $SBATCH_ARGS --chdir="$OUTDIR" \
    --export=ALL,LATDIFF_JOBSCRIPTS="$ROOT/jobscripts" "$ROOT/jobscripts/train.sbatch")
  wait_log "$tj" "run: .* train "
  sleep "${SLURM_TEST_TRAIN_SIGNAL_AFTER:-2}"
  [ "$(job_field "$tj" JobState)" = RUNNING ] ||
    fail "train finished before the signal: raise SLURM_TEST_TRAIN_SIGNAL_STEPS ($(show_job "$tj"))"
  scancel --signal=USR1 --batch "$tj"
  wait_restarts "$tj" 1
  log=$(job_log "$tj")
  grep -q "clean checkpoint after SIGUSR1" "$log" || fail "train: no clean checkpoint in $log"
  [ -f "$OUTDIR/model_sig.h5" ] || fail "train: no checkpoint file after USR1"
  wait_log "$tj" "exists: resuming"
  wait_final "$tj"
  expect_completed "$tj"
  grep -q -- "--resume" "$log" || fail "train: the restart did not use --resume"
  info_ok "$OUTDIR/model_sig.h5"
  say "train checkpointed on USR1, requeued, resumed and completed"
fi

# ---- 5. sample stopped by USR1: partial ensemble, exit 3, the job FAILS, afterok cancelled --
if [ "$HAVE_SAMPLE" = 1 ]; then
  say "signal test: sample + scancel --signal=USR1 --batch -> partial ensemble, job fails, afterok stage cancelled"
  SG=$OUTDIR/gen_sig.h5
  sj=$(GEN=$SG MODEL="$OUTDIR/model_${TAG}_tiny_s1.h5" L=32 N_CONFIGS=1000000 SAMPLE_STEPS=400 \
    SAMPLE_ARGS="--batch 4" LATDIFF_LOG_SECONDS=0.5 \
    sbatch --parsable $SBATCH_ARGS --chdir="$OUTDIR" \
    --export=ALL,LATDIFF_JOBSCRIPTS="$ROOT/jobscripts" "$ROOT/jobscripts/sample.sbatch")
  sj=${sj%%;*}
  aj=$(FILES="$DATA $SG" ANALYZE_OUT="$OUTDIR/analyze_sig" sbatch --parsable $SBATCH_ARGS --chdir="$OUTDIR" \
    --dependency="afterok:$sj" --kill-on-invalid-dep=yes \
    --export=ALL,LATDIFF_JOBSCRIPTS="$ROOT/jobscripts" "$ROOT/jobscripts/analyze.sbatch")
  aj=${aj%%;*}
  wait_log "$sj" "^\[sample\] [0-9]+/"   # a round is done: there is something to keep
  scancel --signal=USR1 --batch "$sj"
  wait_final "$sj" "$aj"
  [ "$(job_field "$sj" JobState)" = FAILED ] && [ "$(job_field "$sj" ExitCode)" = 3:0 ] ||
    { show_job "$sj"; fail "stopped sample job: expected FAILED 3:0"; }
  [ "$(job_field "$aj" JobState)" = CANCELLED ] || { show_job "$aj"; fail "the afterok analyze ran on a partial ensemble"; }
  grep -q "stopped  *by a signal" <<<"$("$BIN" info "$SG")" || fail "no partial ensemble at $SG"
  [ ! -e "$OUTDIR/analyze_sig.txt" ] || fail "analyze wrote a table of a partial ensemble"
  say "sample stopped: partial ensemble kept, job FAILED 3:0, analyze cancelled"
fi

stray=$(find "$OUTDIR" -name '.*.tmp.*' -o -name '.launch-probe*')
[ -z "$stray" ] || fail "temporary files left behind: $stray"
if [ ${#SKIPPED[@]} -gt 0 ]; then
  for s in "${SKIPPED[@]}"; do echo "slurm test: skipped (latdiff has no such subcommand yet): $s" >&2; done
fi
say "passed"
