"""Where the training memory of MMA-DFER goes, per GPU: activations (measured) vs model states
(counted per ZeRO stage).

    python bench/memory.py --markdown bench/results/memory.md     # ~6 minutes on 2 CPU cores

Activations: the bytes autograd keeps from the forward until the backward, measured on the CPU by
running one real 16-frame clip through the full model with saved-tensor hooks
(mma_dfer.models.memory.activation_bytes), in fp32 and in bf16 (the whole module cast, as the
DeepSpeed engine does), with and without activation checkpointing of the frozen blocks, and with
the explicit-softmax attention instead of SDPA. They scale linearly with the micro-batch.
Model states: weights, gradients and AdamW state per GPU for ZeRO 0-3 (the ZeRO paper's
accounting; mma_dfer.models.memory.model_state_bytes) from the model's own parameter counts.
Neither counts the allocator's workspace or the transient activation gradients of the backward:
the CUDA peak that bench/train_step.py reports on a GPU is the check.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mma_dfer.utils import atomic_write_text  # noqa: E402  (after the path set-up)

MB = 2 ** 20
VARIANTS = [  # (precision, dtype, grad ckpt, fused attention)
    ("fp32", "float32", False, True), ("fp32", "float32", True, True), ("fp32", "float32", False, False),
    ("bf16", "bfloat16", False, True), ("bf16", "bfloat16", True, True)]


def param_counts(cfg) -> tuple[int, int]:
    """(trainable, frozen) parameter counts of ``cfg``'s model (built on the meta device)."""
    import torch

    from mma_dfer.models import build_model
    from mma_dfer.models.summary import param_table

    with torch.device("meta"):
        rows = param_table(build_model(cfg, load_pretrained=False))
    return sum(r[1] for r in rows), sum(r[2] for r in rows)


def measure_activations(res: int, frames: int) -> list[dict]:
    from mma_dfer.config import load_config
    from mma_dfer.perf.memory import activation_bytes

    rows = []
    for prec, dtype, ckpt, fused in VARIANTS:
        cfg = load_config(None, [f"data.resolution={res}", f"data.num_frames={frames}",
                                 f"model.grad_checkpointing={str(ckpt).lower()}", f"model.fused_attn={str(fused).lower()}"])
        t0 = time.perf_counter()
        act = activation_bytes(cfg, dtype)
        rows.append(dict(res=res, precision=prec, ckpt=ckpt, fused=fused, kept=act.kept, recompute=act.recompute,
                         peak=act.peak, seconds=time.perf_counter() - t0))
        print(f"  {res} px {prec} ckpt={ckpt} sdpa={fused}: {act.kept / MB:.0f} MB kept + {act.recompute / MB:.0f} MB "
              f"recompute per clip ({rows[-1]['seconds']:.0f} s)", flush=True)
    return rows


