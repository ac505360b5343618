"""Projected wall time of the full protocol (2 datasets x 3 resolutions x 5 folds x 25 epochs)
on 1, 8 and 32 GPUs with the fan-out, from a per-GPU training rate.

    python bench/scaling_plan.py --rate 112=R1 --rate 160=R2 --rate 224=R3 [--source "measured on ..."]

Each run is one GPU; runs are spread over the GPUs (30 runs: beyond 30 GPUs a run must use
several GPUs, whose batch of 8 then gets small). Per run it adds: evaluation of the test fold
(1-clip + 2-clip = 3 forward passes per test clip, a forward costs ~1/2 of a training step),
and a fixed start-up (imports, DeepSpeed init, model build, checkpoint load: --startup seconds).
Clip counts: DFEW 9,356 train / 2,341 test, MAFW 7,333 / 1,838 (fold 1; the others are alike).
"""
from __future__ import annotations

import argparse

from mma_dfer.datasets import REGISTRY

DATASETS = {name: d.published[1] for name, d in REGISTRY.items() if d.paper}  # the paper's: fold 1 (train, test)
EPOCHS = 25


def run_seconds(rate: float, train: int, test: int, startup: float) -> float:
    return EPOCHS * train / rate + 3 * test / (2 * rate) + startup


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", action="append", required=True, help="RES=clips/s of one GPU, e.g. 160=400")
    p.add_argument("--startup", type=float, default=90.0)
    p.add_argument("--gpus", default="1,8,32")
    p.add_argument("--source", default="", help="where the rates come from (printed)")
    args = p.parse_args(argv)
    rates = {int(k): float(v) for k, v in (r.split("=") for r in args.rate)}
    runs = [run_seconds(rates[res], *DATASETS[d], args.startup) for d in DATASETS for res in sorted(rates)
            for _fold in range(5)]
    print(f"rates (clips/s per GPU): {rates} {args.source}".strip())
    print("| GPUs | wall time (h) | GPU-hours | limited by |\n|---|---|---|---|")
    for g in [int(x) for x in args.gpus.split(",")]:
        # longest-processing-time greedy assignment of the runs to g GPUs
        loads = [0.0] * min(g, len(runs))
        for t in sorted(runs, reverse=True):
            loads[loads.index(min(loads))] += t
        wall = max(loads)
        limit = "the longest single run (224 px, DFEW)" if g >= len(runs) else "total GPU time / GPUs"
        print(f"| {g} | {wall / 3600:.2f} | {sum(runs) / 3600:.1f} | {limit} |")
    longest = max(runs)
    print(f"\nlongest run: {longest / 3600:.2f} h; with {len(runs)} runs, more than {len(runs)} GPUs only help if one run "
          f"spans several GPUs (batch 8 split 8 ways: micro-batch 1) - then data loading and the "
          f"{args.startup:.0f} s start-up per run dominate.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
