"""One fold at one resolution, trained the paper's way through the DeepSpeed engine.

``run(cfg, ds_config, resume, init_from)`` is the whole job: the run's plan (its identity) and
the run folder's check, which checkpoint to continue from, the process group and the folder's
lease, then a :class:`Trainer` built from its parts (ARCHITECTURE.md, "The trainer") runs the
epochs (cosine LR stepped per epoch, a checkpoint every epoch and on SIGUSR1/SIGTERM/Ctrl-C), the
final 1-clip and 2-clip evaluation and ``result.json``. Exit paths: normal completion;
:class:`Preempted` after a signal (checkpoint written, the caller requeues); an exception
(nothing overwritten).
"""
from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from mma_dfer import faults
from mma_dfer.config import Config, save_config
from mma_dfer.data.dataset import ClipDataset, collate
from mma_dfer.models import build_model
from mma_dfer.precision import precision_name
from mma_dfer.runs.folder import claim, write_identity
from mma_dfer.training import TrainingError, session
from mma_dfer.training.checkpointing import CheckpointManager
from mma_dfer.training.distributed import DistEnv, all_mean, detect
from mma_dfer.training.engine import build_engine
from mma_dfer.training.evaluator import Evaluator
from mma_dfer.training.loss_scale import LossScale
from mma_dfer.training.loss_window import LossWindow
from mma_dfer.training.metrics import Metrics
from mma_dfer.training.nonfinite import NonFiniteGuard
from mma_dfer.training.plan import RunPlan
from mma_dfer.training.sampler import GlobalBatchSampler
from mma_dfer.training.schedule import Schedule
from mma_dfer.training.signals import Preempted, StopFlag
from mma_dfer.training.state import TrainState
from mma_dfer.training.step import Step
from mma_dfer.utils import seed_everything

log = logging.getLogger("mma_dfer.train")


class Trainer:
    """The epochs of one run. Built (every rank) inside the process group and the run folder's
    lease, from the run's ``plan``, its ``checkpoints``, its training clips and the checkpoint
    to continue from (None: start from the seeded or --init-from weights)."""

    def __init__(self, plan: RunPlan, env: DistEnv, checkpoints: CheckpointManager, train_set: ClipDataset,
                 lease, resume_from: Optional[Path]):
        cfg, t = plan.cfg, plan.cfg.train
        self.cfg, self.plan, self.env, self.checkpoints = cfg, plan, env, checkpoints
        self.train_set, self.lease, self.resume_from = train_set, lease, resume_from
        seed_everything(t.seed)  # same initial weights on every rank
        model = build_model(cfg)
        if plan.init is not None and resume_from is None:  # before DeepSpeed copies the weights
            plan.init.apply(model)
        self.built = build_engine(model, cfg, plan.ds_cfg)
        self.engine, self.optimizer, self.device = self.built.engine, self.built.optimizer, self.built.engine.device
        if precision_name(self.engine) != plan.identity["deepspeed.precision"]:
            raise TrainingError(f"{plan.ds_config_path}: DeepSpeed trains in {precision_name(self.engine)}, but the "
                                f"run identity reads {plan.identity['deepspeed.precision']} off the JSON")
        self.guard = NonFiniteGuard(self.built.loss_scaling, self.device)
        micro = plan.ds_cfg["train_micro_batch_size_per_gpu"]
        self.sampler = GlobalBatchSampler(len(train_set), t.batch_size, micro, env.rank, env.world_size, t.seed)
        if self.sampler.steps_per_epoch == 0:
            raise TrainingError(f"fold {cfg.data.fold} has {len(train_set)} training clips, fewer than one "
                                f"batch of {t.batch_size}")
        self.schedule = Schedule(cfg, self.sampler.steps_per_epoch)
        self.scale = LossScale(self.engine, self.optimizer, self.built.loss_scaling)
        self.step = Step(self.built, cfg)
        self.evaluate = Evaluator(cfg, plan.test_samples, env, self.step)
        self.metrics = Metrics(plan, env, self.engine, self.scale, self.sampler.steps_per_epoch)
        self.state = TrainState()
        seed_everything(t.seed + 1000 * env.rank)  # per-rank stream for drop-path

    def train(self) -> dict:
        """The run folder's config and identity, the checkpoint continued from, the epochs (each
        checkpointed, and validated every ``train.validate_every``), the final evaluation."""
        cfg = self.cfg
        if self.env.is_main:
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, cfg.run_dir / "config.yaml")
            write_identity(cfg.run_dir, self.plan.identity, self.plan.fingerprint)
        if self.resume_from is not None:
            self.state = self.checkpoints.load(self.resume_from, self.built, self.scale)
        self.metrics.start(len(self.train_set), resumed=self.resume_from is not None)
        with StopFlag() as stop:
            while self.state.epoch < cfg.train.epochs:
                self.train_epoch(stop)
                self.save(f"epoch{self.state.epoch:03d}")
                every, epoch = cfg.train.validate_every, self.state.epoch
                if every and epoch % every == 0 and epoch < cfg.train.epochs:  # the last epoch: the final test
                    m = self.evaluate(1)
                    self.metrics.test(self.state, {"uar": m["uar"], "war": m["war"]}, m["confusion"])
        results = {c: self.evaluate(c) for c in sorted(cfg.eval.clips)}
        return self.metrics.finish(results, self.state, self.checkpoints.origin())

    def train_epoch(self, stop: StopFlag) -> None:
        """The rest of the current epoch; on a signal, a checkpoint at the step and :class:`Preempted`."""
        st, env, steps = self.state, self.env, self.schedule.steps
        epoch = st.epoch
        self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, st.step_in_epoch)
        self.engine.train()
        bar = self.metrics.progress_bar(st, steps)
        window = LossWindow(self.cfg.train.log_every * self.sampler.accum, self.device)
        skipped, t0, seen = [], time.time(), 0
        mark = (t0, 0)  # time and clips at the last log line: its rate covers the steps since
        for batch in train_loader(self.train_set, self.sampler, self.cfg.data.num_workers):
            if st.step_in_epoch >= steps:
                break
            lr = self.schedule.apply(self.optimizer, epoch, st.step_in_epoch)
            skipped += batch["skipped"]
            boundary = self.engine.is_gradient_accumulation_boundary()
            if "video" in batch:
                window.add(self.step.micro_step(batch), st.step_in_epoch + 1)
                seen += len(batch["label"])
            else:
                self.step.empty_step()
            self.engine.step()
            if not boundary:
                continue
            st.step()
            faults.point("train.after_step", step=st.global_step, rank=env.rank)
            if bar is not None:
                bar.update(1)
            # The device is read (and the ranks agree) every log_every steps, at the epoch's end,
            # and at once on a signal when there is one rank: no host sync in between.
            due = st.global_step % self.cfg.train.log_every == 0 or st.step_in_epoch == steps
            if not (due or (env.world_size == 1 and stop.raised is not None)):
                continue
            losses = window.drain()
            stop_any = self.guard.check(losses, stop.raised is not None, epoch)
            if due:
                self.metrics.train(st, losses, seen - mark[1], time.time() - mark[0], lr, bar)
                mark = (time.time(), seen)
            if stop_any:
                self.stop_here(time.time() - t0, seen, stop)
        if bar is not None:
            bar.close()
        st.account(time.time() - t0, self.seen_by_all(seen))
        if skipped:
            log.warning("epoch %d: skipped %d bad training clips (data.on_error=skip): %s", epoch + 1, len(skipped),
                        [self.train_set.samples[i].clip_id for i, _ in skipped])
        st.end_epoch()

    def stop_here(self, elapsed: float, seen: int, stop: StopFlag) -> None:
        """A signal: a checkpoint of this step (with the epoch's time and clips so far), then stop."""
        self.state.account(elapsed, self.seen_by_all(seen))
        self.save(f"step{self.state.global_step:07d}")
        raise Preempted(f"stopped by a signal at epoch {self.state.epoch + 1}, step {self.state.step_in_epoch}",
                        stop.raised or signal.SIGUSR1)

    def seen_by_all(self, seen: int) -> int:
        """Clips this rank saw -> clips every rank saw (their mean times the ranks)."""
        return int(all_mean(seen, self.device) * self.env.world_size)

    def save(self, tag: str) -> None:
        self.checkpoints.save(tag, self.built, self.state, self.scale, self.lease)


