"""What a run tells: the train/ scalars and log lines every ``train.log_every`` steps, the test/
scalars and confusion figures, the run's first line, and at the end result.json, the HPARAMS
session and the last line. Rank 0 writes (:class:`RunLogger` is a no-op elsewhere); every rank
takes part in the means over ranks."""
from __future__ import annotations

import json
import logging
import math
import resource
import sys
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from mma_dfer.datasets import class_names
from mma_dfer.figures import confusion_title
from mma_dfer.runs.identity import flatten
from mma_dfer.runs.results import make_result
from mma_dfer.training.distributed import DistEnv, all_max, all_mean
from mma_dfer.training.logging import RunLogger
from mma_dfer.training.loss_scale import LossScale
from mma_dfer.training.plan import RunPlan
from mma_dfer.training.state import TrainState
from mma_dfer.utils import atomic_write_json

log = logging.getLogger("mma_dfer.train")


class Metrics:
    def __init__(self, plan: RunPlan, env: DistEnv, engine, scale: LossScale, steps_per_epoch: int):
        self.plan, self.cfg, self.env, self.engine, self.scale = plan, plan.cfg, env, engine, scale
        self.device, self.steps_per_epoch = engine.device, steps_per_epoch
        self.logger = RunLogger(plan.cfg.run_dir, env.is_main)

    def start(self, train_clips: int, resumed: bool) -> None:
        """The run's first line (its folder, fingerprint and sizes) and the config in TensorBoard."""
        if self.env.is_main:
            env = self.env
            log.info("run %s (run fingerprint %s): %d train clips, %d test clips, %d steps/epoch, world %d (%s)%s",
                     self.cfg.run_dir, self.plan.fingerprint, train_clips, len(self.plan.test_samples),
                     self.steps_per_epoch, env.world_size, env.source, ", resumed" if resumed else "")
            self.logger.text("config", json.dumps(self.cfg.to_dict(), indent=2))

    def progress_bar(self, state: TrainState, steps: int):
        """A tqdm bar on a terminal (rank 0); in batch logs, :meth:`train` prints a line instead."""
        if not (self.env.is_main and sys.stderr.isatty()):
            return None
        return tqdm(total=steps, initial=min(state.step_in_epoch, steps), dynamic_ncols=True, leave=False,
                    desc=f"epoch {state.epoch + 1}/{self.cfg.train.epochs}")

    def train(self, state: TrainState, losses, seen: int, elapsed: float, lr: float, bar=None) -> None:
        """Scalars of the steps since the last log line (loss, clips/s) and the state now."""
        finite = [v for _, v in losses if math.isfinite(v)]
        values = {"loss": all_mean(float(np.mean(finite)) if finite else 0.0, self.device),
                  "lr": lr, "samples_per_s": all_mean(seen, self.device) * self.env.world_size / max(elapsed, 1e-9),
                  "memory_mb": peak_memory_mb(self.device)}
        norm = self.engine.get_global_grad_norm()
        if norm is not None:
            values["grad_norm"] = float(norm)
        scale = self.scale.value()
        if scale is not None:
            values["loss_scale"] = scale
        self.logger.scalars(state.global_step, values, prefix="train/")
        if bar is not None:
            bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
        elif self.env.is_main:
            log.info("epoch %d step %d/%d: %s", state.epoch + 1, state.step_in_epoch, self.steps_per_epoch,
                     " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def test(self, state: TrainState, metrics: dict, confusion) -> None:
        """Test-fold metrics at this step under ``test/`` (one curve over the epochs when the
        config validates every epoch, ending with the final test) and the labelled 1-clip
        confusion figure (an image per evaluation: TensorBoard's slider steps through them)."""
        self.logger.scalars(state.global_step, metrics, prefix="test/", epoch=state.epoch)
        if self.env.is_main:
            d = self.cfg.data
            title = confusion_title(d.dataset, d.fold, state.epoch, metrics["uar"], metrics["war"])
            self.logger.confusion(state.global_step, confusion, class_names(d), title)

    def finish(self, results: dict, state: TrainState, origin: dict) -> dict:
        """result.json from the final evaluations (``results``: clips -> inference.evaluate's
        record), its metrics in TensorBoard with the HPARAMS session, and the last line."""
        cfg, plan = self.cfg, self.plan
        result = make_result(
            cfg, results, state.epoch, train_time_s=state.train_time,
            samples_per_s=state.samples / max(state.train_time, 1e-9),
            peak_memory_mb=all_max([peak_memory_mb(self.device)], self.device)[0],
            world_size=self.env.world_size, precision=plan.identity["deepspeed.precision"],
            trainable_params=sum(getattr(p, "ds_numel", p.numel())  # ZeRO-3: the unpartitioned size
                                 for p in self.engine.module.trainable_parameters()),
            config_fingerprint=plan.fingerprint, run_identity=plan.identity, origin=origin)
        if self.env.is_main:
            atomic_write_json(cfg.run_dir / "result.json", result)
            metrics = {k: result[k] for k in ("uar", "war", "uar_2clip", "war_2clip")}
            self.test(state, metrics, result["confusion_matrix"])
            self.logger.hparams({**hparam_values(cfg.to_dict()), "config_fingerprint": plan.fingerprint},
                                [f"test/{k}" for k, v in metrics.items() if v is not None])
            self.logger.close()
            log.info("fold %d res %d: UAR %.2f WAR %.2f (2-clip %s / %s); wrote %s", cfg.data.fold,
                     cfg.data.resolution, result["uar"], result["war"], _fmt(result["uar_2clip"]),
                     _fmt(result["war_2clip"]), cfg.run_dir / "result.json")
        return result


def peak_memory_mb(device) -> float:
    """The device's peak allocation (a GPU), or the process's peak resident size (the CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hparam_values(config: dict) -> dict:
    """The config as TensorBoard hparams: dotted keys, values a number, string or bool."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in flatten(config).items() if v is not None}


def _fmt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"
