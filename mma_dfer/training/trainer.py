"""One fold at one resolution, trained the paper's way through the DeepSpeed engine.

``run(cfg, ds_config, resume, init_from)`` is the whole job: distributed set-up, data, model, DeepSpeed,
the epoch loop (cosine LR stepped per epoch, checkpoint every epoch and on SIGUSR1/SIGTERM/Ctrl-C),
the final 1-clip and 2-clip evaluation and ``result.json``. Exit paths: normal completion;
:class:`Preempted` after a signal (checkpoint written, the caller requeues); an exception
(nothing overwritten).
"""
from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from mma_dfer.config import Config, save_config
from mma_dfer.data.annotations import read_split
from mma_dfer.data.dataset import ClipDataset, collate, placeholder_inputs
from mma_dfer.inference.evaluate import evaluate
from mma_dfer.datasets import class_names
from mma_dfer.precision import precision_name
from mma_dfer.runs import checkpoints
from mma_dfer.runs.folder import claim, write_identity
from mma_dfer.runs.lease import Lease, LeaseError
from mma_dfer.runs.identity import check_same, fingerprint, flatten, run_identity
from mma_dfer.runs.results import make_result
from mma_dfer.training import TrainingError, checkpointing, portable
from mma_dfer.training.distributed import DistEnv, all_max, all_mean, detect, init_process_group
from mma_dfer.training.ds_config import deepspeed_config
from mma_dfer.training.engine import build_engine, eager
from mma_dfer.training.logging import RunLogger
from mma_dfer.training.loss_window import LossWindow
from mma_dfer.training.rng import rng_state, set_rng_state
from mma_dfer.training.sampler import GlobalBatchSampler
from mma_dfer.training.schedule import cosine_lr, set_lr
from mma_dfer.training.signals import Preempted, StopFlag, fault_hook
from mma_dfer.utils import atomic_write_json, seed_everything

log = logging.getLogger("mma_dfer.train")

MAX_BAD_STEPS = 20  # consecutive non-finite losses the fp16 loss scaler may absorb


# -- helpers -------------------------------------------------------------------------------