def train_loader(dataset, batch_sampler, workers: int) -> DataLoader:
    """The training loader: ``workers`` processes, 4 batches ahead each, pinned batches on a GPU
    (their copy to the device then overlaps the step). An explicit generator keeps the loader
    from drawing on the global RNG, which the model's drop-path uses: a resumed run then
    continues the same random stream."""
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate,
                      generator=torch.Generator().manual_seed(0), persistent_workers=False,
                      pin_memory=torch.cuda.is_available(), prefetch_factor=4 if workers > 0 else None)


def planned_identity(cfg: Config, ds_config: str | Path, world: int) -> tuple[dict, str]:
    """(identity, fingerprint) of a run of ``cfg`` on ``world`` ranks, as :func:`run` plans it:
    for checking a run folder before a run is submitted."""
    plan = RunPlan.make(cfg, ds_config, world)
    return plan.identity, plan.fingerprint


def run(cfg: Config, ds_config: str | Path, resume: str = "auto", init_from: Optional[str] = None) -> Optional[dict]:
    """The whole job. Before anything is written the run folder is checked to hold nothing of
    another config (a named error) and this config's finished result (then returned); ``resume``:
    "auto", "never" or a checkpoint tag folder; ``init_from``: another run's weights to start from."""
    env = detect()
    env.export()
    logging.basicConfig(level=logging.INFO if env.is_main else logging.WARNING,
                        format=f"[rank{env.rank}] %(asctime)s %(levelname)s %(message)s")
    plan = RunPlan.make(cfg, ds_config, env.world_size, init_from)
    done = claim(cfg.run_dir, plan.identity, resume)
    if done is not None:
        log.info("%s: already finished with this config (%s): UAR %.2f WAR %.2f; skipping", cfg.run_dir,
                 plan.fingerprint, done["uar"], done["war"])
        return done
    checkpoints = CheckpointManager(plan, env)
    resume_from = checkpoints.find_resume(resume)
    checkpoints.check_world_size(resume_from)
    train_set = ClipDataset(plan.train_samples, cfg.data, train=True, seed=cfg.train.seed)
    with session.hold(cfg.run_dir, env, cfg.train.collective_timeout_s) as lease:
        return Trainer(plan, env, checkpoints, train_set, lease, resume_from).train()
