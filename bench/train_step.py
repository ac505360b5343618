"""Step benchmark: the full MMA-DFER (two ViT-B encoders) forward + backward + optimizer step,
through a plain PyTorch loop (torch.amp) and through the DeepSpeed engine, side by side.

    python bench/train_step.py --quick                      # CPU, a few minutes
    python bench/train_step.py --resolutions 160,224 --precisions fp32,bf16,fp16 --grad-ckpt off,on \
        --zero 0,2 --markdown bench/results/gpu.md          # on a GPU

Each configuration runs in its own process (so peak memory is its own), reports clips/s, step
time percentiles, peak memory (CUDA peak on GPU, max RSS on CPU) and model-FLOPs utilisation
against the device's peak (FLOPs per clip counted from the model by running it on meta tensors,
mma_dfer.models.flops). The last line compares DeepSpeed with the plain loop at the same
precision: ``deepspeed/plain throughput ratio: <x>``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mma_dfer.utils import atomic_write_text  # noqa: E402  (after the path set-up)

# Dense peak TFLOP/s by device name fragment and precision (vendor datasheets; perf-anchors).
PEAKS = {"H100": {"bf16": 989, "fp16": 989, "fp32": 67, "tf32": 495}, "H200": {"bf16": 989, "fp16": 989, "fp32": 67},
         "A100": {"bf16": 312, "fp16": 312, "fp32": 19.5}, "V100": {"fp16": 125, "fp32": 15.7}}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def device_peak(precision: str):
    import torch

    if not torch.cuda.is_available():
        return None, "cpu"
    name = torch.cuda.get_device_name()
    for key, peaks in PEAKS.items():
        if key in name:
            tf32 = precision == "fp32" and torch.backends.cuda.matmul.allow_tf32
            return peaks.get("tf32" if tf32 else precision, None), name
    return None, name


def worker(spec: dict) -> dict:
    """One configuration: warm-up, then timed steps; returns the measurements."""
    import numpy as np
    import torch

    from mma_dfer.config import load_config
    from mma_dfer.engine.trainer import peak_memory_mb
    from mma_dfer.models import build_model
    from mma_dfer.models.flops import train_flops_per_clip

    cfg = load_config(None, [f"data.resolution={spec['res']}", f"data.num_frames={spec['frames']}",
                             f"model.grad_checkpointing={str(spec['ckpt']).lower()}",
                             f"model.fused_attn={str(spec.get('fused', True)).lower()}",
                             f"model.frozen_dtype={spec.get('frozen_dtype', 'float32')}",
                             f"model.compile_blocks={str(spec.get('compile', False)).lower()}"])
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    model = build_model(cfg, load_pretrained=False).train()
    b, prec = spec["batch"], spec["precision"]
    dtype = getattr(torch, DTYPES[prec])
    video = torch.rand(b, spec["frames"], 3, spec["res"], spec["res"], device=device)
    audio = torch.randn(b, 1, 512, 128, device=device)
    label = torch.randint(0, 7, (b,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()
    if spec["engine"] == "deepspeed":
        import deepspeed

        from mma_dfer.engine.distributed import detect

        detect().export()
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False)
        ds = json.loads((ROOT / "ds_configs" / spec["ds_config"]).read_text())
        ds.update(train_batch_size=b, train_micro_batch_size_per_gpu=b, gradient_accumulation_steps=1)
        opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, weight_decay=1e-2)
        engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=ds, dist_init_required=False)
        in_dtype = torch.float16 if engine.fp16_enabled() else torch.bfloat16 if engine.bfloat16_enabled() else torch.float32

        def step():
            loss = loss_fn(engine(video.to(in_dtype), audio.to(in_dtype)).float(), label)
            engine.backward(loss)
            engine.step()
    else:
        model.to(device)
        opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, weight_decay=1e-2)
        scaler = torch.amp.GradScaler(enabled=prec == "fp16")

        def step():
            with torch.autocast(device.type, dtype=dtype, enabled=prec != "fp32"):
                loss = loss_fn(model(video, audio).float(), label)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)

    for _ in range(spec["warmup"]):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak_mb = peak_memory_mb(device)
    flops, _ = train_flops_per_clip(cfg)
    clips_s = b / float(np.mean(times))
    peak_tflops, device_name = device_peak(prec)
    return {**spec, "clips_per_s": clips_s, "p50_ms": 1e3 * float(np.percentile(times, 50)),
            "p90_ms": 1e3 * float(np.percentile(times, 90)), "peak_mb": peak_mb, "gflops_per_clip": flops / 1e9,
            "mfu": (flops * clips_s / (peak_tflops * 1e12)) if peak_tflops else None, "device": device_name,
            "torch": torch.__version__}


def run_worker(spec: dict) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**spec, "error": " | ".join(tail)}
    return json.loads(lines[-1][len("RESULT "):])


def row(r: dict) -> str:
    if "error" in r:
        return (f"| {r['res']} | {r['frames']} | {r['batch']} | {r['precision']} | {r['ckpt']} | {r['label']} | "
                f"failed: {r['error'][:80]} | | | | |")
    mfu = f"{100 * r['mfu']:.1f}" if r["mfu"] is not None else "n/a"
    return (f"| {r['res']} | {r['frames']} | {r['batch']} | {r['precision']} | {r['ckpt']} | {r['label']} | "
            f"{r['clips_per_s']:.2f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['peak_mb']:.0f} | {mfu} |")


HEADER = ("| res | frames | batch | precision | grad ckpt | engine | clips/s | step p50 ms | step p90 ms | "
          "peak MB | MFU % |\n|---|---|---|---|---|---|---|---|---|---|---|")


def run_levers(args, cuda: bool) -> int:
    """Each lever alone against the same plain-loop baseline, in separate processes of one run."""
    import torch

    res, prec = int(args.resolutions.split(",")[0]), args.precisions.split(",")[0]
    base = dict(res=res, frames=args.frames, batch=args.batch, precision=prec, ckpt=False, fused=True,
                steps=args.steps, warmup=args.warmup, engine="plain", label=f"plain {prec} (baseline)")
    bf16_ok = cuda or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    note = "" if bf16_ok else ("this CPU has no native bf16 matmul (no AVX512-BF16/AMX): the bf16 levers would "
                               "time its emulation, so they are skipped (bench/memory.py measures their memory)\n\n")
    print(note, end="", flush=True)
    levers = [{"precision": "bf16", "label": "bf16 autocast"}] if prec == "fp32" and bf16_ok else []
    if prec == "fp32" and cuda:
        levers.append({"precision": "fp16", "label": "fp16 autocast"})
    levers += [{"fused": False, "label": "explicit-softmax attention (no SDPA)"},
               {"ckpt": True, "label": "grad checkpointing"}]
    levers += [{"frozen_dtype": "bfloat16", "label": "frozen weights in bf16"}] if bf16_ok else []
    levers += [{"compile": True, "label": "compiled blocks (inductor)"}]
    results = [run_worker(base)]
    print(HEADER + "\n" + row(results[0]), flush=True)
    for change in levers:
        results.append(run_worker({**base, **change}))
        print(row(results[-1]), flush=True)
    device = next((r["device"] for r in results if "device" in r), "?")
    text = f"device: {device}; torch {torch.__version__}\n\n{note}{HEADER}\n" + "\n".join(row(r) for r in results) + "\n"
    b = results[0]
    lines = []
    for r in results[1:]:
        if "error" in r or "error" in b:
            lines.append(f"lever {r['label']}: failed")
            continue
        lines.append(f"lever {r['label']}: throughput x{r['clips_per_s'] / b['clips_per_s']:.3f}, "
                     f"peak memory x{r['peak_mb'] / b['peak_mb']:.3f}")
    text += "\n" + "\n".join(f"- {ln}" for ln in lines) + "\n"
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print("\n" + text)
    return 0 if all("error" not in r for r in results) else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized: 112 px, 4 frames, batch 2, fp32")
    p.add_argument("--resolutions", default="160")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--precisions", default="bf16")
    p.add_argument("--grad-ckpt", default="off", help="off, on or off,on")
    p.add_argument("--zero", default="0", help="DeepSpeed ZeRO stages to run, e.g. 0,1,2,3 ('' for none)")
    p.add_argument("--ds-with-ckpt", action="store_true",
                   help="also run DeepSpeed with grad checkpointing (default: plain loop only)")
    p.add_argument("--fused-attn", default="on", help="on, off or on,off (SDPA in the encoders)")
    p.add_argument("--frozen-dtype", default="float32", help="the frozen encoders' weights (plain loop only)")
    p.add_argument("--levers", action="store_true",
                   help="plain loop at the first resolution/precision, then one lever at a time against it: "
                        "half-precision autocast, explicit-softmax attention, grad checkpointing, frozen weights "
                        "in bf16, compiled blocks")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    import torch

    cuda = torch.cuda.is_available()
    if args.quick:
        args.resolutions, args.frames, args.batch, args.steps, args.warmup = "112", 4, 2, 3, 1
        args.precisions, args.grad_ckpt, args.ds_with_ckpt = "fp32", "off,on", True
        print("quick mode: 112 px, 4 frames per clip (not 16), batch 2, 3 timed steps, fp32 - sized for a CPU; "
              "the clip rate is NOT comparable with 16-frame numbers", flush=True)
    if not cuda:
        print("no GPU: running on the CPU (fp16 skipped: DeepSpeed refuses it on most CPUs)", flush=True)
    if args.levers:
        return run_levers(args, cuda)
    results = []
    for res in [int(r) for r in args.resolutions.split(",")]:
        for prec in args.precisions.split(","):
            if prec == "fp16" and not cuda:
                continue
            for ckpt in [c == "on" for c in args.grad_ckpt.split(",")]:
                for fused in [f == "on" for f in args.fused_attn.split(",")]:
                    base = dict(res=res, frames=args.frames, batch=args.batch, precision=prec, ckpt=ckpt, fused=fused,
                                steps=args.steps, warmup=args.warmup, frozen_dtype=args.frozen_dtype)
                    label = "plain" + ("" if fused else " (no SDPA)") + (
                        f" frozen {args.frozen_dtype}" if args.frozen_dtype != "float32" else "")
                    plain = run_worker({**base, "engine": "plain", "label": label})
                    results.append(plain)
                    print(row(plain), flush=True)
                    if args.frozen_dtype != "float32":
                        continue
                    stages = [s for s in args.zero.split(",") if s] if (not ckpt or args.ds_with_ckpt) else []
                    for stage in stages:
                        name = (f"zero{stage}_{prec}.json" if prec != "fp32" else "fp32.json") if cuda else \
                            f"cpu_{prec}.json"
                        if not cuda and stage != "0":
                            continue
                        r = run_worker({**base, "engine": "deepspeed", "ds_config": name,
                                        "label": f"deepspeed {name}" + ("" if fused else " (no SDPA)")})
                        results.append(r)
                        print(row(r), flush=True)
    table = HEADER + "\n" + "\n".join(row(r) for r in results)
    device = next((r["device"] for r in results if "device" in r), "?")
    text = f"device: {device}; torch {torch.__version__}\n\n{table}\n"
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print("\n" + text)
    pairs = [(p_, d) for p_ in results for d in results if "error" not in p_ and "error" not in d
             and p_["engine"] == "plain" and d["engine"] == "deepspeed" and p_["fused"] == d["fused"]
             and (p_["res"], p_["precision"], p_["ckpt"]) == (d["res"], d["precision"], d["ckpt"])]
    for p_, d in pairs:
        if not p_["ckpt"]:
            mem = d["peak_mb"] / p_["peak_mb"]
            print(f"{d['label']} vs plain at {p_['res']} px {p_['precision']}: throughput x{d['clips_per_s'] / p_['clips_per_s']:.3f}, "
                  f"peak memory x{mem:.3f}")
    ck = [(a, b) for a in results for b in results if "error" not in a and "error" not in b and a["engine"] == b["engine"] == "plain"
          and not a["ckpt"] and b["ckpt"] and (a["res"], a["precision"], a["fused"]) == (b["res"], b["precision"], b["fused"])]
    for a, b in ck:
        print(f"grad checkpointing at {a['res']} px {a['precision']}: peak memory x{b['peak_mb'] / a['peak_mb']:.3f}, "
              f"step time x{b['p50_ms'] / a['p50_ms']:.3f}")
    main_pair = next(((p_, d) for p_, d in pairs if not p_["ckpt"]), None)
    if main_pair is None:
        print("deepspeed/plain throughput ratio: n/a")
        return 1
    print(f"deepspeed/plain throughput ratio: {main_pair[1]['clips_per_s'] / main_pair[0]['clips_per_s']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
