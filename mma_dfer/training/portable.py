"""The trainable state in a form no number of ranks is baked into, so that a run continues on
another number of GPUs (a requeued job that got fewer or more, a run moved from 8 GPUs to 4).

DeepSpeed's own files hold each rank's partition of the fp32 weights and of Adam's moments
(ZeRO-1/2/3, and its bf16 optimizer), and its loader refuses another data-parallel world size.
The model trains 7.5M parameters, so every checkpoint also carries ``portable_state.pt``: per
trainable parameter (by name) its full fp32 master weight and Adam moments, the optimizer's step
count, the fp16 loss scaler's state, and the trainer's progress. A resume on the checkpoint's own
world size still goes through DeepSpeed (bit-identical); on another one, :func:`load` writes this
state into the freshly built engine of any ZeRO stage. The data order and the learning rate follow
from the progress (the global batches do not depend on the world size); the ranks' drop-path
streams do, so with drop-path on the continued run draws other masks (docs/training.md).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import torch

from mma_dfer.safe_files import safe_load
from mma_dfer.training import TrainingError
from mma_dfer.utils import atomic_write_bytes

FILE = "portable_state.pt"
MOMENTS = ("exp_avg", "exp_avg_sq")  # AdamW's per-parameter state
SCALER_FIELDS = ("cur_scale", "cur_iter", "last_overflow_iter", "cur_hysteresis")  # DeepSpeed's loss scaler


def _zero3(p) -> bool:
    return hasattr(p, "ds_id")


def _has_master(optimizer) -> bool:
    """Whether DeepSpeed keeps separate fp32 master weights (ZeRO-1/2/3 or its bf16 optimizer), which
    its ``safe_*_full_*`` functions reach; else the optimizer works on the module's own tensors."""
    return hasattr(optimizer, "optimizer") and not isinstance(optimizer, torch.optim.Optimizer)


def base_optimizer(optimizer) -> torch.optim.Optimizer:
    """The torch AdamW under DeepSpeed's wrapper (or the optimizer itself at ZeRO-0 fp32/autocast)."""
    return optimizer.optimizer if _has_master(optimizer) else optimizer


def supported(engine) -> Optional[str]:
    """None when this engine's state can be read and written rank-independently, else why not."""
    if engine.fp16_enabled() and not engine.zero_optimization():
        return "a whole-module fp16 JSON at ZeRO stage 0 (DeepSpeed's FP16_Optimizer keeps its master " \
               "weights out of reach); use ZeRO-1/2/3 or the torch_autocast fp16 JSONs"
    return None


def _full(engine, optimizer, p, key: Optional[str]) -> Optional[torch.Tensor]:
    """A parameter's full fp32 weight (key None) or Adam moment, the same on every rank (every rank
    must call: under ZeRO it is gathered)."""
    # lazy: DeepSpeed takes seconds to import; submit imports the trainer (planned_identity) without it
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    if _has_master(optimizer):
        if key is None:
            t = safe_get_full_fp32_param(p)
        elif not base_optimizer(optimizer).state:
            return None
        else:
            t = safe_get_full_optimizer_state(p, key)
    else:
        state = optimizer.state.get(p)
        t = p.detach() if key is None else (None if state is None else state[key])
    if t is None:
        return None
    shape = p.ds_shape if _zero3(p) else p.shape
    return t.detach().float().cpu().clone().reshape(shape)


def _step_count(optimizer) -> Optional[float]:
    for state in base_optimizer(optimizer).state.values():
        if "step" in state:
            return float(state["step"])
    return None


def gather(engine, optimizer, progress: dict) -> dict:
    """The rank-independent state (every rank calls; the result is the same on all)."""
    named = [(n, p) for n, p in engine.module.named_parameters() if p.requires_grad]
    if base_optimizer(optimizer).state and hasattr(optimizer, "_lazy_init_hp_params_optimizer_state"):
        optimizer._lazy_init_hp_params_optimizer_state()  # ZeRO-1/2, bf16: linked at the first step only
    weights = {n: _full(engine, optimizer, p, None) for n, p in named}
    moments = {key: {n: _full(engine, optimizer, p, key) for n, p in named} for key in MOMENTS}
    scaler = getattr(optimizer, "loss_scaler", None)
    return {"world_size": engine.dp_world_size, "weights": weights,
            "moments": None if any(v is None for m in moments.values() for v in m.values()) else moments,
            "step": _step_count(optimizer),
            "loss_scaler": {f: getattr(scaler, f) for f in SCALER_FIELDS if hasattr(scaler, f)} if scaler else None,
            "engine": {"global_steps": engine.global_steps, "global_samples": engine.global_samples,
                       "skipped_steps": engine.skipped_steps},
            "progress": progress}


