"""DeepSpeed checkpoints that are complete or ignored.

Each save writes DeepSpeed's files under ``checkpoints/<tag>/``; only after every rank has
finished (a barrier) does rank 0 write ``<tag>/complete.json`` (atomically). ``--resume auto``
takes the newest tag with that marker, so a checkpoint cut short by a crash or a kill is never
picked. Older complete tags beyond ``keep`` are removed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import torch.distributed as dist

from mma_dfer.utils import atomic_write_json

MARKER = "complete.json"


def save(engine, ckpt_dir: Path, tag: str, client_state: dict, is_main: bool, keep: int = 2) -> None:
    # The frozen encoder weights are not saved: they come back from the pretrained files (or
    # the seeded random init) when the model is rebuilt, which keeps a checkpoint at ~90 MB.
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, save_latest=False,
                           exclude_frozen_parameters=True)
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


def saved_module(tag_dir: Path) -> dict:
    """The trainable weights a tag folder holds (``module`` of DeepSpeed's model-states file),
    read with ``weights_only=True``."""
    from mma_dfer.models.checkpoints import CheckpointError, safe_load

    module = safe_load(Path(tag_dir) / MODEL_STATES).get("module")
    if not isinstance(module, dict):
        raise CheckpointError(f"{Path(tag_dir) / MODEL_STATES}: no 'module' state dict "
                              "(ZeRO-3 runs: consolidate with zero_to_fp32 first)")
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
