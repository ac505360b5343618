"""The run's checkpoints: which one a run continues from, writing them, loading them into the
engine. The one place that knows DeepSpeed's checkpoint files (reading complete ones without
DeepSpeed, for evaluation and predict too, is :mod:`mma_dfer.runs.checkpoints`).

Each save writes DeepSpeed's files under ``checkpoints/<tag>/``, every rank's RNG states and
``portable_state.pt`` (:mod:`~mma_dfer.training.portable`); only after every rank has finished (a
barrier) does rank 0 write ``<tag>/complete.json`` (atomically), with the run's identity and
every file's size and sha256. Older complete tags beyond the newest two and folders left
incomplete by a killed save are then removed. A resume checks every file against the marker's
hashes and reads DeepSpeed's files through ``weights_only=True`` (:func:`use_safe_loading`:
DeepSpeed's own loader unpickles anything). A save that runs out of disk space removes what it
wrote of its tag and stops with a :class:`NoSpaceError` naming the folder; the previous complete
checkpoint is left as it was, so the same command resumes once space is freed.
"""
from __future__ import annotations

import errno
import io
import logging
import shutil
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from mma_dfer import faults
from mma_dfer.runs import checkpoints
from mma_dfer.runs.checkpoints import MARKER, ZERO3_MODULE, complete_tags, deepspeed_safe_globals, file_table
from mma_dfer.runs.identity import check_same
from mma_dfer.safe_files import safe_load
from mma_dfer.training import TrainingError, portable
from mma_dfer.training.distributed import DistEnv
from mma_dfer.training.engine import BuiltEngine
from mma_dfer.training.loss_scale import LossScale
from mma_dfer.training.plan import RunPlan
from mma_dfer.training.rng import rng_state, set_rng_state
from mma_dfer.training.state import TrainState
from mma_dfer.utils import atomic_write_bytes, atomic_write_json

log = logging.getLogger("mma_dfer.train")
KEEP = 2  # complete checkpoints kept: the newest and the one before it


class NoSpaceError(TrainingError):
    """The file system ran out of space while a checkpoint was written (exit 2, not a lost rank)."""


