#!/usr/bin/env bash
# The paper's protocol as one SLURM job array: K folds x 3 resolutions (112/160/224) = 15 tasks for
# DFEW and MAFW (K = 5; K is the dataset's, from mma_dfer.datasets: CREMA-D, RAVDESS, a manifest),
# each training one (fold, resolution) run with `srun python launch/train.py` on the GPUs it
# got, then one aggregation job (afterany dependency) that writes the table.
#
#   sbatch slurm/all_folds.sh                                   # DFEW, 15 tasks, 1 GPU each
#   sbatch --export=ALL,DATASET=mafw slurm/all_folds.sh
#   sbatch --export=ALL,DATASET=cremad,SETS="data.root=/data/CREMA-D" slurm/all_folds.sh
#   sbatch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 slurm/all_folds.sh   # 16 ranks per run
#   sbatch --partition=gpu --account=proj --time=4:00:00 --mem=128G slurm/all_folds.sh
#   sbatch --gpus-per-node=0 --array=0-3 --export=ALL,CPU_ONLY=1,FOLDS="1 2",RESOLUTIONS="112 160" ...
#
# Several nodes per run: srun starts one rank per task on every node of the allocation; the
# rendezvous is the first node of the allocation (MASTER_ADDR, resolved there, never localhost)
# and MASTER_PORT = 10000 + job id % 20000 (one per job, so two runs sharing a node do not clash);
# both may be set through --export to override. On a GPU cluster set NCCL_SOCKET_IFNAME (and
# GLOO_SOCKET_IFNAME) to the interface the node names resolve to if that is not the default
# route's, and give every rank CPUs for its loader workers (--cpus-per-task, data.num_workers).
#
# Knobs (environment variables, e.g. through --export=ALL,NAME=value):
#   DATASET       dfew | mafw | cremad | ravdess | manifest       (default dfew)
#   FOLDS         folds of the grid, space-separated              (default: the dataset's, "1 2 ... K")
#   RESOLUTIONS   resolutions of the grid                         (default "112 160 224")
#                 task i runs fold FOLDS[i % n_folds] at RESOLUTIONS[i / n_folds]; with a
#                 reduced grid pass a matching --array (tasks beyond the grid exit at once)
#   CONFIG        one YAML for every task (default configs/${DATASET}_${RES}.yaml, else configs/paper.yaml)
#   DS_CONFIG     DeepSpeed JSON (default ds_configs/zero0_bf16.json: one GPU per run needs no ZeRO;
#                 zero2_bf16.json across GPUs; CPU_ONLY: cpu_fp32.json)
#   SETS          extra config overrides, space-separated key=value (e.g. "data.root=/data/DFEW")
#   RUNS_ROOT     where runs/<dataset>/res<R>/fold<k>/ go        (default runs)
#   MMA_DFER_HOME the repository (default: the folder sbatch was called from)
#   VENV          virtual environment to activate                 (default $MMA_DFER_HOME/.venv)
#   CPU_ONLY=1    no GPUs: DeepSpeed's CPU accelerator with gloo (request --gpus-per-node=0)
#   SEED          train.seed of every task; the run folders then end in fold<k>/seed<SEED>/
#                 (slurm/sweep.sh: seeds as a sweep axis; default: the config's seed, fold<k>/)
#   TASK          grid index to run instead of SLURM_ARRAY_TASK_ID (slurm/sweep.sh: one run)
#   AGGREGATE=0   do not submit the aggregation job (slurm/sweep.sh submits its report job)
#   MAX_RESTARTS  requeues allowed after a lost rank (exit 76), counted by SLURM_RESTART_COUNT (default 10)
#   TORCHINDUCTOR_CACHE_DIR  the compiled-artifact cache all tasks share (default $RUNS_ROOT/.compile-cache)
#
# Preemption and time limits: SLURM sends USR1 120 s before the limit (--signal); the run writes
# a checkpoint and exits with code 75, and this script requeues the task, which resumes from the
# checkpoint. A task requeued by the scheduler (preemption, `scontrol requeue`) resumes the same
# way. A node lost mid-run: SLURM marks it down and requeues the task (JobRequeue, --requeue),
# which resumes from its checkpoint on other nodes; a rank whose peer vanished fails its next
# collective after train.collective_timeout_s with exit code 76, and this script requeues the
# task (at most MAX_RESTARTS times). A run whose folder already holds this config's result is
# skipped (the trainer compares the config fingerprints), so resubmitting the array is safe; a
# folder holding another config's run fails its task with exit 2, naming the fields that differ,
# and is left as it is.
#SBATCH --job-name=mma-dfer
#SBATCH --array=0-14
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

