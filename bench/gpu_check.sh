#!/usr/bin/env bash
# The one-shot GPU check (under 8 minutes on one H100/H200), most important first: the speed
# goals in one table with PASS/FAIL (bench/gpu_check.py says what each phase runs), then the
# levers. At most 8 files in $OUT (the device tool's output folder) or bench/results/gpu/:
# goals.md, steps.md, e2e.md, numerics.md, levers.md, data_pipeline.md, results.json, gpu_check.log.
#
#   bash bench/fetch_wheels.sh            # here, once: .whl/ with deepspeed, decord, av, submitit, ...
#   (device, carry .whl)  bash bench/gpu_check.sh
#   (device, carry .whl, warm)  PHASES=zero2,224 BUDGET=300 bash bench/gpu_check.sh   # the rest
#   REHEARSE=1 bash bench/gpu_check.sh    # the same phases on the CPU at toy sizes
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch, deepspeed; print('torch', torch.__version__, 'deepspeed', deepspeed.__version__, 'cuda', torch.cuda.is_available())"
args=(--out "$OUT" --budget "${BUDGET:-470}" --phases "${PHASES:-all}")
[ "${REHEARSE:-0}" = 1 ] && args+=(--rehearse)
python3 bench/gpu_check.py "${args[@]}" 2>&1 | tee "$OUT/gpu_check.log"
