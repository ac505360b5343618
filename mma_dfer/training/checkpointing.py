"""Saving and resuming through DeepSpeed, so that a checkpoint is complete or ignored.

Each save writes DeepSpeed's files under ``checkpoints/<tag>/``; only after every rank has
finished (a barrier) does rank 0 write ``<tag>/complete.json`` (atomically), with the run's
identity and every file's size and sha256 (reading them back: :mod:`mma_dfer.runs.checkpoints`).
Older complete tags beyond ``keep`` and folders left incomplete by a killed save are removed.
A resume reads DeepSpeed's files through ``weights_only=True`` (:func:`use_safe_loading`:
DeepSpeed's own loader unpickles anything). A save that runs out of disk space removes what it
wrote of its tag and stops with a :class:`NoSpaceError` naming the folder; the previous complete
checkpoint is left as it was, so the same command resumes once space is freed.
"""
from __future__ import annotations

import errno
import io
import os
import shutil
import signal
from pathlib import Path

import torch
import torch.distributed as dist

from mma_dfer.runs.checkpoints import MARKER, ZERO3_MODULE, complete_tags, deepspeed_safe_globals, file_table
from mma_dfer.training import TrainingError
from mma_dfer.utils import atomic_write_bytes, atomic_write_json


class NoSpaceError(TrainingError):
    """The file system ran out of space while a checkpoint was written (exit 2, not a lost rank)."""


def is_no_space(exc: BaseException, ckpt_dir: Path) -> bool:
    """ENOSPC or EDQUOT; torch's zip writer reports a full disk only as a failed write ("file write
    failed", "unexpected pos"), which counts when the checkpoints' file system has less room left
    than two checkpoints (64 MiB at least)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return True
    if not (isinstance(exc, RuntimeError) and ("file write failed" in text or "unexpected pos" in text)):
        return False
    newest = complete_tags(ckpt_dir)
    size = sum(f.get("size", 0) for f in newest[-1]["files"].values()) if newest else 0
    return shutil.disk_usage(ckpt_dir).free < max(2 * size, 64 * 2 ** 20)


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save(engine, ckpt_dir: Path, tag: str, client_state: dict, is_main: bool, identity: dict,
         before_marker=None, keep: int = 2) -> None:
    """Write tag ``tag`` on every rank (DeepSpeed's files, then ``before_marker()``'s, e.g. the
    rank's RNG states), then (rank 0) its marker with ``identity`` ({"config_fingerprint",
    "identity"} of the run) and the files' hashes, then prune."""
    tag_dir = Path(ckpt_dir) / tag
    if is_main and tag_dir.exists():  # a folder left by a killed save of this tag: never mix its files in
        shutil.rmtree(tag_dir)
    _barrier()
    try:
        # The frozen encoder weights are not saved: they come back from the pretrained files (or
        # the seeded random init) when the model is rebuilt, which keeps a checkpoint at ~90 MB.
        engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, save_latest=False,
                               exclude_frozen_parameters=True)
        if engine.zero_optimization_stage() == 3:
            save_gathered_trainables(engine, tag_dir, is_main)
        if before_marker is not None:
            before_marker()
        _barrier()
        if is_main:
            _test_hook_kill("save", tag)
            atomic_write_json(tag_dir / MARKER, {"tag": tag, "global_step": client_state["global_step"],
                                                 "epoch": client_state["epoch"],
                                                 "step_in_epoch": client_state["step_in_epoch"],
                                                 "world_size": engine.dp_world_size, **identity,
                                                 "files": file_table(tag_dir)})
    except (OSError, RuntimeError) as e:
        if not is_no_space(e, Path(ckpt_dir)):
            raise
        shutil.rmtree(tag_dir, ignore_errors=True)  # never picked (no marker); removed to give the space back
        newest = complete_tags(ckpt_dir)
        kept = f"{Path(ckpt_dir) / newest[-1]['tag']} is intact" if newest else "there is no earlier checkpoint"
        raise NoSpaceError(f"{tag_dir}: no space left on device while writing this checkpoint (removed); {kept}. "
                           "Free space there and rerun the same command to resume") from None
        for old in complete_tags(ckpt_dir)[:-keep]:
            shutil.rmtree(Path(ckpt_dir) / old["tag"], ignore_errors=True)
        for leftover in Path(ckpt_dir).iterdir():
            if leftover.is_dir() and not (leftover / MARKER).is_file():
                shutil.rmtree(leftover, ignore_errors=True)
    _barrier()


KILL_ENV = "MMA_DFER_TEST_KILL_AT"  # test hook: "save:<tag>" SIGKILLs rank 0 before that tag's marker


def _test_hook_kill(where: str, what: str) -> None:
    if os.environ.get(KILL_ENV) == f"{where}:{what}":
        os.kill(os.getpid(), signal.SIGKILL)


def use_safe_loading(engine) -> None:
    """Make every file DeepSpeed's ``load_checkpoint`` reads go through ``weights_only=True``
    loading (its own engine unpickles with ``weights_only=False``, which runs any code a file
    carries). A file with another global is refused with a :class:`CheckpointError` naming it."""
    from mma_dfer.models.checkpoints import safe_load

    allowed = deepspeed_safe_globals()
    engine.checkpoint_engine.load = lambda path, map_location=None: safe_load(path, allowed)


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