def activation_table(rows: list[dict], batch: int) -> str:
    lines = ["| res | precision | attention | grad ckpt | kept for backward MB/clip | + recompute MB | "
             f"micro-batch {batch} GB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        gb = batch * r["peak"] / 2 ** 30
        lines.append(f"| {r['res']} | {r['precision']} | {'SDPA' if r['fused'] else 'explicit softmax'} | "
                     f"{r['ckpt']} | {r['kept'] / MB:.0f} | {r['recompute'] / MB:.0f} | {gb:.2f} |")
    return "\n".join(lines)


def zero_table(trainable: int, frozen: int, act: dict, batch: int, gpus: list[int], precision: str) -> tuple[str, list]:
    """Per-GPU memory for each ZeRO stage and GPU count; the global batch is split across GPUs."""
    from mma_dfer.perf.memory import model_state_bytes

    lines = ["| GPUs | micro-batch | ZeRO | weights MB | gradients MB | optimizer MB | model states MB | "
             "activations MB | states / total |", "|---|---|---|---|---|---|---|---|---|"]
    out = []
    for n in gpus:
        micro = max(batch // n, 1)
        acts = micro * act["peak"]
        for stage in range(4):
            s = model_state_bytes(trainable, frozen, precision, stage, n)
            states = sum(s.values())
            out.append(dict(gpus=n, stage=stage, states=states, acts=acts))
            lines.append(f"| {n} | {micro} | {stage} | {s['weights'] / MB:.0f} | {s['gradients'] / MB:.1f} | "
                         f"{s['optimizer'] / MB:.1f} | {states / MB:.0f} | {acts / MB:.0f} | "
                         f"{100 * states / (states + acts):.0f}% |")
    return "\n".join(lines), out


def summary(rows: list[dict], zrows: list[dict], gpus: list[int], args) -> list[str]:
    """The ratios the tables imply: activations vs model states, what ZeRO-3 and checkpointing save."""
    one = {r["stage"]: r for r in zrows if r["gpus"] == gpus[0]}
    lines = [f"activations / model states at {args.zero_res} px bf16, micro-batch {max(args.batch // gpus[0], 1)}, "
             f"ZeRO 0: x{one[0]['acts'] / one[0]['states']:.1f}"]
    for n in gpus:
        z = {r["stage"]: r for r in zrows if r["gpus"] == n}
        saved, total = z[0]["states"] - z[3]["states"], z[0]["states"] + z[0]["acts"]
        lines.append(f"ZeRO-3 vs ZeRO-0 on {n} GPU(s): saves {saved / MB:.0f} MB of {total / MB:.0f} MB per GPU "
                     f"({100 * saved / total:.0f}%)")
    for r0, r1 in zip(rows, rows[1:]):
        if (r0["res"], r0["precision"], r0["fused"]) == (r1["res"], r1["precision"], r1["fused"]) and r1["ckpt"] and not r0["ckpt"]:
            lines.append(f"activation checkpointing at {r0['res']} px {r0['precision']}: activations "
                         f"x{r1['peak'] / r0['peak']:.3f}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolutions", default="112,160,224")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=8, help="global batch (paper: 8)")
    p.add_argument("--gpus", default="1,8", help="GPU counts for the ZeRO table")
    p.add_argument("--zero-res", type=int, default=160, help="resolution of the ZeRO table")
    p.add_argument("--markdown", help="also write the tables to this file")
    args = p.parse_args(argv)
    import platform

    import torch

    from mma_dfer.config import load_config

    resolutions = [int(r) for r in args.resolutions.split(",")]
    if args.zero_res not in resolutions:
        p.error(f"--zero-res {args.zero_res} must be one of --resolutions {args.resolutions}")
    print(f"measuring activations on the CPU ({platform.machine()}, torch {torch.__version__}), "
          f"{args.frames} frames, batch 1", flush=True)
    rows = [r for res in resolutions for r in measure_activations(res, args.frames)]
    trainable, frozen = param_counts(load_config(None, [f"data.resolution={args.zero_res}"]))
    bf16 = next(r for r in rows if r["res"] == args.zero_res and r["precision"] == "bf16" and not r["ckpt"])
    bf16_ckpt = next(r for r in rows if r["res"] == args.zero_res and r["precision"] == "bf16" and r["ckpt"])
    gpus = [int(g) for g in args.gpus.split(",")]
    ztab, zrows = zero_table(trainable, frozen, bf16, args.batch, gpus, "bf16")
    ztab_ckpt, _ = zero_table(trainable, frozen, bf16_ckpt, args.batch, gpus, "bf16")
    text = (f"machine: {platform.machine()} CPU, torch {torch.__version__}; {args.frames} frames per clip; "
            f"activations measured with saved-tensor hooks (batch 1, scaled by the micro-batch)\n\n"
            f"{activation_table(rows, args.batch)}\n\n"
            f"Per GPU at {args.zero_res} px, bf16, global batch {args.batch}, trainable {trainable:,} / frozen "
            f"{frozen:,} parameters; model states counted (ZeRO paper), activations measured above.\n\n"
            f"Without activation checkpointing:\n\n{ztab}\n\nWith activation checkpointing:\n\n{ztab_ckpt}\n")
    text += "\n" + "\n".join(f"- {ln}" for ln in summary(rows, zrows, gpus, args)) + "\n"
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
