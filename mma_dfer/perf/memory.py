"""Where training memory goes: the activations the backward pass keeps (measured) and the model
states each ZeRO stage partitions (counted).

The prompts need gradients through every frozen encoder block, so every block's activations are
kept for 16 frames; the trainable state is only ~7.6M parameters. These two functions put numbers
on that split, so the memory levers (activation checkpointing, bf16, ZeRO) can be judged by what
they can possibly save before anyone measures a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mma_dfer.models import build_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ActivationMemory:
    """Bytes per clip: kept from the forward until the backward, and the extra a checkpointed
    block holds while it is recomputed (0 without activation checkpointing)."""

    kept: int
    recompute: int

    @property
    def peak(self) -> int:
        return self.kept + self.recompute


def saved_tensor_bytes(fn, exclude=()) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs.

    Measured with saved-tensor hooks on real tensors (meta tensors pick other attention kernels,
    which save different tensors); storages of ``exclude`` (the parameters) are model state, not
    activations, and are left out. Each storage counts once, however many views of it are saved."""
    excluded = {id(p.untyped_storage()) for p in exclude}
    kept: dict[int, torch.UntypedStorage] = {}

    def pack(t):
        s = t.untyped_storage()
        if id(s) not in excluded:
            kept[id(s)] = s  # holding the storage keeps its id unique while we count
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    total = sum(s.nbytes() for s in kept.values())
    del out
    return total


def activation_bytes(cfg, dtype: str = "float32") -> ActivationMemory:
    """Activation memory of one training clip of ``cfg``'s geometry, the model run in ``dtype``
    as the DeepSpeed engine runs it (the whole module cast for bf16/fp16, no autocast).

    Runs one real forward on the CPU (random weights, batch 1): activations scale linearly
    with the micro-batch."""
    d = cfg.data
    torch.manual_seed(0)
    model = build_model(cfg, load_pretrained=False).train().to(DTYPES[dtype])
    video = torch.rand(1, d.num_frames, 3, d.resolution, d.resolution, dtype=DTYPES[dtype])
    audio = torch.randn(1, 1, d.audio_frames, d.mel_bins, dtype=DTYPES[dtype])
    params = list(model.parameters())
    kept = saved_tensor_bytes(lambda: model(video, audio), params)
    recompute = 0
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(False)
        for name, x in (("video", video.flatten(0, 1)), ("audio", audio)):
            enc = getattr(model, f"{name}_encoder", None)
            if enc is None:
                continue
            # a block's real input: the patches with the prompt tokens appended
            tokens = enc.embed(x, getattr(model, f"{name}_prompts").tokens()).detach().requires_grad_()
            recompute = max(recompute, saved_tensor_bytes(lambda: enc.block(0, tokens), params))
    return ActivationMemory(kept, recompute)


def model_state_bytes(trainable: int, frozen: int, precision: str, zero_stage: int, world_size: int) -> dict:
    """Per-GPU bytes of weights, gradients and AdamW state under a ZeRO stage.

    The ZeRO paper's accounting (Rajbhandari et al., 2020): mixed precision keeps 2-byte weights
    and gradients plus 12 bytes of fp32 master weight and two moments per trainable parameter;
    fp32 keeps 4-byte weights and gradients plus 8 bytes of moments. Frozen weights have no
    gradient or optimizer state; only stage 3 partitions them. Stage 1 partitions the optimizer
    state, stage 2 also the gradients, stage 3 also the weights."""
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage={zero_stage} is not a ZeRO stage (0-3)")
    half = precision in ("bf16", "fp16")
    w, k = (2, 12) if half else (4, 8)
    n = world_size
    return {"weights": w * (trainable + frozen) / (n if zero_stage >= 3 else 1),
            "gradients": w * trainable / (n if zero_stage >= 2 else 1),
            "optimizer": k * trainable / (n if zero_stage >= 1 else 1)}
