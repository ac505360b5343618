"""The model, its optimizer and the DeepSpeed engine, set up the fast way; shared by the trainer
and ``bench/train_step.py`` so that the benchmark times exactly what training runs.

What makes the step fast (bench/RESULTS.md has the measurements):
- mixed precision through DeepSpeed's ``torch_autocast`` section (the shipped bf16/fp16 JSONs):
  the engine keeps the fp32 trainable parameters and hands the optimizer over unwrapped, while
  its ``bf16``/``fp16`` sections wrap it in an fp16 optimizer that checks every gradient tensor
  for overflow with a host sync (~800 extra ops and ~200 syncs per step). The frozen encoder
  weights are stored in the autocast dtype once (:meth:`MMADFER.cast_frozen`);
- a fused AdamW (one kernel for all trainable tensors instead of ~10 per tensor);
- no gradient all-reduce on a single rank at ZeRO stage 0 (DeepSpeed flattens, reduces and
  copies back every gradient even when there is nothing to reduce with);
- ``train.compile``: torch.compile of the whole model (forward and backward).
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from typing import NamedTuple, Optional

import torch

from mma_dfer.config import Config, TrainConfig
from mma_dfer.precision import autocast_name, is_float16, precision_name, torch_dtype

log = logging.getLogger(__name__)


def make_optimizer(params, t: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the config's hyper-parameters; the fused implementation where this torch has
    one for the device (the same update, computed in one kernel; rounding may differ ~1e-7)."""
    fused = "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay,
                             **({"fused": True} if fused else {}))


def compile_mode(t: TrainConfig, device: torch.device) -> Optional[str]:
    """The torch.compile mode for training on ``device``, or None for eager ("auto": compile on a
    GPU only; on the CPU compiling two ViT-Bs takes minutes for no gain in a short run)."""
    mode = ("default" if device.type == "cuda" else "eager") if t.compile == "auto" else t.compile
    if mode == "eager":
        return None
    t.check_compile_backend()
    return mode


def compile_model(model: torch.nn.Module, t: TrainConfig, device: torch.device,
                  fullgraph: bool = False) -> Optional[str]:
    """Compile ``model`` in place (state-dict keys unchanged), as the engine does; returns the mode.
    ``fullgraph`` makes a graph break an error (the tests' check) instead of a fallback."""
    mode = compile_mode(t, device)
    if mode is not None:
        model.compile(backend=t.compile_backend, mode=mode, dynamic=False, fullgraph=fullgraph)
    return mode


def eager():
    """Evaluation runs the compiled module eagerly: an eval-mode graph and one per last partial
    batch would each cost another compilation for a few thousand forward passes."""
    stance = getattr(torch.compiler, "set_stance", None)
    return stance("force_eager") if stance else contextlib.nullcontext()


def replays_cudagraphs(mode: Optional[str]) -> bool:
    """Whether a compiled step in ``mode`` replays CUDA graphs (each step must then be marked)."""
    return mode in ("reduce-overhead", "max-autotune")


class BuiltEngine(NamedTuple):
    """What :func:`build_engine` returns: the DeepSpeed engine and what the loop needs beside it."""

    engine: object  # the deepspeed.DeepSpeedEngine
    optimizer: torch.optim.Optimizer
    input_dtype: torch.dtype  # the module's under a whole-module bf16/fp16 JSON, else fp32
    compile_mode: Optional[str]  # None: eager

    @property
    def cudagraphs(self) -> bool:
        return replays_cudagraphs(self.compile_mode)

    @property
    def loss_scaling(self) -> bool:
        """fp16 with dynamic loss scaling: overflowing steps are skipped, not fatal."""
        return is_float16(precision_name(self.engine))


def build_engine(model, cfg: Config, ds_cfg: dict) -> BuiltEngine:
    """``deepspeed.initialize`` with the fast settings above. Inputs are cast to the module's
    dtype under a whole-module bf16/fp16 JSON and stay fp32 under autocast (the patch
    embeddings cast them)."""
    import deepspeed  # lazy: after cpu_op.prepare (the trainer's order); make_optimizer, compile_model need none

    autocast = autocast_name(ds_cfg)
    if autocast is not None:
        model.cast_frozen(torch_dtype(autocast))
    optimizer = make_optimizer(model.trainable_parameters(), cfg.train)
    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_cfg,
                                                   dist_init_required=False)
    if engine.dp_world_size == 1 and not engine.zero_optimization():
        engine.enable_backward_allreduce = False  # nothing to reduce with; DeepSpeed would still copy
    mode = compile_mode(cfg.train, engine.device)
    if mode is not None:  # after initialize: ZeRO-1/2 have moved the parameters into their flat
        # buffer (views at offsets inductor must see when it compiles: it checks no parameter's
        # alignment per call, and a graph built on aligned ones faults on the flat views)
        engine.compile(backend=cfg.train.compile_backend, compile_kwargs={"mode": mode, "dynamic": False})
        log.info("torch.compile: mode %s, backend %s (the first steps compile)", mode, cfg.train.compile_backend)
    input_dtype = (torch.float16 if engine.fp16_enabled() else
                   torch.bfloat16 if engine.bfloat16_enabled() else torch.float32)
    return BuiltEngine(engine, optimizer, input_dtype, mode)