def save(engine, optimizer, tag_dir: Path, is_main: bool, progress: dict) -> None:
    """Write ``portable_state.pt`` into ``tag_dir`` (rank 0; every rank takes part in gathering)."""
    state = gather(engine, optimizer, progress)
    if is_main:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(Path(tag_dir) / FILE, buf.getvalue())


def read(tag_dir: Path) -> dict:
    return safe_load(Path(tag_dir) / FILE)


def _create_optimizer_state(optimizer) -> None:
    """Make AdamW create its (zero) state on a fresh engine without changing a weight: one step at
    lr 0 on zero gradients (decay multiplies by 1 - 0, the update is 0 / eps)."""
    base = base_optimizer(optimizer)
    if hasattr(optimizer, "fp32_partitioned_groups_flat"):  # ZeRO-3 steps its sub-groups one by one:
        # AdamW's state of each flat fp32 partition, as its first step would make it
        fused = any(g.get("fused") or g.get("capturable") for g in base.param_groups)
        for flat in optimizer.fp32_partitioned_groups_flat:
            if "exp_avg" not in base.state.get(flat, {}):
                step = torch.zeros((), dtype=torch.float32, device=flat.device) if fused else torch.tensor(0.0)
                base.state[flat] = {"step": step, "exp_avg": torch.zeros_like(flat),
                                    "exp_avg_sq": torch.zeros_like(flat)}
        return
    if base.state:
        return
    lrs = [g["lr"] for g in base.param_groups]
    touched = []
    for g in base.param_groups:
        g["lr"] = 0.0
        for p in g["params"]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
                touched.append(p)
    base.step()
    for g, lr in zip(base.param_groups, lrs):
        g["lr"] = lr
    for p in touched:
        p.grad = None
    if hasattr(optimizer, "_lazy_init_hp_params_optimizer_state"):  # ZeRO-1/2, bf16: link the moments
        optimizer._lazy_init_hp_params_optimizer_state()


def _set_module_weight(p, value: torch.Tensor) -> None:
    """The module's (low-precision) copy of a weight, on every rank."""
    if _zero3(p):
        import deepspeed  # lazy: as in _full

        with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
            p.data.copy_(value.to(p.device, p.dtype))
    else:
        with torch.no_grad():
            p.data.copy_(value.to(p.device, p.dtype))


def _set_zero3(optimizer, p, value: torch.Tensor, key: Optional[str]) -> None:
    """This rank's partition of a ZeRO-3 parameter's fp32 weight (key None) or Adam moment.
    DeepSpeed's ``set_full_hp_param`` cuts the full tensor without the padding of the last
    partition (a 448-element weight over 3 ranks: 3 x 150), which fails on the last rank."""
    part, _ = optimizer._get_fp32_opt_state_partition(p, release_swap_buffers=False, optim_state_key=key)
    n, rank = part.numel(), optimizer._get_param_partition_rank(p)
    flat = value.flatten()
    chunk = flat[n * rank:n * (rank + 1)]
    part.data.zero_()
    part.data[:chunk.numel()].copy_(chunk)


def load(engine, optimizer, state: dict, where: str) -> dict:
    """Write ``state`` (:func:`read`) into a freshly built engine of any ZeRO stage and world size;
    returns the trainer's progress. Every rank calls."""
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state  # lazy: as in _full

    named = dict((n, p) for n, p in engine.module.named_parameters() if p.requires_grad)
    weights = state["weights"]
    if set(named) != set(weights):
        raise TrainingError(f"{where}: its trainable weights do not match this model's "
                            f"(missing {sorted(set(named) - set(weights))[:5]}, "
                            f"unexpected {sorted(set(weights) - set(named))[:5]})")
    master = _has_master(optimizer)
    if state["moments"] is not None:
        _create_optimizer_state(optimizer)
    for n, p in named.items():
        w = weights[n]
        _set_module_weight(p, w)
        if _zero3(p):
            _set_zero3(optimizer, p, w.to(engine.device), None)
        elif master:
            safe_set_full_fp32_param(p, w.to(engine.device))
        if state["moments"] is None:
            continue
        for key in MOMENTS:
            value = state["moments"][key][n].to(engine.device)
            if _zero3(p):
                _set_zero3(optimizer, p, value, key)
            elif master:
                safe_set_full_optimizer_state(p, value, key)
            else:
                optimizer.state[p][key].copy_(value)
    if state["step"] is not None:
        for s in base_optimizer(optimizer).state.values():
            if torch.is_tensor(s.get("step")):
                s["step"].fill_(state["step"])
            elif "step" in s:
                s["step"] = type(s["step"])(state["step"])
    scaler = getattr(optimizer, "loss_scaler", None)
    for field, value in (state["loss_scaler"] or {}).items():
        if scaler is not None and hasattr(scaler, field):
            setattr(scaler, field, value)
    for field, value in state["engine"].items():
        setattr(engine, field, value)
    return state["progress"]
