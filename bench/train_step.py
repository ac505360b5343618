"""Step benchmark: the full MMA-DFER (two ViT-B encoders) forward + backward + optimizer step,
through a plain PyTorch loop and through the DeepSpeed engine, side by side, with an independent
reference (bench/reference_model.py: timm and torch alone) as the anchor of every table.

    python bench/train_step.py --quick                      # CPU, a few minutes
    python bench/train_step.py --resolutions 160,224 --precisions bf16,fp16 --zero 0,2 \
        --compile eager,default --reference --profile --markdown bench/results/gpu.md    # on a GPU

Each configuration runs in its own process (so peak memory is its own) and reports clips/s,
step time percentiles, peak memory (CUDA peak on GPU, max RSS on CPU) and model-FLOPs
utilisation against the device's peak (FLOPs counted from the model on meta tensors).
The plain loop and the engine are set up by the same library code as training
(mma_dfer.training.engine: fused AdamW, frozen weights in the autocast dtype, train.compile), so
the table times what `deepspeed launch/train.py` runs. ``--profile`` adds one line per row:
CUDA kernel launches, stream/device synchronisations, memcpy calls and aten ops per step
(torch.profiler). The last line compares DeepSpeed with the plain loop at the same precision:
``deepspeed/plain throughput ratio: <x>``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mma_dfer.utils import atomic_write_text  # noqa: E402  (after the path set-up)

# Dense peak TFLOP/s by device name fragment and precision (vendor datasheets; perf-anchors).
PEAKS = {"H100": {"bf16": 989, "fp16": 989, "fp32": 67, "tf32": 495}, "H200": {"bf16": 989, "fp16": 989, "fp32": 67},
         "A100": {"bf16": 312, "fp16": 312, "fp32": 19.5}, "V100": {"fp16": 125, "fp32": 15.7}}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC", "cudaGraphLaunch")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
MEMCPY = ("cudaMemcpyAsync", "cudaMemcpy")
WATCHED_OPS = ("abs", "item", "_to_copy")  # per-tensor overflow checks, host reads, dtype casts
KERNELS = (("attention", ("flash", "fmha", "attention", "sdpa")),
           ("gemm", ("gemm", "cutlass", "nvjet", "xmma", "cublas", "sm90_", "wgmma", "triton_tem")),
           ("optimizer", ("multi_tensor", "adam")),
           ("copy", ("memcpy", "memset", "copy_kernel")),
           ("triton fused", ("triton_",)))


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


def spec_config(spec: dict):
    """The config of one configuration: the paper's model (or ``spec["config"]``, a YAML) at its size."""
    from mma_dfer.config import load_config

    return load_config(spec.get("config"), [
        f"data.resolution={spec['res']}", f"data.num_frames={spec['frames']}",
        f"model.grad_checkpointing={str(spec['ckpt']).lower()}", f"model.fused_attn={str(spec.get('fused', True)).lower()}",
        f"train.compile={spec.get('compile', 'eager')}", f"train.compile_backend={spec.get('compile_backend', 'inductor')}"])


def reference_model(cfg):
    """The timm reference at the config's geometry (and, for a rehearsal's tiny config, widths)."""
    from bench.reference_model import ReferenceModel

    m = cfg.model
    return ReferenceModel(cfg.data.resolution, cfg.data.audio_frames, width=m.embed_dim, depth=m.depth, heads=m.num_heads)


def build_step(spec: dict, cfg, device, video, audio, label):
    """The step function of one configuration."""
    import torch

    from mma_dfer.training.engine import build_engine, compile_model, make_optimizer, replays_cudagraphs
    from mma_dfer.training.ds_config import deepspeed_config
    from mma_dfer.models import build_model

    prec = spec["precision"]
    half = getattr(torch, DTYPES[prec])
    loss_fn = torch.nn.CrossEntropyLoss()
    torch.manual_seed(0)
    if spec["engine"] == "deepspeed":
        import deepspeed

        from mma_dfer.training import cpu_op
        from mma_dfer.training.distributed import detect

        env = detect()
        env.export()
        cpu_op.prepare(env.world_size, env.is_main)  # the trainer's build cache (and no op for one process)
        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo", auto_mpi_discovery=False)
        cfg.train.batch_size = spec["batch"]
        ds = deepspeed_config(ROOT / "ds_configs" / spec["ds_config"], cfg, world=1)  # as the trainer fills it
        built = build_engine(build_model(cfg, load_pretrained=False).train(), cfg, ds)
        engine, in_dtype = built.engine, built.input_dtype

        def step():
            if built.cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            loss = loss_fn(engine(video.to(in_dtype), audio.to(in_dtype)).float(), label)
            engine.backward(loss)
            engine.step()
        return step
    if spec["engine"] == "reference":
        model = reference_model(cfg).train().to(device)
    else:
        model = build_model(cfg, load_pretrained=False).train().to(device)
    if prec != "fp32":
        model.cast_frozen(half)  # the layout the autocast JSONs give the engine
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.train)
    mode = compile_model(model, cfg.train, device)
    scaler = torch.amp.GradScaler(device.type, enabled=prec == "fp16")

    def step():
        if replays_cudagraphs(mode):
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=half, enabled=prec != "fp32"):
            loss = loss_fn(model(video, audio).float(), label)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    return step