def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_loader(dataset, batch_sampler, workers: int):
    """The training loader: ``workers`` processes, 4 batches ahead each, pinned batches on a GPU
    (their copy to the device then overlaps the step). An explicit generator keeps the loader
    from drawing on the global RNG, which the model's drop-path uses: a resumed run then
    continues the same random stream."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate,
                      generator=torch.Generator().manual_seed(0), persistent_workers=False,
                      pin_memory=torch.cuda.is_available(), prefetch_factor=4 if workers > 0 else None)


# -- the run -------------------------------------------------------------------------------

class Trainer:
    """Args:
        cfg: the resolved config.
        ds_config_path: the DeepSpeed JSON (ZeRO stage and precision).
        resume: "auto" (continue this config's run in its folder, if there is one), "never" (start
            fresh; the folder must not hold a run) or a complete checkpoint tag folder of this config.
        init_from: a run folder or checkpoint of another run whose trainable weights this run
            starts from (its optimizer state and progress are not taken); recorded in the identity.
    """

    def __init__(self, cfg: Config, ds_config_path: str | Path, resume: str = "auto",
                 init_from: Optional[str] = None):
        self.cfg = cfg
        self.env: DistEnv = detect()
        self.env.export()
        self.run_dir = cfg.run_dir
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.resume = resume
        self.init_from = init_from
        self.ds_config_path = ds_config_path
        logging.basicConfig(level=logging.INFO if self.env.is_main else logging.WARNING,
                            format=f"[rank{self.env.rank}] %(asctime)s %(levelname)s %(message)s")

    # set-up ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """The DeepSpeed JSON, the fold's lists and the run's identity: everything the run folder
        is checked against, before any heavy work (a bad JSON or root fails here)."""
        cfg = self.cfg
        self.ds_cfg = deepspeed_config(self.ds_config_path, cfg, self.env.world_size)
        self.train_samples = read_split(cfg.data, "train")
        self.test_samples = read_split(cfg.data, "test")
        self.init = load_init(self.init_from) if self.init_from else None
        self.identity = run_identity(cfg, self.ds_cfg, self.train_samples, self.test_samples,
                                     self.init["weights_sha256"] if self.init else None)
        self.fingerprint = fingerprint(self.identity)

    def setup(self) -> None:
        from mma_dfer.models import build_model

        cfg, env = self.cfg, self.env
        self.train_set = ClipDataset(self.train_samples, cfg.data, train=True, seed=cfg.train.seed)
        from mma_dfer.training import cpu_op

        if not dist.is_initialized():
            cpu_op.prepare(env.world_size, env.is_main)
            init_process_group(env, cfg.train.collective_timeout_s)
        self.take_lease()
        seed_everything(cfg.train.seed)  # same initial weights on every rank
        model = build_model(cfg)
        if self.init is not None and self.resume_from is None:  # before DeepSpeed copies the weights
            self.init_weights(model)
        built = build_engine(model, cfg, self.ds_cfg)
        self.engine, self.optimizer, self.dtype = built.engine, built.optimizer, built.input_dtype
        self.cudagraphs, self.loss_scaling = built.cudagraphs, built.loss_scaling
        if precision_name(self.engine) != self.identity["deepspeed.precision"]:
            raise TrainingError(f"{self.ds_config_path}: DeepSpeed trains in {precision_name(self.engine)}, but the "
                                f"run identity reads {self.identity['deepspeed.precision']} off the JSON")
        self.device = self.engine.device
        self.bad_run = self.worst_run = 0  # consecutive non-finite steps (see check)
        t = cfg.train
        micro = self.ds_cfg["train_micro_batch_size_per_gpu"]
        self.sampler = GlobalBatchSampler(len(self.train_set), t.batch_size, micro, env.rank, env.world_size, t.seed)
        if self.sampler.steps_per_epoch == 0:
            raise TrainingError(f"fold {cfg.data.fold} has {len(self.train_set)} training clips, fewer than one "
                                f"batch of {t.batch_size}")
        self.logger = RunLogger(self.run_dir, env.is_main)
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "train_time": 0.0, "samples": 0}
        seed_everything(t.seed + 1000 * env.rank)  # per-rank stream for drop-path

    def take_lease(self) -> None:
        """Rank 0 takes the run folder's lease (runs/lease.py) before anything is written; every
        rank stops with the same error when another live run holds it."""
        self.lease, held = None, None
        if self.env.is_main:
            try:
                self.lease = Lease(self.run_dir).acquire()
            except LeaseError as e:
                held = e
        device = torch.device("cuda", self.env.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        refused = all_max([float(self.env.is_main and held is not None)], device)[0]
        if self.env.is_main and held is not None:
            raise TrainingError(str(held))
        if refused:
            raise TrainingError(f"{self.run_dir} is in use by another run (rank 0 names it)")

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
        fp16_z0 = self.ds_cfg.get("fp16", {}).get("enabled") and not self.ds_cfg.get("zero_optimization", {}).get("stage")
        why = (None if portable.FILE in marker.get("files", {}) else
               f"it holds no rank-independent state ({portable.FILE}; checkpoints before it was added do not)")
        if fp16_z0:
            why = f"{self.ds_config_path} is a whole-module fp16 JSON at ZeRO stage 0, whose master weights " \
                  "DeepSpeed keeps out of reach (use the torch_autocast fp16 JSON or ZeRO-1/2/3)"
        if why:
            raise TrainingError(f"{tag_dir} was written by {saved} ranks and this run has {now}: it cannot continue "
                                f"on {now} because {why}. Resume it on {saved} ranks (deepspeed --num_gpus {saved}, "
                                f"srun -n {saved}), or start a new run from its weights with --init-from {tag_dir}")
        log.info("%s was written by %d ranks; continuing on %d through %s", tag_dir, saved, now, portable.FILE)

    def init_weights(self, model) -> None:
        """--init-from: the other run's trainable weights, every one of them, in this model."""
        weights = self.init["weights"]
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        missing = sorted(set(params) - set(weights))
        unexpected = sorted(set(weights) - set(params))
        shapes = sorted(n for n in set(params) & set(weights) if tuple(params[n].shape) != tuple(weights[n].shape))
        if missing or unexpected or shapes:
            raise TrainingError(f"--init-from {self.init['checkpoint']}: its trainable weights do not fit this "
                                f"model (missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes "
                                f"{shapes[:5]})")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(weights[n])
        log.info("initialised the trainable weights from %s (run %s, epoch %s)", self.init["checkpoint"],
                 self.init["config_fingerprint"], self.init["epoch"])

    def loader(self):
        return train_loader(self.train_set, self.sampler, self.cfg.data.num_workers)

    # checkpoints ---------------------------------------------------------------------------
    def save(self, tag: str) -> None:
        stamp = {"config_fingerprint": self.fingerprint, "identity": self.identity}
        client = {**self.state, "config": self.cfg.to_dict(), **stamp}
        if self.grad_scaler() is not None:
            client["grad_scaler"] = self.grad_scaler().state_dict()
        tag_dir = self.ckpt_dir / tag
        if self.lease is not None and self.lease.lost:
            raise TrainingError(f"{self.run_dir}: another run took this folder's lease over ({self.lease.lost}); "
                                "this run stops without writing more")
        progress = {**self.state, "grad_scaler": client.get("grad_scaler")}

        def before_marker():
            torch.save(rng_state(), tag_dir / f"rng_rank{self.env.rank}.pt")
            if portable.supported(self.engine) is None:
                portable.save(self.engine, self.optimizer, tag_dir, self.env.is_main, progress)

        checkpointing.save(self.engine, self.ckpt_dir, tag, client, self.env.is_main, stamp, before_marker=before_marker)
        log.info("saved checkpoint %s", tag_dir)

    def find_resume(self) -> Optional[Path]:
        """The complete checkpoint of this config to continue from, or None (start fresh)."""
        if self.resume == "never":
            return None
        if self.resume == "auto":
            found = checkpoints.latest(self.ckpt_dir)
            return None if found is None else self.ckpt_dir / found["tag"]  # its identity: claim() checked it
        path = Path(self.resume)
        if not (path / checkpoints.MARKER).is_file():
            raise TrainingError(f"--resume {path}: not a complete checkpoint (no {checkpoints.MARKER})")
        check_same(checkpoints.marker(path).get("identity"), self.identity, str(path), "the checkpoint",
                   f"Start this config from its weights with --init-from {path} instead.")
        return path

    def load(self, tag_dir: Path) -> None:
        """Continue from ``tag_dir``: weights, optimizer, progress, loss scale and RNG streams,
        every file checked against the marker's hashes and read with weights_only=True."""
        from mma_dfer.models.checkpoints import safe_load

        marker = checkpoints.verify(tag_dir)
        if checkpoints.world_size(marker) != self.env.world_size:
            return self.load_portable(tag_dir, checkpoints.world_size(marker))
        # strict=False below: the frozen encoder weights are not in the checkpoint (see
        # checkpointing.save); every trainable one must be, which is checked, not assumed.
        saved = checkpoints.saved_module(tag_dir).keys()
        missing = [n for n, p in self.engine.module.named_parameters() if p.requires_grad and n not in saved]
        if missing:
            raise TrainingError(f"checkpoint {tag_dir} lacks trainable weights {missing[:5]}")
        checkpointing.use_safe_loading(self.engine)
        _, client = self.engine.load_checkpoint(str(tag_dir.parent), tag=tag_dir.name,
                                                load_lr_scheduler_states=False, load_module_strict=False)
        if client is None:
            raise TrainingError(f"cannot load checkpoint {tag_dir}")
        self.state = {k: client[k] for k in self.state}
        if self.grad_scaler() is not None and "grad_scaler" in client:
            self.grad_scaler().load_state_dict(client["grad_scaler"])
        rng_file = tag_dir / f"rng_rank{self.env.rank}.pt"
        if rng_file.is_file():
            set_rng_state(safe_load(rng_file), str(rng_file))
        log.info("resumed from %s (epoch %d, step %d of the epoch)", tag_dir, self.state["epoch"],
                 self.state["step_in_epoch"])

    def load_portable(self, tag_dir: Path, saved_world: int) -> None:
        """Continue from ``tag_dir`` written by ``saved_world`` ranks: the rank-independent state
        (weights, Adam moments and step, loss scale, progress); each rank's RNG file where this
        rank had one (drop-path of the other ranks starts from the seed)."""
        from mma_dfer.models.checkpoints import safe_load

        progress = portable.load(self.engine, self.optimizer, portable.read(tag_dir), str(tag_dir))
        self.state = {k: progress[k] for k in self.state}
        if self.grad_scaler() is not None and progress.get("grad_scaler"):
            self.grad_scaler().load_state_dict(progress["grad_scaler"])
        rng_file = tag_dir / f"rng_rank{self.env.rank}.pt"
        if rng_file.is_file():
            set_rng_state(safe_load(rng_file), str(rng_file))
        log.info("resumed from %s (epoch %d, step %d of the epoch) on %d ranks; it was written by %d",
                 tag_dir, self.state["epoch"], self.state["step_in_epoch"], self.env.world_size, saved_world)

    # training ------------------------------------------------------------------------------
    def frames(self, batch) -> torch.Tensor:
        """The batch's frames, augmented on the device when the loader left that to us."""
        if "aug" not in batch:
            return batch["video"]
        from mma_dfer.data import gpu_augment

        video = batch["video"].to(self.device, non_blocking=True)
        return gpu_augment.apply(video, batch["aug"], self.cfg.data.resolution, self.cfg.data.normalize)

    def forward(self, video, audio):
        return self.engine(video.to(self.device, self.dtype), audio.to(self.device, self.dtype))

    def train_epoch(self, stop: StopFlag) -> None:
        cfg, st, env = self.cfg, self.state, self.env
        epoch = st["epoch"]
        self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, st["step_in_epoch"])
        steps = self.sampler.steps_per_epoch
        if cfg.train.max_steps_per_epoch:
            steps = min(steps, cfg.train.max_steps_per_epoch)
        self.engine.train()
        bar = self.progress_bar(steps)
        window = LossWindow(cfg.train.log_every * self.sampler.accum, self.device)
        skipped, t0, seen = [], time.time(), 0
        mark = (t0, 0)  # time and clips at the last log line: its rate covers the steps since
        fault_at, fault_signal = fault_hook()
        for batch in self.loader():
            if st["step_in_epoch"] >= steps:
                break
            lr = cosine_lr(cfg, epoch, st["step_in_epoch"], steps)
            set_lr(self.optimizer, lr)
            skipped += batch["skipped"]
            boundary = self.engine.is_gradient_accumulation_boundary()
            if "video" in batch:
                window.add(self.micro_step(batch), st["step_in_epoch"] + 1)
                seen += len(batch["label"])
            else:  # every clip of this micro-batch was skipped: a forward and backward that count for
                # nothing keep the ranks in step (ZeRO-3 gathers weights in every forward and backward)
                self.engine.backward(self.forward(*placeholder_inputs(cfg.data)).float().sum() * 0)
            self.engine.step()
            if not boundary:
                continue
            st["step_in_epoch"] += 1
            st["global_step"] += 1
            if env.is_main and fault_at and st["global_step"] == fault_at:
                os.kill(os.getpid(), fault_signal)
            if bar is not None:
                bar.update(1)
            # The device is read (and the ranks agree) every log_every steps, at the epoch's end,
            # and at once on a signal when there is one rank: no host sync in between.
            due = st["global_step"] % cfg.train.log_every == 0 or st["step_in_epoch"] == steps
            if not (due or (env.world_size == 1 and stop.raised is not None)):
                continue
            losses = window.drain()
            stop_any = self.check(losses, stop, epoch)
            if due:
                self.log_train(losses, seen - mark[1], time.time() - mark[0], lr, bar)
                mark = (time.time(), seen)
            if stop_any:
                st["train_time"] += time.time() - t0
                st["samples"] += int(all_mean(seen, self.device) * env.world_size)
                self.save(f"step{st['global_step']:07d}")
                raise Preempted(f"stopped by a signal at epoch {epoch + 1}, step {st['step_in_epoch']}",
                                stop.raised or signal.SIGUSR1)
        if bar is not None:
            bar.close()
        st["train_time"] += time.time() - t0
        st["samples"] += int(all_mean(seen, self.device) * env.world_size)
        if skipped:
            log.warning("epoch %d: skipped %d bad training clips (data.on_error=skip): %s", epoch + 1, len(skipped),
                        [self.train_set.samples[i].clip_id for i, _ in skipped])
        st["epoch"] += 1
        st["step_in_epoch"] = 0

    def micro_step(self, batch) -> torch.Tensor:
        """Forward and backward of one micro-batch; returns the loss (on the device, not read)."""
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        logits = self.forward(self.frames(batch), batch["audio"])
        loss = F.cross_entropy(logits.float(), batch["label"].to(self.device, non_blocking=True),
                               label_smoothing=self.cfg.train.label_smoothing)
        self.engine.backward(loss)
        return loss

    def check(self, losses: list[tuple[int, float]], stop: StopFlag, epoch: int) -> bool:
        """Stop on non-finite losses (after MAX_BAD_STEPS in a row with fp16 loss scaling, which
        skips such steps; at once otherwise) and agree with the other ranks on a signal. Returns
        whether to stop for a signal."""
        bad = sorted({step for step, loss in losses if not math.isfinite(loss)})
        steps = sorted({step for step, _ in losses})
        for step in steps:
            self.bad_run = self.bad_run + 1 if step in bad else 0
            self.worst_run = max(self.worst_run, self.bad_run)
        stop_any, bad_any, worst = all_max([float(stop.raised is not None), float(bool(bad)), float(self.worst_run)],
                                           self.device)
        if bad_any and (not self.loss_scaling or worst > MAX_BAD_STEPS):
            where = f"step {bad[0]}" if bad else "another rank"
            raise TrainingError(f"non-finite loss at epoch {epoch + 1}, {where} ({int(max(worst, 1))} in a row); "
                                "the last checkpoint is left as it was")
        return bool(stop_any)

    def progress_bar(self, steps: int):
        """A tqdm bar on a terminal (rank 0); in batch logs, log_train prints a line instead."""
        if not (self.env.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        st = self.state
        return tqdm(total=steps, initial=min(st["step_in_epoch"], steps), dynamic_ncols=True, leave=False,
                    desc=f"epoch {st['epoch'] + 1}/{self.cfg.train.epochs}")

    def log_train(self, losses, seen, elapsed, lr, bar=None) -> None:
        """Scalars of the steps since the last log line (loss, clips/s) and the state now."""
        finite = [v for _, v in losses if math.isfinite(v)]
        values = {"loss": all_mean(float(np.mean(finite)) if finite else 0.0, self.device),
                  "lr": lr, "samples_per_s": all_mean(seen, self.device) * self.env.world_size / max(elapsed, 1e-9),
                  "memory_mb": peak_memory_mb(self.device)}
        norm = self.engine.get_global_grad_norm()
        if norm is not None:
            values["grad_norm"] = float(norm)
        scale = self.loss_scale()
        if scale is not None:
            values["loss_scale"] = scale
        self.logger.scalars(self.state["global_step"], values, prefix="train/")
        if bar is not None:
            bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
        elif self.env.is_main:
            log.info("epoch %d step %d/%d: %s", self.state["epoch"] + 1, self.state["step_in_epoch"],
                     self.sampler.steps_per_epoch, " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def loss_scale(self) -> Optional[float]:
        """The current fp16 loss scale: DeepSpeed's fp16 optimizer's, or autocast's GradScaler's."""
        if self.engine.fp16_enabled():
            scale = getattr(self.optimizer, "cur_scale", None) or getattr(self.optimizer, "loss_scale", None)
            return None if scale is None else float(scale)
        scaler = self.grad_scaler()
        return float(scaler.get_scale()) if scaler is not None else None

    def grad_scaler(self):
        """The GradScaler DeepSpeed made for fp16 autocast (ZeRO-0 keeps it on the engine, ZeRO-1/2
        on its optimizer), or None. DeepSpeed does not checkpoint it: the trainer does."""
        return getattr(self.engine, "torch_autocast_z0_gradscaler", None) or \
            getattr(self.optimizer, "torch_autocast_gradscaler", None)

    def evaluate(self, clips: int) -> dict:
        cfg = self.cfg
        ds = ClipDataset(self.test_samples, cfg.data, train=False, clips=clips, seed=cfg.train.seed)
        self.engine.eval()
        with eager():
            return evaluate(self.forward, ds, cfg.eval.batch_size, cfg.data.num_workers, self.device,
                            cfg.model.num_classes, self.dtype, self.env.rank, self.env.world_size,
                            progress=self.env.is_main and sys.stderr.isatty())

    def log_test(self, metrics: dict, confusion) -> None:
        """Test-fold metrics at this step under ``test/`` (one curve over the epochs when the
        config validates every epoch, ending with the final test) and the labelled 1-clip
        confusion figure (an image per evaluation: TensorBoard's slider steps through them)."""
        st = self.state
        self.logger.scalars(st["global_step"], metrics, prefix="test/", epoch=st["epoch"])
        if self.env.is_main:
            from mma_dfer.figures import confusion_title

            d = self.cfg.data
            title = confusion_title(d.dataset, d.fold, st["epoch"], metrics["uar"], metrics["war"])
            self.logger.confusion(st["global_step"], confusion, class_names(d), title)

    def run(self) -> Optional[dict]:
        """The whole job. Before anything is written the run folder is checked to hold nothing
        of another config (a named error) and this config's finished result (then returned)."""
        self.prepare()
        done = claim(self.run_dir, self.identity, self.resume)
        if done is not None:
            log.info("%s: already finished with this config (%s): UAR %.2f WAR %.2f; skipping", self.run_dir,
                     self.fingerprint, done["uar"], done["war"])
            return done
        self.resume_from = self.find_resume()
        self.check_world_size(self.resume_from)
        self.lease = None
        try:
            return self.train()
        finally:
            if self.lease is not None:
                self.lease.release()

    def train(self) -> dict:
        """Set-up (the lease first, then the engine), the epochs and the final evaluation."""
        cfg, env = self.cfg, self.env
        self.setup()
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            write_identity(self.run_dir, self.identity, self.fingerprint)
        if self.resume_from is not None:
            self.load(self.resume_from)
        if env.is_main:
            log.info("run %s (run fingerprint %s): %d train clips, %d test clips, %d steps/epoch, world %d (%s)%s",
                     self.run_dir, self.fingerprint, len(self.train_set), len(self.test_samples),
                     self.sampler.steps_per_epoch, env.world_size, env.source,
                     ", resumed" if self.resume_from is not None else "")
            self.logger.text("config", json.dumps(cfg.to_dict(), indent=2))
        with StopFlag() as stop:
            while self.state["epoch"] < cfg.train.epochs:
                self.train_epoch(stop)
                self.save(f"epoch{self.state['epoch']:03d}")
                if cfg.train.validate_every and self.state["epoch"] % cfg.train.validate_every == 0 \
                        and self.state["epoch"] < cfg.train.epochs:  # the last epoch: the final test below
                    m = self.evaluate(1)
                    self.log_test({"uar": m["uar"], "war": m["war"]}, m["confusion"])
        results = {c: self.evaluate(c) for c in sorted(cfg.eval.clips)}
        return self.finish(results)

    def origin(self) -> dict:
        """Where the run's trainable weights started: the seeded init, or --init-from's checkpoint."""
        if self.init is None:
            return {"kind": "scratch"}
        return {"kind": "init-from", **{k: v for k, v in self.init.items() if k != "weights"}}

    def finish(self, results: dict) -> dict:
        cfg, st = self.cfg, self.state
        result = make_result(
            cfg, results, st["epoch"], train_time_s=st["train_time"],
            samples_per_s=st["samples"] / max(st["train_time"], 1e-9),
            peak_memory_mb=all_max([peak_memory_mb(self.device)], self.device)[0],
            world_size=self.env.world_size, precision=self.identity["deepspeed.precision"],
            trainable_params=sum(getattr(p, "ds_numel", p.numel())  # ZeRO-3: the unpartitioned size
                                 for p in self.engine.module.trainable_parameters()),
            config_fingerprint=self.fingerprint, run_identity=self.identity, origin=self.origin())
        if self.env.is_main:
            atomic_write_json(self.run_dir / "result.json", result)
            metrics = {k: result[k] for k in ("uar", "war", "uar_2clip", "war_2clip")}
            self.log_test(metrics, result["confusion_matrix"])
            self.logger.hparams({**hparam_values(cfg.to_dict()), "config_fingerprint": self.fingerprint},
                                [f"test/{k}" for k, v in metrics.items() if v is not None])
            self.logger.close()
            log.info("fold %d res %d: UAR %.2f WAR %.2f (2-clip %s / %s); wrote %s", cfg.data.fold,
                     cfg.data.resolution, result["uar"], result["war"], _fmt(result["uar_2clip"]),
                     _fmt(result["war_2clip"]), self.run_dir / "result.json")
        return result


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def hparam_values(config: dict) -> dict:
    """The config as TensorBoard hparams: dotted keys, values a number, string or bool."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in flatten(config).items() if v is not None}


def load_init(path: str) -> dict:
    """--init-from: the trainable weights of another run's checkpoint (a run folder or a tag
    folder), checked against its marker, with where they came from (the run's origin)."""
    from mma_dfer.models.checkpoints import CheckpointError

    try:
        tag_dir = checkpoints.resolve(Path(path))
    except FileNotFoundError as e:
        raise CheckpointError(f"--init-from: {e}") from None
    marker = checkpoints.verify(tag_dir)
    weights = checkpoints.saved_module(tag_dir)
    return {"checkpoint": str(tag_dir), "config_fingerprint": marker.get("config_fingerprint"),
            "epoch": marker.get("epoch"), "weights_sha256": checkpoints.weights_digest(weights), "weights": weights}


def planned_identity(cfg: Config, ds_config: str | Path, world: int) -> tuple[dict, str]:
    """(identity, fingerprint) of a run of ``cfg`` on ``world`` ranks, as :meth:`Trainer.prepare`
    makes it: for checking a run folder before a run is submitted."""
    ds = deepspeed_config(ds_config, cfg, world)
    identity = run_identity(cfg, ds, read_split(cfg.data, "train"), read_split(cfg.data, "test"))
    return identity, fingerprint(identity)


def run(cfg: Config, ds_config: str | Path, resume: str = "auto", init_from: Optional[str] = None) -> Optional[dict]:
    return Trainer(cfg, ds_config, resume, init_from).run()
