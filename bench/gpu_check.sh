#!/usr/bin/env bash
# One-shot GPU check (< 8 minutes on one H100), most important first, each step skipped when the
# time left is short: (1) the step benchmark at 160 px for fp32/fp16/bf16 with and without
# activation checkpointing, plain loop vs the DeepSpeed engine; (2) the levers one at a time
# against bf16 (no SDPA, checkpointing, frozen weights in bf16, compiled blocks); (3) ZeRO 1/2/3
# memory in bf16; (4) the data pipeline at 160 px with the batched augmentation on the GPU;
# (5) 224 px; (6) 2 DeepSpeed ranks when 2 GPUs are present. Writes Markdown tables to $OUT (the
# device tool's output folder) or bench/results/.
#
#   bash bench/fetch_wheels.sh      # here, once: .whl/ with deepspeed, decord, av, submitit, ...
#   (device)  bash bench/gpu_check.sh
#   REHEARSE=1 bash bench/gpu_check.sh   # CPU rehearsal of the same steps at toy sizes
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
start=$(date +%s)
left() { echo $(( 470 - ($(date +%s) - start) )); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch, deepspeed; print('torch', torch.__version__, 'deepspeed', deepspeed.__version__, 'cuda', torch.cuda.is_available())"
if [ "${REHEARSE:-0}" = 1 ]; then
  size=(--frames 2 --batch 1 --steps 1 --warmup 1); res160=112; res224=112; precs=fp32; z=0
else
  size=(--frames 16 --batch 8 --steps 8 --warmup 3); res160=160; res224=224; precs=fp32,fp16,bf16; z=0
fi
timeout "$(left)" python3 bench/train_step.py --resolutions $res160 --precisions $precs --grad-ckpt off,on --zero $z \
  "${size[@]}" --markdown "$OUT/gpu_${res160}.md" | tee "$OUT/gpu_${res160}.log"
prec=bf16; [ "${REHEARSE:-0}" = 1 ] && prec=fp32
if [ "$(left)" -gt 150 ]; then
  timeout "$(left)" python3 bench/train_step.py --levers --resolutions $res160 --precisions $prec \
    "${size[@]}" --markdown "$OUT/gpu_${res160}_levers.md" | tee "$OUT/gpu_${res160}_levers.log"
fi
if [ "$(left)" -gt 120 ]; then
  zs=1,2,3; [ "${REHEARSE:-0}" = 1 ] && zs=0
  timeout "$(left)" python3 bench/train_step.py --resolutions $res160 --precisions $prec --grad-ckpt off --zero $zs \
    "${size[@]}" --markdown "$OUT/gpu_${res160}_zero.md" | tee "$OUT/gpu_${res160}_zero.log"
fi
if [ "$(left)" -gt 100 ]; then
  timeout "$(left)" python3 bench/data_pipeline.py --resolutions $res160 --clips "${CLIPS:-32}" \
    --markdown "$OUT/gpu_data_pipeline.md" | tee "$OUT/gpu_data_pipeline.log"
fi
if [ "$(left)" -gt 90 ]; then
  timeout "$(left)" python3 bench/train_step.py --resolutions $res224 --precisions $prec --grad-ckpt off,on --zero "" \
    "${size[@]}" --markdown "$OUT/gpu_${res224}.md" | tee "$OUT/gpu_${res224}.log"
fi
ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$ngpu" -ge 2 ] && [ "$(left)" -gt 60 ]; then
  spec='{"res": 160, "frames": 16, "batch": 8, "precision": "bf16", "ckpt": false, "fused": true, "steps": 8,
         "warmup": 3, "engine": "deepspeed", "ds_config": "zero2_bf16.json", "label": "deepspeed 2 ranks"}'
  timeout "$(left)" python3 -m deepspeed.launcher.runner --num_gpus 2 bench/train_step.py --worker "$spec" \
    | tee "$OUT/gpu_2ranks.log" | grep RESULT
fi
echo "gpu_check done in $(( $(date +%s) - start )) s; tables in $OUT"
