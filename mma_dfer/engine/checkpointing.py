"""DeepSpeed checkpoints that are complete or ignored.

Each save writes DeepSpeed's files under ``checkpoints/<tag>/``; only after every rank has
finished (a barrier) does rank 0 write ``<tag>/complete.json`` (atomically). ``--resume auto``
takes the newest tag with that marker, so a checkpoint cut short by a crash or a kill is never
picked. Older complete tags beyond ``keep`` are removed.
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from mma_dfer.utils import atomic_write_bytes, atomic_write_json

MARKER = "complete.json"


def save(engine, ckpt_dir: Path, tag: str, client_state: dict, is_main: bool, keep: int = 2) -> None:
    # The frozen encoder weights are not saved: they come back from the pretrained files (or
    # the seeded random init) when the model is rebuilt, which keeps a checkpoint at ~90 MB.
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, save_latest=False,
                           exclude_frozen_parameters=True)
    if engine.zero_optimization_stage() == 3:
        save_gathered_trainables(engine, ckpt_dir / tag, is_main)
    if dist.is_initialized():
        dist.barrier()
    if is_main:
        atomic_write_json(ckpt_dir / tag / MARKER, {"tag": tag, "global_step": client_state["global_step"],
                                                     "epoch": client_state["epoch"],
                                                     "step_in_epoch": client_state["step_in_epoch"]})
        for old in complete_tags(ckpt_dir)[:-keep]:
            shutil.rmtree(ckpt_dir / old["tag"], ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()


def complete_tags(ckpt_dir: Path) -> list[dict]:
    """Markers of complete checkpoints, oldest first."""
    out = []
    for marker in Path(ckpt_dir).glob(f"*/{MARKER}"):
        try:
            out.append(json.loads(marker.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda m: m["global_step"])


def latest(ckpt_dir: Path) -> Optional[dict]:
    tags = complete_tags(ckpt_dir)
    return tags[-1] if tags else None


MODEL_STATES = "mp_rank_00_model_states.pt"  # DeepSpeed's file with the module state dict (stages 0-2)
ZERO3_MODULE = "trainable_module.pt"  # ours, for ZeRO-3: the gathered trainable weights


def save_gathered_trainables(engine, tag_dir: Path, is_main: bool) -> None:
    """Under ZeRO-3 DeepSpeed's files hold only each rank's shards of every weight, readable
    only by DeepSpeed's own unpickling. Gather the trainable weights (7.6M, cheap; every rank
    must take part) and write them as a plain state dict, so evaluation needs no DeepSpeed and
    loads with ``weights_only=True`` as for the other stages."""
    import deepspeed

    named = [(n, p) for n, p in engine.module.named_parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters([p for _, p in named]):
        if is_main:
            buf = io.BytesIO()
            torch.save({n: p.detach().cpu().clone() for n, p in named}, buf)
            atomic_write_bytes(Path(tag_dir) / ZERO3_MODULE, buf.getvalue())


def saved_module(tag_dir: Path) -> dict:
    """The trainable weights a tag folder holds (``module`` of DeepSpeed's model-states file,
    or the gathered file of a ZeRO-3 run), read with ``weights_only=True``."""
    from mma_dfer.models.checkpoints import CheckpointError, safe_load

    tag_dir = Path(tag_dir)
    if not (tag_dir / MODEL_STATES).is_file() and (tag_dir / ZERO3_MODULE).is_file():
        return safe_load(tag_dir / ZERO3_MODULE)
    module = safe_load(tag_dir / MODEL_STATES).get("module")
    if not isinstance(module, dict):
        raise CheckpointError(f"{tag_dir / MODEL_STATES}: no 'module' state dict")
    return module


def marker(tag_dir: Path) -> dict:
    """The ``complete.json`` of one tag folder (tag, global_step, epoch, step_in_epoch)."""
    return json.loads((Path(tag_dir) / MARKER).read_text())


def resolve(path: Path) -> Path:
    """A run folder, its ``checkpoints/`` folder or one tag folder -> the complete tag folder."""
    path = Path(path)
    if (path / MARKER).is_file():
        return path
    for base in (path / "checkpoints", path):
        found = latest(base) if base.is_dir() else None
        if found:
            return base / found["tag"]
    raise FileNotFoundError(f"{path}: no complete checkpoint (a tag folder with {MARKER}) found")