class CheckpointManager:
    """The checkpoints of one run (``<run_dir>/checkpoints``). Before the engine exists: which
    checkpoint to continue from and whether it can continue on this number of ranks; with the
    engine (given to each call): save and load."""

    def __init__(self, plan: RunPlan, env: DistEnv):
        self.plan, self.env = plan, env
        self.dir = plan.cfg.run_dir / "checkpoints"

    # before the engine ----------------------------------------------------------------------
    def find_resume(self, resume: str) -> Optional[Path]:
        """The complete checkpoint of this config to continue from, or None (start fresh).
        ``resume``: "auto" (this run folder's newest), "never", or a tag folder of this config."""
        if resume == "never":
            return None
        if resume == "auto":
            found = checkpoints.latest(self.dir)
            return None if found is None else self.dir / found["tag"]  # its identity: claim() checked it
        path = Path(resume)
        if not (path / MARKER).is_file():
            raise TrainingError(f"--resume {path}: not a complete checkpoint (no {MARKER})")
        check_same(checkpoints.marker(path).get("identity"), self.plan.identity, str(path), "the checkpoint",
                   f"Start this config from its weights with --init-from {path} instead.")
        return path

    def check_world_size(self, tag_dir: Optional[Path]) -> None:
        """A checkpoint written by another number of ranks continues through its rank-independent
        state (training/portable.py); one without it (written before it existed), or a JSON whose
        optimizer state cannot be written rank-independently, is refused before anything is written."""
        if tag_dir is None:
            return
        marker = checkpoints.marker(tag_dir)
        saved, now = checkpoints.world_size(marker), self.env.world_size
        if saved == now:
            return
        ds_cfg, ds_path = self.plan.ds_cfg, self.plan.ds_config_path
        fp16_z0 = ds_cfg.get("fp16", {}).get("enabled") and not ds_cfg.get("zero_optimization", {}).get("stage")
        why = (None if portable.FILE in marker.get("files", {}) else
               f"it holds no rank-independent state ({portable.FILE}; checkpoints before it was added do not)")
        if fp16_z0:
            why = f"{ds_path} is a whole-module fp16 JSON at ZeRO stage 0, whose master weights " \
                  "DeepSpeed keeps out of reach (use the torch_autocast fp16 JSON or ZeRO-1/2/3)"
        if why:
            raise TrainingError(f"{tag_dir} was written by {saved} ranks and this run has {now}: it cannot continue "
                                f"on {now} because {why}. Resume it on {saved} ranks (deepspeed --num_gpus {saved}, "
                                f"srun -n {saved}), or start a new run from its weights with --init-from {tag_dir}")
        log.info("%s was written by %d ranks; continuing on %d through %s", tag_dir, saved, now, portable.FILE)

    def origin(self) -> dict:
        """Where the run's trainable weights started: the seeded init, or --init-from's checkpoint."""
        return {"kind": "scratch"} if self.plan.init is None else self.plan.init.origin()

    # saving ---------------------------------------------------------------------------------
    def save(self, tag: str, built: BuiltEngine, state: TrainState, scale: LossScale, lease) -> None:
        """Write tag ``tag`` (every rank calls): DeepSpeed's files with the progress, the RNG
        states and the portable state, then rank 0's marker; then the older tags go. ``lease``:
        the run folder's (rank 0's; None elsewhere), which another run may have taken over."""
        if lease is not None and lease.lost:
            raise TrainingError(f"{self.plan.cfg.run_dir}: another run took this folder's lease over ({lease.lost}); "
                                "this run stops without writing more")
        grad_scaler = scale.state()
        client = {**state.saved(), "config": self.plan.cfg.to_dict(), **self.stamp()}
        if grad_scaler is not None:
            client["grad_scaler"] = grad_scaler
        tag_dir = self.dir / tag
        if self.env.is_main and tag_dir.exists():  # a folder left by a killed save of this tag: never mix its files in
            shutil.rmtree(tag_dir)
        _barrier()
        try:
            self._write(tag_dir, built, client, {**state.saved(), "grad_scaler": grad_scaler})
        except (OSError, RuntimeError) as e:
            if not is_no_space(e, self.dir):
                raise
            shutil.rmtree(tag_dir, ignore_errors=True)  # never picked (no marker); removed to give the space back
            newest = complete_tags(self.dir)
            kept = f"{self.dir / newest[-1]['tag']} is intact" if newest else "there is no earlier checkpoint"
            raise NoSpaceError(f"{tag_dir}: no space left on device while writing this checkpoint (removed); {kept}. "
                               "Free space there and rerun the same command to resume") from None
        if self.env.is_main:
            self._prune()
        _barrier()
        log.info("saved checkpoint %s", tag_dir)

    def stamp(self) -> dict:
        """The run's identity as a checkpoint records it (client state and marker)."""
        return {"config_fingerprint": self.plan.fingerprint, "identity": self.plan.identity}

    def _write(self, tag_dir: Path, built: BuiltEngine, client: dict, progress: dict) -> None:
        engine, env = built.engine, self.env
        # The frozen encoder weights are not saved: they come back from the pretrained files (or
        # the seeded random init) when the model is rebuilt, which keeps a checkpoint at ~90 MB.
        engine.save_checkpoint(str(self.dir), tag=tag_dir.name, client_state=client, save_latest=False,
                               exclude_frozen_parameters=True)
        if engine.zero_optimization_stage() == 3:
            save_gathered_trainables(engine, tag_dir, env.is_main)
        torch.save(rng_state(), tag_dir / f"rng_rank{env.rank}.pt")
        if portable.supported(engine) is None:
            portable.save(engine, built.optimizer, tag_dir, env.is_main, progress)
        _barrier()
        if env.is_main:
            faults.point("checkpoint.before_marker", tag=tag_dir.name)
            atomic_write_json(tag_dir / MARKER, {"tag": tag_dir.name, "global_step": client["global_step"],
                                                 "epoch": client["epoch"], "step_in_epoch": client["step_in_epoch"],
                                                 "world_size": engine.dp_world_size, **self.stamp(),
                                                 "files": file_table(tag_dir)})

    def _prune(self) -> None:
        """Remove the complete tags older than the newest :data:`KEEP` and what killed saves left."""
        for old in complete_tags(self.dir)[:-KEEP]:
            shutil.rmtree(self.dir / old["tag"], ignore_errors=True)
        for leftover in self.dir.iterdir():
            if leftover.is_dir() and not (leftover / MARKER).is_file():
                shutil.rmtree(leftover, ignore_errors=True)

    # loading --------------------------------------------------------------------------------
    def load(self, tag_dir: Path, built: BuiltEngine, scale: LossScale) -> TrainState:
        """Continue from ``tag_dir``: weights, optimizer, progress, loss scale and RNG streams,
        every file checked against the marker's hashes and read with weights_only=True."""
        saved_world = checkpoints.world_size(checkpoints.verify(tag_dir))
        if saved_world != self.env.world_size:
            return self._load_portable(tag_dir, built, scale, saved_world)
        # strict=False below: the frozen encoder weights are not in the checkpoint (see _write);
        # every trainable one must be, which is checked, not assumed.
        saved = checkpoints.saved_module(tag_dir).keys()
        missing = [n for n, p in built.engine.module.named_parameters() if p.requires_grad and n not in saved]
        if missing:
            raise TrainingError(f"checkpoint {tag_dir} lacks trainable weights {missing[:5]}")
        use_safe_loading(built.engine)
        _, client = built.engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name,
                                                 load_lr_scheduler_states=False, load_module_strict=False)
        if client is None:
            raise TrainingError(f"cannot load checkpoint {tag_dir}")
        state = TrainState.from_saved(client)
        scale.restore(client.get("grad_scaler"))
        self._restore_rng(tag_dir)
        log.info("resumed from %s (epoch %d, step %d of the epoch)", tag_dir, state.epoch, state.step_in_epoch)
        return state

    def _load_portable(self, tag_dir: Path, built: BuiltEngine, scale: LossScale, saved_world: int) -> TrainState:
        """Continue from ``tag_dir`` written by ``saved_world`` ranks: the rank-independent state
        (weights, Adam moments and step, loss scale, progress); each rank's RNG file where this
        rank had one (drop-path of the other ranks starts from the seed)."""
        progress = portable.load(built.engine, built.optimizer, portable.read(tag_dir), str(tag_dir))
        state = TrainState.from_saved(progress)
        scale.restore(progress.get("grad_scaler"))
        self._restore_rng(tag_dir)
        log.info("resumed from %s (epoch %d, step %d of the epoch) on %d ranks; it was written by %d",
                 tag_dir, state.epoch, state.step_in_epoch, self.env.world_size, saved_world)
        return state

    def _restore_rng(self, tag_dir: Path) -> None:
        rng_file = tag_dir / f"rng_rank{self.env.rank}.pt"
        if rng_file.is_file():
            set_rng_state(safe_load(rng_file), str(rng_file))


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