DATASET=${DATASET:-dfew}
RESOLUTIONS=${RESOLUTIONS:-112 160 224}
RUNS_ROOT=${RUNS_ROOT:-runs}
MMA_DFER_HOME=${MMA_DFER_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
VENV=${VENV:-$MMA_DFER_HOME/.venv}
SETS=${SETS:-}
if [ "${CPU_ONLY:-0}" = 1 ]; then
  export DS_ACCELERATOR=cpu
  DS_CONFIG=${DS_CONFIG:-ds_configs/cpu_fp32.json}
else
  DS_CONFIG=${DS_CONFIG:-ds_configs/zero0_bf16.json}
fi

cd "$MMA_DFER_HOME" || { echo "all_folds.sh: cannot cd to $MMA_DFER_HOME" >&2; exit 1; }
# shellcheck disable=SC1091
[ -f "$VENV/bin/activate" ] && . "$VENV/bin/activate"

read -ra resolutions <<< "$RESOLUTIONS"
# the shipped paper config of a dataset and resolution, else the paper's protocol pointed at the dataset
paper_config() { if [ -f "configs/${DATASET}_$1.yaml" ]; then echo "configs/${DATASET}_$1.yaml"; else echo configs/paper.yaml; fi; }
if [ -z "${FOLDS:-}" ]; then  # the dataset's folds 1..K, from the registry (imports no torch)
  # shellcheck disable=SC2086
  FOLDS=$(python -c 'import sys
from mma_dfer.config import ConfigError, load_config
from mma_dfer.datasets import num_folds
try:
    print(*range(1, num_folds(load_config(sys.argv[1], sys.argv[2:]).data) + 1))
except ConfigError as e:
    sys.exit(f"error: {e}")' "${CONFIG:-$(paper_config "${resolutions[0]}")}" "data.dataset=$DATASET" $SETS) || exit 2
fi
read -ra folds <<< "$FOLDS"
n_folds=${#folds[@]}
total=$(( n_folds * ${#resolutions[@]} ))
task=${TASK:-${SLURM_ARRAY_TASK_ID:-0}}
array_id=${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-0}}
mkdir -p "$RUNS_ROOT"

# -- one compiled-artifact cache for every task (issue 21) -----------------------------------------
# The tasks compile the same few graphs (one per resolution): inductor's cache on the runs root's
# shared file system (its FX graphs, AOTAutograd entries and, unless TRITON_CACHE_DIR says
# otherwise, the Triton kernels) lets the first task of a geometry pay the compilation (~85 s on
# an H200) and the others, requeues and later arrays load it. A value set by the user wins.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(cd "$RUNS_ROOT" && pwd)/.compile-cache}
# -------------------------------------------------------------------------------------------------

# The aggregation job, submitted once per array by its lowest task (a marker guards requeues).
marker=$RUNS_ROOT/.aggregate-submitted-$array_id
if [ "${AGGREGATE:-1}" = 1 ] && [ "$task" = "${SLURM_ARRAY_TASK_MIN:-0}" ] && [ -n "${SLURM_JOB_ID:-}" ] && mkdir "$marker" 2>/dev/null; then
  fold_list=$(IFS=,; echo "${folds[*]}")
  res_list=$(IFS=,; echo "${resolutions[*]}")
  sbatch --dependency="afterany:$array_id" --job-name=mma-dfer-aggregate --nodes=1 --ntasks=1 \
    --cpus-per-task=1 --mem=2G --time=30 ${SLURM_JOB_PARTITION:+--partition=$SLURM_JOB_PARTITION} \
    ${SLURM_JOB_ACCOUNT:+--account=$SLURM_JOB_ACCOUNT} --output="$RUNS_ROOT/aggregate-$array_id.out" \
    --wrap="cd '$MMA_DFER_HOME' && { [ -f '$VENV/bin/activate' ] && . '$VENV/bin/activate'; true; } && \
python launch/aggregate.py '$RUNS_ROOT' --json '$RUNS_ROOT/aggregate.json' --csv '$RUNS_ROOT/aggregate.csv' \
--folds '$fold_list' --resolutions '$res_list'; test \$? -ne 2" \
    || echo "all_folds.sh: could not submit the aggregation job" >&2
fi

if [ "$task" -ge "$total" ]; then
  echo "task $task is beyond the grid of $total runs (FOLDS='$FOLDS' RESOLUTIONS='$RESOLUTIONS'); nothing to do"
  exit 0
fi
fold=${folds[$(( task % n_folds ))]}
res=${resolutions[$(( task / n_folds ))]}
out=$RUNS_ROOT/$DATASET/res$res/fold$fold
[ -n "${SEED:-}" ] && out=$out/seed$SEED
config=${CONFIG:-$(paper_config "$res")}

sets=(--set "data.dataset=$DATASET" --set "data.fold=$fold" --set "data.resolution=$res" --set "output_dir=$out")
[ -n "${SEED:-}" ] && sets+=(--set "train.seed=$SEED")
for kv in $SETS; do sets+=(--set "$kv"); done
echo "task $task: $DATASET fold $fold res $res -> $out (restart ${SLURM_RESTART_COUNT:-0}, ${SLURM_NTASKS:-1} ranks" \
  "on ${SLURM_JOB_NODELIST:-$(hostname)}, batch on $(hostname))"
# Requeue this run, unless SLURM already has: a lost node makes SLURM requeue the job itself, and
# this script (still alive for KillWait) must not requeue the next run of it.
requeue_self() {
  local info
  info=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null)
  if ! grep -q "JobState=RUNNING" <<< "$info" || ! grep -q "Restarts=${SLURM_RESTART_COUNT:-0}\b" <<< "$info"; then
    echo "job $SLURM_JOB_ID is already requeued"
    return 0
  fi
  scontrol requeue "$SLURM_JOB_ID"
}
srun --kill-on-bad-exit=1 python launch/train.py --config "$config" --deepspeed_config "$DS_CONFIG" \
  "${sets[@]}" --resume auto
rc=$?
case $rc in
  0) echo "task $task done: $out/result.json" ;;
  75|138|143)  # checkpointed on a signal (or killed by USR1/TERM before training started)
    echo "task $task stopped by a signal (exit $rc); requeueing job ${SLURM_JOB_ID:-?}"
    [ -n "${SLURM_JOB_ID:-}" ] && requeue_self
    exit 0 ;;
  76)  # a collective failed: another rank or its node is gone; resume from the last checkpoint
    if [ -n "${SLURM_JOB_ID:-}" ] && [ "${SLURM_RESTART_COUNT:-0}" -lt "${MAX_RESTARTS:-10}" ]; then
      echo "task $task lost a rank (exit 76); requeueing job $SLURM_JOB_ID"
      requeue_self && exit 0
    fi
    echo "task $task lost a rank (exit 76) after ${SLURM_RESTART_COUNT:-0} restarts; not requeued" >&2 ;;
  *) echo "task $task failed with exit code $rc" >&2 ;;
esac
exit "$rc"
