#!/usr/bin/env bash
# The one-shot GPU check of issue 21's goals (under 9 minutes on one H100/H200), most important
# first: CUDA graphs and the default mode at batch 8, ZeRO-2, batch 32 (device time by kernel kind),
# fp16, 224/112 px, the warm-cache start, end to end and predict, the numerics and a killed-and-
# resumed run (bench/gpu_check.py says what each phase runs), each configuration in its own
# process, all sharing one inductor cache. The goals table (goal, target, measured, PASS/FAIL, the
# card named) is rewritten after every phase. At most 8 files in $OUT (the device tool's output
# folder) or bench/results/gpu/; six are written: goals.md, steps.md, e2e.md, numerics.md,
# results.json, gpu_check.log.
#
#   bash bench/fetch_wheels.sh            # here, once: .whl/ with deepspeed, decord, av, facenet-pytorch, ...
#   (device, carry .whl)  bash bench/gpu_check.sh
#   (device, carry .whl, warm)  MODE=reduce-overhead PHASES=zero2-32,224,cache,e2e BUDGET=280 bash bench/gpu_check.sh
#   REHEARSE=1 bash bench/gpu_check.sh    # every phase on the CPU at toy sizes (~8 minutes on 2 cores)
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
args=(--out "$OUT" --phases "${PHASES:-all}" --mode "${MODE:-measured}")
if [ "${REHEARSE:-0}" = 1 ]; then  # the CPU's toy phases take longer than the GPU's estimates: all of them run
  args+=(--rehearse --budget "${BUDGET:-1500}")
else
  args+=(--budget "${BUDGET:-470}")
fi
python3 bench/gpu_check.py "${args[@]}" 2>&1 | tee "$OUT/gpu_check.log"