def kernel_category(name: str) -> str:
    """Which kind of work a CUDA kernel does, by its name (cuBLAS/CUTLASS GEMMs, flash/cuDNN
    attention, inductor's fused Triton kernels, the fused optimizer, copies): where the batch-32
    step's device time goes, to pick the lever that pays (issue 21, goal 2)."""
    n = name.lower()
    for category, marks in KERNELS:
        if any(m in n for m in marks):
            return category
    return "other"


def device_time(prof, steps: int) -> dict:
    """Device milliseconds per step by kernel category, and the busiest kernels (CUDA only)."""
    from torch.autograd import DeviceType

    kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA and e.self_device_time_total > 0]
    by: Counter = Counter()
    for e in kernels:
        by[kernel_category(e.key)] += e.self_device_time_total / 1e3 / steps
    top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:5]
    return {"busy_ms": sum(by.values()), "by_category": dict(by.most_common()),
            "top": [(e.key[:60], e.self_device_time_total / 1e3 / steps) for e in top]}


def profile_counts(step, steps: int = 3) -> dict:
    """Per-step counts of kernel launches, synchronisations, memcpy calls and aten ops; on a GPU
    also the device time per step by kernel category."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    counts = Counter(e.name for e in prof.events())
    per = {"launches": sum(counts[k] for k in LAUNCHES), "syncs": sum(counts[k] for k in SYNCS),
           "memcpy": sum(counts[k] for k in MEMCPY), "aten ops": sum(v for k, v in counts.items() if k.startswith("aten::")),
           **{k: counts[f"aten::{k}"] for k in WATCHED_OPS}}
    out = {k: round(v / steps) for k, v in per.items()}
    return {**out, "device": device_time(prof, steps)} if cuda else out


_FLOPS: dict = {}


def flops_per_clip(spec: dict, cfg) -> float:
    """Training FLOPs per clip (counted once per model and geometry in a worker process: the
    count runs the model on meta tensors, seconds for two ViT-Bs)."""
    import torch

    from mma_dfer.perf.flops import step_flops, train_flops_per_clip

    d = cfg.data
    key = (spec["engine"] == "reference", json.dumps(cfg.to_dict()["model"]), d.resolution, d.num_frames, d.audio_frames)
    if key not in _FLOPS:
        _FLOPS[key] = step_flops(lambda: (reference_model(cfg), (
            torch.empty(1, d.num_frames, 3, d.resolution, d.resolution), torch.empty(1, 1, d.audio_frames, d.mel_bins))))[0] \
            if key[0] else train_flops_per_clip(cfg)[0]
    return _FLOPS[key]


def timed_steps(step, steps: int, cuda: bool) -> list[float]:
    """Seconds per step as training runs them: back to back, the host free to queue step n+1
    while the GPU runs step n (the trainer reads nothing off the device per step). On the GPU an
    event is recorded at each step boundary and the device synchronised once at the end, so a
    host-bound step is not flattered by a sync per step; on the CPU the wall clock per step."""
    import torch

    if not cuda:
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return times
    events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    events[0].record()
    for i in range(steps):
        step()
        events[i + 1].record()
    torch.cuda.synchronize()
    return [a.elapsed_time(b) / 1e3 for a, b in zip(events, events[1:])]


def worker(spec: dict) -> dict:
    """One configuration: warm-up (compilation included), then timed steps; the measurements."""
    import numpy as np
    import torch

    from mma_dfer.training.metrics import peak_memory_mb

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    b, cfg = spec["batch"], spec_config(spec)
    video = torch.rand(b, spec["frames"], 3, spec["res"], spec["res"], device=device)
    audio = torch.randn(b, 1, cfg.data.audio_frames, cfg.data.mel_bins, device=device)
    label = torch.randint(0, 7, (b,), device=device)
    t0 = time.perf_counter()
    step = build_step(spec, cfg, device, video, audio, label)
    for _ in range(spec["warmup"]):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - t0
    # from the parent's launch of this process (interpreter, imports, set-up, compilation or
    # the compiled-artifact cache, warm-up steps) to the first timed step: issue 21's goal 5
    start_s = time.time() - spec["launched_at"] if spec.get("launched_at") else None
    times = timed_steps(step, spec["steps"], cuda)
    peak_mb = peak_memory_mb(device)
    profile = profile_counts(step) if spec.get("profile") else None
    flops = flops_per_clip(spec, cfg)
    clips_s = b / float(np.mean(times))
    peak_tflops, device_name = device_peak(spec["precision"])
    return {**spec, "clips_per_s": clips_s, "p50_ms": 1e3 * float(np.percentile(times, 50)),
            "p90_ms": 1e3 * float(np.percentile(times, 90)), "peak_mb": peak_mb, "gflops_per_clip": flops / 1e9,
            "mfu": (flops * clips_s / (peak_tflops * 1e12)) if peak_tflops else None, "device": device_name,
            "torch": torch.__version__, "warmup_s": warmup_s, "start_s": start_s, "profile": profile}


def parameter_layout(spec: dict) -> str:
    """Where the trainable parameters live: ZeRO-1/2 move them into one flat buffer (each a view
    at an offset that need not be 16-byte aligned), ZeRO-3 partitions them; else their own tensors."""
    if spec["engine"] != "deepspeed":
        return "own"
    stage = json.loads((ROOT / "ds_configs" / spec["ds_config"]).read_text()).get("zero_optimization", {}).get("stage", 0)
    return {0: "own", 3: "partitioned"}.get(stage, "flat")


def run_specs(specs: list[dict]) -> None:
    """The worker process: each spec in turn, one ``RESULT`` line each. Specs of one group share
    their compiled graphs (a new model instance passes the guards of the first one's graph), so
    only the first of a group pays the compilation, except where the parameters' layout changes:
    inductor takes parameters that were 16-byte aligned when it compiled to stay so and does not
    check them per call, and ZeRO-1/2's flat buffer breaks that (on the H200: "CUDA driver error:
    misaligned address"), so the graphs are dropped and compiled again. Memory is released and the
    CUDA peak reset between specs, so each peak is its own."""
    import gc

    import torch

    layout = None
    for spec in specs:
        previous, layout = layout, parameter_layout(spec)
        if spec.get("compile", "eager") != "eager" and previous not in (None, layout):
            torch._dynamo.reset()
        try:
            result = worker(spec)
        except Exception as e:  # one failed configuration must not hide the others' numbers
            result = {**spec, "error": f"{type(e).__name__}: {e}"[:300]}
        print("RESULT " + json.dumps(result), flush=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def group_key(spec: dict) -> tuple:
    """Specs that share compiled graphs (and so one worker process)."""
    return tuple(spec[k] for k in ("res", "frames", "batch", "precision", "ckpt", "fused", "compile"))


def run_group(specs: list[dict], timeout: float | None = None) -> list[dict]:
    """Run ``specs`` in one worker process; a spec without a RESULT line gets the process's error.
    The first spec carries the launch time (its row's ``start_s``: process start to first timed step)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    specs = [{**specs[0], "launched_at": time.time()}, *specs[1:]] if specs else specs
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(specs)], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=timeout)
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, stderr, rc = (e.stdout or b"").decode(), f"timed out after {timeout:.0f} s", -1
    done = [json.loads(ln[len("RESULT "):]) for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    tail = " | ".join((stderr or stdout).strip().splitlines()[-3:]) or f"exit code {rc}"
    return done + [{**s, "error": tail} for s in specs[len(done):]]


def run_worker(spec: dict) -> dict:
    return run_group([spec])[0]


def row(r: dict) -> str:
    if "error" in r:
        return (f"| {r['res']} | {r['frames']} | {r['batch']} | {r['precision']} | {r['ckpt']} | {r['label']} | "
                f"failed: {r['error'][:80]} | | | | |")
    mfu = f"{100 * r['mfu']:.1f}" if r["mfu"] is not None else "n/a"
    return (f"| {r['res']} | {r['frames']} | {r['batch']} | {r['precision']} | {r['ckpt']} | {r['label']} | "
            f"{r['clips_per_s']:.2f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['peak_mb']:.0f} | {mfu} |")


def profile_line(r: dict) -> str:
    if "error" in r or not r.get("profile"):
        return ""
    p = r["profile"]
    line = (f"profile {r['label']} ({r['res']} px, batch {r['batch']}, {r['precision']}): per step "
            f"{p['launches']} kernel launches, {p['syncs']} syncs, {p['memcpy']} memcpy, {p['aten ops']} aten ops "
            f"({', '.join(f'{k} {p[k]}' for k in WATCHED_OPS)}); warm-up {r['warmup_s']:.0f} s")
    d = p.get("device")
    if d:
        line += (f"; device busy {d['busy_ms']:.1f} ms per step of {r['p50_ms']:.0f} (p50): "
                 + ", ".join(f"{k} {v:.1f}" for k, v in d["by_category"].items())
                 + "; top: " + ", ".join(f"{k} {v:.2f}" for k, v in d["top"]))
    return line


HEADER = ("| res | frames | batch | precision | grad ckpt | engine | clips/s | step p50 ms | step p90 ms | "
          "peak MB | MFU % |\n|---|---|---|---|---|---|---|---|---|---|---|")


def table(results: list[dict], note: str = "") -> str:
    import torch

    device = next((r["device"] for r in results if "device" in r), "?")
    profiles = [ln for ln in map(profile_line, results) if ln]
    text = f"device: {device}; torch {torch.__version__}\n\n{note}{HEADER}\n" + "\n".join(row(r) for r in results) + "\n"
    return text + ("\n" + "\n".join(f"- {ln}" for ln in profiles) + "\n" if profiles else "")


def suffix(compile_mode: str) -> str:
    return "" if compile_mode == "eager" else f" compiled ({compile_mode})"


def run_levers(args, cuda: bool) -> int:
    """Each lever alone against the same plain-loop baseline, in separate processes of one run."""
    import torch

    res, prec = int(args.resolutions.split(",")[0]), args.precisions.split(",")[0]
    base = dict(res=res, frames=args.frames, batch=args.batch, precision=prec, ckpt=False, fused=True,
                steps=args.steps, warmup=args.warmup, engine="plain", compile="eager", profile=args.profile,
                config=args.config, label=f"plain {prec} (baseline)")
    bf16_ok = cuda or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    note = "" if bf16_ok else ("this CPU has no native bf16 matmul (no AVX512-BF16/AMX): the bf16 levers would "
                               "time its emulation, so they are skipped (bench/memory.py measures their memory)\n\n")
    print(note, end="", flush=True)
    levers = [{"precision": "bf16", "label": "bf16 autocast"}] if prec == "fp32" and bf16_ok else []
    if prec == "fp32" and cuda:
        levers.append({"precision": "fp16", "label": "fp16 autocast"})
    levers += [{"fused": False, "label": "explicit-softmax attention (no SDPA)"},
               {"ckpt": True, "label": "grad checkpointing"}]
    levers += [{"compile": m, "label": f"torch.compile {m}"} for m in args.compile.split(",") if m != "eager"]
    results = [run_worker(base)]
    print(HEADER + "\n" + row(results[0]), flush=True)
    for change in levers:
        results.append(run_worker({**base, **change}))
        print(row(results[-1]), flush=True)
    b = results[0]
    lines = []
    for r in results[1:]:
        if "error" in r or "error" in b:
            lines.append(f"lever {r['label']}: failed")
            continue
        lines.append(f"lever {r['label']}: throughput x{r['clips_per_s'] / b['clips_per_s']:.3f}, "
                     f"peak memory x{r['peak_mb'] / b['peak_mb']:.3f}")
    text = table(results, note) + "\n" + "\n".join(f"- {ln}" for ln in lines) + "\n"
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print("\n" + text)
    return 0 if all("error" not in r for r in results) else 1


def configurations(args, cuda: bool):
    """The rows of the main table, in order (plain, its DeepSpeed stages, references)."""
    compiles = args.compile.split(",")
    for res in [int(r) for r in args.resolutions.split(",")]:
        for prec in args.precisions.split(","):
            if prec == "fp16" and not cuda:
                continue
            for ckpt in [c == "on" for c in args.grad_ckpt.split(",")]:
                for fused in [f == "on" for f in args.fused_attn.split(",")]:
                    for mode in compiles:
                        base = dict(res=res, frames=args.frames, batch=args.batch, precision=prec, ckpt=ckpt,
                                    fused=fused, steps=args.steps, warmup=args.warmup, compile=mode,
                                    profile=args.profile, config=args.config)
                        tag = ("" if fused else " (no SDPA)") + suffix(mode)
                        yield {**base, "engine": "plain", "label": "plain" + tag}
                        stages = [s for s in args.zero.split(",") if s] if (not ckpt or args.ds_with_ckpt) else []
                        for stage in stages:
                            if prec == "fp32" and stage != "0":
                                continue  # the shipped ZeRO-1/2/3 JSONs are mixed precision
                            name = f"zero{stage}_{prec}.json" if prec != "fp32" else "fp32.json" if cuda else "cpu_fp32.json"
                            yield {**base, "engine": "deepspeed", "ds_config": name, "label": f"deepspeed {name}" + tag}
                        if args.reference and fused and not ckpt:
                            yield {**base, "engine": "reference", "label": "reference (timm)" + suffix(mode)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized: 112 px, 4 frames, batch 2, fp32")
    p.add_argument("--config", help="model config YAML (default: the paper's ViT-B model)")
    p.add_argument("--resolutions", default="160")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--precisions", default="bf16")
    p.add_argument("--grad-ckpt", default="off", help="off, on or off,on")
    p.add_argument("--zero", default="0", help="DeepSpeed ZeRO stages to run, e.g. 0,1,2,3 ('' for none)")
    p.add_argument("--ds-with-ckpt", action="store_true",
                   help="also run DeepSpeed with grad checkpointing (default: plain loop only)")
    p.add_argument("--fused-attn", default="on", help="on, off or on,off (SDPA in the encoders)")
    p.add_argument("--compile", default="eager",
                   help="train.compile modes to run, e.g. eager,default,reduce-overhead (each row per mode)")
    p.add_argument("--reference", action="store_true", help="add the independent timm reference (bench/reference_model.py)")
    p.add_argument("--profile", action="store_true",
                   help="a per-step profile line per row: kernel launches, syncs, memcpy calls, aten ops")
    p.add_argument("--levers", action="store_true",
                   help="plain loop at the first resolution/precision, then one lever at a time against it: "
                        "half-precision autocast, explicit-softmax attention, grad checkpointing, the --compile modes")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        specs = json.loads(args.worker)
        run_specs(specs if isinstance(specs, list) else [specs])
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
    for _, group in itertools.groupby(configurations(args, cuda), key=group_key):
        for r in run_group(list(group)):
            results.append(r)
            print(row(r), flush=True)
    text = table(results)
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print("\n" + text)
    return print_ratios(results)


def same_setting(a: dict, b: dict, *keys) -> bool:
    return all(a[k] == b[k] for k in ("res", "precision", "fused", "compile") + keys)


def print_ratios(results: list[dict]) -> int:
    ok = [r for r in results if "error" not in r]
    plain = [r for r in ok if r["engine"] == "plain"]
    pairs = [(p_, d) for p_ in plain for d in ok if d["engine"] == "deepspeed" and same_setting(p_, d, "ckpt")]
    for p_, d in pairs:
        if not p_["ckpt"]:
            print(f"{d['label']} vs plain at {p_['res']} px {p_['precision']}: throughput "
                  f"x{d['clips_per_s'] / p_['clips_per_s']:.3f}, peak memory x{d['peak_mb'] / p_['peak_mb']:.3f}")
    for p_, ref in [(p_, r) for p_ in plain for r in ok if r["engine"] == "reference" and same_setting(p_, r)]:
        if not p_["ckpt"]:
            print(f"plain{suffix(p_['compile'])} vs the timm reference at {p_['res']} px {p_['precision']}: throughput "
                  f"x{p_['clips_per_s'] / ref['clips_per_s']:.3f}")
    for a, b in [(a, b) for a in plain for b in plain if not a["ckpt"] and b["ckpt"] and same_setting(a, b)]:
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
