#!/usr/bin/env bash
# A sweep file (configs/sweeps/*.yaml) as one SLURM job array: task i trains run i of the sweep
# (variants x datasets x resolutions x folds, in the file's order) into
# runs/<sweep>/<variant>/<dataset>/res<R>/fold<k>/ by running slurm/all_folds.sh for that one run:
# the same srun, the same requeue on exit 75 (time limit, preemption), the same skip of runs that
# have a valid result.json, the same knobs. The lowest task copies the definition next to the
# runs (for the report), cancels the array tasks beyond the sweep and submits the report job
# (afterany), which writes $RUNS_ROOT/report.html over everything under $RUNS_ROOT.
#
#   sbatch slurm/sweep.sh configs/sweeps/table4.yaml
#   sbatch --export=ALL,SETS="data.root=/data/DFEW" slurm/sweep.sh configs/sweeps/table4.yaml
#   sbatch --partition=gpu --time=12:00:00 slurm/sweep.sh configs/sweeps/table1.yaml
#   sbatch --gpus-per-node=0 --export=ALL,CPU_ONLY=1,CONFIG=configs/demo.yaml,FOLDS="1 2",RESOLUTIONS=32 ...
#
# The array has 30 tasks by default (table1.yaml, the largest: 2 datasets x 5 folds x 3
# resolutions); tasks beyond a smaller sweep are cancelled while pending (or exit at once). For a
# larger sweep pass --array=0-<N-1>: the lowest task says N when the array is too short.
#
# Knobs (environment variables, e.g. through --export=ALL,NAME=value):
#   CONFIG, DS_CONFIG, SETS, RUNS_ROOT, MMA_DFER_HOME, VENV, CPU_ONLY, TORCHINDUCTOR_CACHE_DIR   as in
#                 slurm/all_folds.sh (the cache: one for the sweep, $RUNS_ROOT/.compile-cache)
#                 (CONFIG replaces the sweep's config; SETS must not change what a variant sets)
#   FOLDS, RESOLUTIONS   replace the sweep's grid (space- or comma-separated)
#   SEEDS         training seeds (space- or comma-separated), replacing the sweep's: each run once per
#                 seed, into .../fold<k>/seed<s>/ (the array grows by that factor: pass a long enough --array)
#   VARIANTS      run only these variants (space- or comma-separated); the others stay listed as
#                 missing in the report
#SBATCH --job-name=mma-dfer-sweep
#SBATCH --array=0-29
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%A_%a.out
set -uo pipefail

sweep_file=${1:?usage: sbatch slurm/sweep.sh SWEEP_FILE (configs/sweeps/*.yaml)}
MMA_DFER_HOME=${MMA_DFER_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
VENV=${VENV:-$MMA_DFER_HOME/.venv}
RUNS_ROOT=${RUNS_ROOT:-runs}
cd "$MMA_DFER_HOME" || { echo "sweep.sh: cannot cd to $MMA_DFER_HOME" >&2; exit 1; }
# shellcheck disable=SC1091
[ -f "$VENV/bin/activate" ] && . "$VENV/bin/activate"

task=${SLURM_ARRAY_TASK_ID:-0}
array_id=${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-0}}
lowest=0
[ "$task" = "${SLURM_ARRAY_TASK_MIN:-0}" ] && lowest=1
FOLDS=${FOLDS:-}
RESOLUTIONS=${RESOLUTIONS:-}
VARIANTS=${VARIANTS:-}
SEEDS=${SEEDS:-}
# The sweep's run number $task as shell variables (TOTAL, VARIANT, DATASET, FOLD, RES, ...).
vars=$(python -m mma_dfer.experiments.sweep task "$sweep_file" "$task" --runs-root "$RUNS_ROOT" \
  --config "${CONFIG:-}" --folds "${FOLDS// /,}" --resolutions "${RESOLUTIONS// /,}" --variants "$VARIANTS" --seeds "${SEEDS// /,}" \
  --sets "${SETS:-}" $([ "$lowest" = 1 ] && echo --write-definition)) || exit 2
eval "$vars"

# The report job and the surplus tasks, once per array by its lowest task (a marker guards requeues).
marker=$RUNS_ROOT/.report-submitted-$array_id
if [ "$lowest" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ] && mkdir "$marker" 2>/dev/null; then
  last=${SLURM_ARRAY_TASK_MAX:-0}
  if [ "$TOTAL" -le "$last" ]; then
    scancel "${array_id}_[${TOTAL}-${last}]" 2>/dev/null || true
  elif [ "$TOTAL" -gt $(( last + 1 )) ]; then
    echo "sweep.sh: $sweep_file has $TOTAL runs but this array ends at task $last; submit again with" \
      "--array=$(( last + 1 ))-$(( TOTAL - 1 )) for the rest" >&2
  fi
  sbatch --dependency="afterany:$array_id" --job-name=mma-dfer-report --nodes=1 --ntasks=1 \
    --cpus-per-task=1 --mem=4G --time=30 ${SLURM_JOB_PARTITION:+--partition=$SLURM_JOB_PARTITION} \
    ${SLURM_JOB_ACCOUNT:+--account=$SLURM_JOB_ACCOUNT} --output="$RUNS_ROOT/report-$array_id.out" \
    --wrap="cd '$MMA_DFER_HOME' && { [ -f '$VENV/bin/activate' ] && . '$VENV/bin/activate'; true; } && \
python launch/report.py '$RUNS_ROOT' --out '$RUNS_ROOT/report.html'" \
    || echo "sweep.sh: could not submit the report job" >&2
fi

if [ "$task" -ge "$TOTAL" ]; then
  echo "task $task is beyond sweep $SWEEP_NAME ($TOTAL runs); nothing to do"
  exit 0
fi
echo "sweep $SWEEP_NAME task $task of $TOTAL: variant $VARIANT, $DATASET fold $FOLD res $RES${SEED:+ seed $SEED}"
# one compiled-artifact cache for the whole sweep (all_folds.sh would keep one per variant's root)
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(mkdir -p "$RUNS_ROOT" && cd "$RUNS_ROOT" && pwd)/.compile-cache}
TASK=0 AGGREGATE=0 SEED=$SEED DATASET=$DATASET FOLDS=$FOLD RESOLUTIONS=$RES CONFIG=$RUN_CONFIG SETS=$RUN_SETS \
  RUNS_ROOT=$VARIANT_ROOT MMA_DFER_HOME=$MMA_DFER_HOME VENV=$VENV exec bash slurm/all_folds.sh
