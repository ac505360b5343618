#!/usr/bin/env bash
# Data preparation as one SLURM job array: task I of the N-task array runs
# `prepare --shard I/N` (the clips I, I+N, I+2N, ... of the sorted clip list: audio, MTCNN faces,
# cache and packed store as PREPARE_ARGS asks), then one merge job (afterany dependency) runs
# `prepare --merge N`, which writes the summary and the packed store's index that one run would
# have written, or fails naming the pieces that did not finish.
#
#   sbatch --export=ALL,DATASET=mafw,RAW=/data/MAFW,OUT=/data/MAFW-prepared,PREPARE_ARGS="--faces mtcnn --pack" \
#       slurm/prepare.sh                                        # 8 tasks of 16 CPUs (the #SBATCH defaults)
#   sbatch --array=0-3 --gpus-per-node=1 --export=ALL,...,PREPARE_ARGS="--faces mtcnn --device cuda --pack" \
#       slurm/prepare.sh                                        # MTCNN on a GPU per task
#   sbatch --export=ALL,DATASET=dfew,RAW=/data/DFEW,OUT=/data/DFEW-prepared,PREPARE_ARGS=--pack slurm/prepare.sh
#
# Knobs (environment variables, e.g. through --export=ALL,NAME=value):
#   DATASET       dfew | mafw                                      (required)
#   RAW           the dataset as downloaded                         (required)
#   OUT           the output folder, the later data.root            (required; shared by every node)
#   PREPARE_ARGS  more prepare options, space-separated (--faces mtcnn, --pack, --device cuda, ...)
#   WORKERS       processes per task                                (default SLURM_CPUS_PER_TASK, else 1)
#   MMA_DFER_HOME the repository (default: the folder sbatch was called from)
#   VENV          virtual environment to activate                   (default $MMA_DFER_HOME/.venv)
#
# The pieces are resumable (finished clips are skipped, the store continues from its journal), so
# a requeued or resubmitted task redoes only what it had not finished; resubmitting the whole
# array after a failed task is safe. N is the array's task count: keep the same --array on
# resubmission (other N split the clips differently and the merge would not find its pieces).
#SBATCH --job-name=mma-dfer-prepare
#SBATCH --array=0-7
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16
#SBATCH --mem=32G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%A_%a.out
set -uo pipefail

: "${DATASET:?set DATASET (dfew or mafw)}" "${RAW:?set RAW (the dataset as downloaded)}" "${OUT:?set OUT}"
MMA_DFER_HOME=${MMA_DFER_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
VENV=${VENV:-$MMA_DFER_HOME/.venv}
WORKERS=${WORKERS:-${SLURM_CPUS_PER_TASK:-1}}
read -ra extra <<< "${PREPARE_ARGS:-}"

cd "$MMA_DFER_HOME" || { echo "prepare.sh: cannot cd to $MMA_DFER_HOME" >&2; exit 1; }
# shellcheck disable=SC1091
[ -f "$VENV/bin/activate" ] && . "$VENV/bin/activate"

pieces=${SLURM_ARRAY_TASK_COUNT:-1}
piece=$(( ${SLURM_ARRAY_TASK_ID:-0} - ${SLURM_ARRAY_TASK_MIN:-0} ))
array_id=${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-0}}
mkdir -p "$OUT"

# The merge job, submitted once per array by its lowest task (a marker guards requeues).
marker=$OUT/.prepare-merge-submitted-$array_id
if [ "$piece" = 0 ] && [ -n "${SLURM_JOB_ID:-}" ] && mkdir "$marker" 2>/dev/null; then
  sbatch --dependency="afterany:$array_id" --job-name=mma-dfer-prepare-merge --nodes=1 --ntasks=1 \
    --cpus-per-task=1 --mem=4G --time=60 ${SLURM_JOB_PARTITION:+--partition=$SLURM_JOB_PARTITION} \
    ${SLURM_JOB_ACCOUNT:+--account=$SLURM_JOB_ACCOUNT} --output="$OUT/prepare-merge-$array_id.out" \
    --wrap="cd '$MMA_DFER_HOME' && { [ -f '$VENV/bin/activate' ] && . '$VENV/bin/activate'; true; } && \
python -m mma_dfer prepare --dataset '$DATASET' --raw '$RAW' --out '$OUT' --merge $pieces" \
    || echo "prepare.sh: could not submit the merge job" >&2
fi

echo "piece $piece of $pieces: $DATASET $RAW -> $OUT on $(hostname) with $WORKERS workers (restart ${SLURM_RESTART_COUNT:-0})"
python -m mma_dfer prepare --dataset "$DATASET" --raw "$RAW" --out "$OUT" --shard "$piece/$pieces" \
  --workers "$WORKERS" "${extra[@]}"
