"""Evaluating in the precision a run was trained in (the names result.json records)."""
from __future__ import annotations

from typing import Optional

PRECISION_CHOICES = ("fp32", "bf16", "fp16")  # --precision of evaluate and predict


def precision_for(choice: Optional[str], trained: str) -> str:
    """The precision an evaluation runs in: the run's own (``trained``, as result.json records
    it) when ``choice`` is None, else fp32, or bf16/fp16 the way the run used half precision
    (whole module, or autocast: the shipped JSONs' way, also for an fp32 run)."""
    if choice is None:
        return trained
    if choice == "fp32":
        return "float32"
    dtype = {"bf16": "bfloat16", "fp16": "float16"}[choice]
    return dtype if trained in ("bfloat16", "float16") else f"autocast-{dtype}"


def apply_precision(model, precision: str):
    """Put an fp32 ``model`` into ``precision`` (a result.json name) as training ran it; returns
    the dtype its inputs take. Autocast: the frozen weights in the half dtype, the forward
    autocasting (MMADFER.mixed_precision); whole module: every weight and input cast."""
    import torch

    half = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    if precision.startswith("autocast-"):
        model.cast_frozen(half[precision.removeprefix("autocast-")])
        return torch.float32
    if precision in half:
        model.to(half[precision])
        return half[precision]
    if precision != "float32":
        raise ValueError(f"unknown precision {precision!r}")
    return torch.float32
