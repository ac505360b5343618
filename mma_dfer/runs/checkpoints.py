"""Reading this project's checkpoints: complete, unchanged, and read as data only.

A tag folder ``checkpoints/<tag>/`` is complete when its ``complete.json`` marker exists (written
by rank 0 after every rank finished saving, see :mod:`mma_dfer.training.checkpointing`); the
marker records the run's identity and every file's size and sha256. :func:`latest` skips tags
whose files are missing or changed size (a checkpoint cut short by a crash, a kill or a full
disk is never picked); :func:`verify` checks the hashes before anything is loaded; every file is
read with ``weights_only=True``. Training (resume), evaluation and predict all read through here;
writing a tag and loading it into a DeepSpeed engine is :mod:`mma_dfer.training.checkpointing`'s.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional

from mma_dfer.safe_files import CheckpointError, safe_load
from mma_dfer.utils import sha256_file

log = logging.getLogger(__name__)

MARKER = "complete.json"
MODEL_STATES = "mp_rank_00_model_states.pt"  # DeepSpeed's file with the module state dict (stages 0-2)
ZERO3_MODULE = "trainable_module.pt"  # ours, for ZeRO-3: the gathered trainable weights


def file_table(tag_dir: Path) -> dict:
    """{file name: {size, sha256}} of every file of a tag folder but its marker."""
    return {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(Path(tag_dir).iterdir()) if p.is_file() and p.name != MARKER}


def _sizes_match(tag_dir: Path, marker: dict) -> bool:
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return False
    try:
        return all((tag_dir / name).stat().st_size == f["size"] for name, f in files.items())
    except (OSError, KeyError, TypeError):
        return False


def complete_tags(ckpt_dir: Path) -> list[dict]:
    """Markers of complete checkpoints whose files still have their recorded sizes, oldest first."""
    out = []
    for marker in Path(ckpt_dir).glob(f"*/{MARKER}"):
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("global_step"), int):
            continue
        if _sizes_match(marker.parent, data):
            out.append(data)
        else:
            log.warning("%s: its files are missing or not the size its marker records (truncated?); not used",
                        marker.parent)
    return sorted(out, key=lambda m: m["global_step"])


def latest(ckpt_dir: Path) -> Optional[dict]:
    tags = complete_tags(ckpt_dir)
    return tags[-1] if tags else None


def verify(tag_dir: Path) -> dict:
    """The marker of a tag folder whose every file matches its recorded size and sha256 (a
    :class:`CheckpointError` naming the file otherwise)."""
    tag_dir = Path(tag_dir)
    try:
        data = marker(tag_dir)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{tag_dir}: not a complete checkpoint (no readable {MARKER}: {e})") from None
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{tag_dir}/{MARKER} lists no files (made before checksummed checkpoints?)")
    for name, f in files.items():
        path = tag_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from a complete checkpoint")
        if path.stat().st_size != f.get("size") or sha256_file(path) != f.get("sha256"):
            raise CheckpointError(f"{path}: changed since the checkpoint was written (size or sha256 differs "
                                  f"from {MARKER}): truncated or corrupt")
    return data


# Non-tensor objects that DeepSpeed's checkpoint files hold (seen in 0.19.8's ZeRO-1/2/3 optimizer
# files), allowed when they are read with weights_only=True; any other global is refused.
def deepspeed_safe_globals() -> list:
    # lazy: finding and checking checkpoints (resolve, latest, verify) imports no DeepSpeed
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum  # lazy: as above
    from deepspeed.utils.tensor_fragment import fragment_address  # lazy: as above

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def saved_module(tag_dir: Path) -> dict:
    """The trainable weights a tag folder holds (``module`` of DeepSpeed's model-states file,
    or the gathered file of a ZeRO-3 run), read with ``weights_only=True``."""
    tag_dir = Path(tag_dir)
    if not (tag_dir / MODEL_STATES).is_file() and (tag_dir / ZERO3_MODULE).is_file():
        return safe_load(tag_dir / ZERO3_MODULE)
    module = safe_load(tag_dir / MODEL_STATES, deepspeed_safe_globals()).get("module")
    if not isinstance(module, dict):
        raise CheckpointError(f"{tag_dir / MODEL_STATES}: no 'module' state dict")
    return module


def weights_digest(module: dict) -> str:
    """sha256 of a state dict's tensors (names, dtypes, shapes and bytes, in name order)."""
    import torch  # lazy: finding and checking checkpoints (resolve, latest, verify) imports no torch

    h = hashlib.sha256()
    for name in sorted(module):
        t = module[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def marker(tag_dir: Path) -> dict:
    """The ``complete.json`` of one tag folder (tag, global_step, epoch, identity, files)."""
    return json.loads((Path(tag_dir) / MARKER).read_text())


def world_size(marker: dict) -> int:
    """How many ranks wrote a checkpoint: its marker says so (``world_size``); a marker written
    before it did is counted by its per-rank RNG files."""
    if isinstance(marker.get("world_size"), int):
        return marker["world_size"]
    return max(1, sum(1 for name in marker.get("files", {}) if name.startswith("rng_rank")))


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
