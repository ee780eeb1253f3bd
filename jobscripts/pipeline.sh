#!/usr/bin/env bash
# Submits the whole study as four dependent Slurm jobs:
#   hmc -> train -> sample -> analyze   (each starts only when the previous succeeded:
#                                        --dependency=afterok; a failure cancels the rest)
#   bash jobscripts/pipeline.sh
#   L=32 KAPPA=0.27 PRESET=local STEPS=50000 SAMPLER=pc OUTDIR=$SCRATCH/run1 bash jobscripts/pipeline.sh
#   THEORY=u1 BETA=3 STAGES="hmc analyze" bash jobscripts/pipeline.sh
# Every variable of the stage scripts is passed on (sbatch exports the environment); the
# file names are fixed here once (DATA, MODEL, GEN, ANALYZE_OUT) so all stages agree.
#
# Pipeline variables:
#   STAGES      which stages to submit (default "hmc train sample analyze"); a stage left
#               out is assumed done (its output must exist when the next one starts)
#   AFTER       job id(s), colon-separated, the first submitted stage waits for (afterok)
#   EXTRA_FILES more ensembles for the analyze stage to compare (after DATA and GEN)
#   SBATCH_ARGS extra sbatch options for every stage (e.g. "--partition=short --account=x")
#   HMC_SBATCH_ARGS, TRAIN_SBATCH_ARGS, SAMPLE_SBATCH_ARGS, ANALYZE_SBATCH_ARGS: per stage
#               (e.g. TRAIN_SBATCH_ARGS="--gpus-per-task=1 --time=24:00:00")
#   DRY_RUN=1   print the sbatch commands instead of submitting
# Prints one line per stage, "stage JOBID", and writes them to $OUTDIR/pipeline.jobs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export LATDIFF_JOBSCRIPTS=$HERE
STAGES=${STAGES:-hmc train sample analyze}
export OUTDIR=${OUTDIR:-$PWD/out}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
if [ -n "${LATDIFF:-}" ]; then
  case $LATDIFF in /*) ;; *) LATDIFF=$PWD/$LATDIFF ;; esac
  export LATDIFF
fi

# The names the stage scripts would choose, fixed once for all stages (the theory's tag
# from THEORY and its couplings, as slurm-common.sh makes it for them).
. "$HERE/slurm-common.sh"
latdiff_theory
SEED=${SEED:-1}
PRESET=${PRESET:-local}
SAMPLER=${SAMPLER:-em}
SAMPLE_STEPS=${SAMPLE_STEPS:-100}
mh=""
[ "${METROPOLIS:-0}" = 1 ] && mh=_mh
export DATA=${DATA:-$OUTDIR/hmc_${TAG}_s${SEED}.h5}
export MODEL=${MODEL:-$OUTDIR/model_${TAG}_${PRESET}_s${SEED}.h5}
export GEN=${GEN:-$OUTDIR/gen_${TAG}_${PRESET}_${SAMPLER}${SAMPLE_STEPS}${mh}_s${SEED}.h5}
files="$DATA"
ana=$OUTDIR/analyze_${TAG}_s${SEED}
case " $STAGES " in *" sample "*)
  files="$files $GEN"
  ana=$OUTDIR/analyze_${TAG}_${PRESET}_${SAMPLER}${SAMPLE_STEPS}${mh}_s${SEED}
  ;;
esac
export ANALYZE_OUT=${ANALYZE_OUT:-$ana}
[ -n "${EXTRA_FILES:-}" ] && files="$files $EXTRA_FILES"
export FILES=${FILES:-$files}

dep=${AFTER:-}
jobs_file=$OUTDIR/pipeline.jobs
: >"$jobs_file"
submit() {
  local stage=$1 extra_var id
  extra_var=$(echo "${stage}_SBATCH_ARGS" | tr '[:lower:]' '[:upper:]')
  # shellcheck disable=SC2206
  local cmd=(sbatch --parsable --chdir="$OUTDIR" ${SBATCH_ARGS:-} ${!extra_var:-})
  [ -n "$dep" ] && cmd+=(--dependency="afterok:$dep" --kill-on-invalid-dep=yes)
  cmd+=("$HERE/$stage.sbatch")
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "${cmd[*]}" >&2
    id=DRY$stage
  else
    id=$("${cmd[@]}")
    id=${id%%;*}   # "id;cluster" on multi-cluster sites
  fi
  echo "$stage $id" | tee -a "$jobs_file"
  dep=$id
}
for s in $STAGES; do
  case $s in
    hmc | train | sample | analyze) submit "$s" ;;
    *) echo "pipeline: unknown stage '$s' (hmc train sample analyze)" >&2; exit 2 ;;
  esac
done