def use_safe_loading(engine) -> None:
    """Make every file DeepSpeed's ``load_checkpoint`` reads go through ``weights_only=True``
    loading (its own engine unpickles with ``weights_only=False``, which runs any code a file
    carries). A file with another global is refused with a :class:`CheckpointError` naming it."""
    allowed = deepspeed_safe_globals()
    engine.checkpoint_engine.load = lambda path, map_location=None: safe_load(path, allowed)


def save_gathered_trainables(engine, tag_dir: Path, is_main: bool) -> None:
    """Under ZeRO-3 DeepSpeed's files hold only each rank's shards of every weight, readable
    only by DeepSpeed's own unpickling. Gather the trainable weights (7.6M, cheap; every rank
    must take part) and write them as a plain state dict, so evaluation needs no DeepSpeed and
    loads with ``weights_only=True`` as for the other stages."""
    import deepspeed  # lazy: importing DeepSpeed takes seconds; submit's planned_identity imports this module

    named = [(n, p) for n, p in engine.module.named_parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters([p for _, p in named]):
        if is_main:
            buf = io.BytesIO()
            torch.save({n: p.detach().cpu().clone() for n, p in named}, buf)
            atomic_write_bytes(Path(tag_dir) / ZERO3_MODULE, buf.getvalue())
