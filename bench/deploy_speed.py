"""CPU runtimes side by side in one run: eager fp32, ONNX Runtime, and their int8 variants.

    python bench/deploy_speed.py [--config configs/dfew_160.yaml] [--set key=value ...] [--videos 16]
        [--repeats 3] [--batch-size 8] [--markdown FILE]

For each runtime of ``predict --runtime/--quantize`` (``mma_dfer.inference.runtimes``): the time
to build it (export, quantise), the model alone (clips/s over ``--repeats`` forward passes of
one clip, after a warm-up pass), the whole ``predict`` path (``predict_videos`` on ``--videos``
generated 2-s 224x224 clips with AAC audio, ``--faces none``, decoding and fbank included), the
top-1 agreement with eager fp32 and the largest change of a class probability on those clips,
and the model's forward FLOPs per clip (``perf/flops.py``) times clips/s against this CPU's fp32
rate on a large GEMM (measured here, ``--gemm`` square): the fraction of that bound each row
reaches. The model has its seeded random weights (speed does not depend on them; see the
commentary in bench/RESULTS.md for what that means for the agreement).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from mma_dfer.utils import atomic_write_text  # noqa: E402  (after the path set-up)

ROWS = [("torch", "none"), ("onnxruntime", "none"), ("torch", "int8"), ("onnxruntime", "int8")]


def gemm_rate(n: int, seconds: float = 3.0) -> float:
    """fp32 FLOP/s of an n x n x n matmul on this CPU (torch's threads), best of the runs."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def model_alone(forward, cfg, repeats: int) -> float:
    """clips/s of ``repeats`` batch-1 forward passes (after one warm-up pass)."""
    import torch

    from mma_dfer.inference.export import example_inputs

    video, audio = example_inputs(cfg, 1, seed=5)
    with torch.no_grad():
        forward(video, audio)
        t = time.perf_counter()
        for _ in range(repeats):
            forward(video, audio)
    return repeats / (time.perf_counter() - t)


def main(argv=None) -> int:
    import numpy as np
    import torch

    from mma_dfer.config import add_set_flag, load_config
    from mma_dfer.inference.predict import PredictOptions, predict_videos
    from mma_dfer.inference.runtimes import build_runtime
    from mma_dfer.labels import CLASS_NAMES
    from mma_dfer.models import build_model
    from mma_dfer.perf.flops import train_flops_per_clip
    from mma_dfer.utils import seed_everything
    from predict_speed import make_videos

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/dfew_160.yaml"))
    add_set_flag(p)
    p.add_argument("--videos", type=int, default=16, help="generated clips of the predict path and the agreement")
    p.add_argument("--repeats", type=int, default=3, help="timed batch-1 forward passes of the model alone")
    p.add_argument("--batch-size", type=int, default=8, help="predict's --batch-size")
    p.add_argument("--gemm", type=int, default=2048, help="size of the square fp32 GEMM that measures the bound")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    seed_everything(cfg.train.seed)
    model = build_model(cfg, load_pretrained=False).eval()
    d, m = cfg.data, cfg.model
    flops = train_flops_per_clip(cfg)[1]
    bound = gemm_rate(args.gemm)
    load = os.getloadavg()[0]
    head = (f"cpu: {torch.get_num_threads()} threads, load average {load:.1f} at the start; torch {torch.__version__}; "
            f"model: {m.depth} blocks x {m.embed_dim} (x2 encoders), {d.resolution} px, {d.num_frames} frames, "
            f"{d.audio_frames} fbank frames (random weights); {flops / 1e9:.1f} GFLOP per clip forward; "
            f"fp32 GEMM {args.gemm}^3: {bound / 1e9:.1f} GFLOP/s")
    print(head, flush=True)
    data_cfg = replace(d, cache_dir=None)
    names = CLASS_NAMES[d.dataset]
    rows, reference = [], None
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as work:
        files = make_videos(Path(work), "none", args.videos)
        for runtime, quantize in ROWS:
            t = time.perf_counter()
            rt = build_runtime(model, cfg, runtime, quantize)
            built = time.perf_counter() - t
            alone = model_alone(rt.forward, cfg, args.repeats)
            t = time.perf_counter()
            results = predict_videos(rt.forward, data_cfg, files, names, PredictOptions(faces="none"),
                                     args.batch_size)
            path = len(files) / (time.perf_counter() - t)
            probs = np.array([[r.windows[0]["probabilities"][c] for c in names] for r in results])
            if reference is None:
                reference = probs
            agree = float(np.mean(probs.argmax(1) == reference.argmax(1)))
            change = float(np.abs(probs - reference).max())
            rows.append((rt.name, rt.precision, built, alone, path, agree, change))
            print(f"{rt.name}: built in {built:.1f} s, model alone {alone:.3f} clips/s, predict path {path:.3f} clips/s, "
                  f"top-1 agreement {agree:.1%}, largest probability change {change:.2g}", flush=True)
    eager_alone, eager_path = rows[0][3], rows[0][4]
    lines = [head, "", "| runtime | precision | build s | model alone clips/s | x eager | GFLOP/s | % of GEMM bound "
             "| predict path clips/s | x eager | top-1 agreement | largest prob. change |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, precision, built, alone, path, agree, change in rows:
        lines.append(f"| {name} | {precision} | {built:.1f} | {alone:.3f} | {alone / eager_alone:.2f} | "
                     f"{flops * alone / 1e9:.1f} | {100 * flops * alone / bound:.0f} | {path:.3f} | "
                     f"{path / eager_path:.2f} | {agree:.1%} ({round(agree * len(files))}/{len(files)}) | {change:.2g} |")
    lines.append("")
    lines.append(f"model alone: batch 1, {args.repeats} passes after a warm-up; predict path: {len(files)} generated "
                 f"2-s clips, batch {args.batch_size}, --faces none, --workers 0; load average {os.getloadavg()[0]:.1f} "
                 "at the end")
    table = "\n".join(lines)
    print("\n" + table)
    if args.markdown:
        atomic_write_text(args.markdown, table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
