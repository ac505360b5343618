"""Evaluating in the precision a run was trained in: an fp32 model put into one of
:mod:`mma_dfer.precision`'s names as training ran it."""
from __future__ import annotations

import torch

from mma_dfer.precision import AUTOCAST, FLOAT32, HALF, torch_dtype


def apply_precision(model, precision: str) -> torch.dtype:
    """Put an fp32 ``model`` into ``precision`` (a result.json name) as training ran it; returns
    the dtype its inputs take. Autocast: the frozen weights in the half dtype, the forward
    autocasting (MMADFER.mixed_precision); whole module: every weight and input cast."""
    if precision.startswith(AUTOCAST):
        model.cast_frozen(torch_dtype(precision.removeprefix(AUTOCAST)))
        return torch.float32
    if precision in HALF:
        model.to(torch_dtype(precision))
        return torch_dtype(precision)
    if precision != FLOAT32:
        raise ValueError(f"unknown precision {precision!r}")
    return torch.float32
