"""The test fold, evaluated with the model being trained (every ``train.validate_every`` epochs
and at the end, 1-clip and 2-clip), sharded over the ranks and gathered."""
from __future__ import annotations

import sys

from mma_dfer.config import Config
from mma_dfer.data.dataset import ClipDataset
from mma_dfer.inference.evaluate import evaluate
from mma_dfer.training.distributed import DistEnv
from mma_dfer.training.engine import eager
from mma_dfer.training.step import Step


class Evaluator:
    def __init__(self, cfg: Config, test_samples: list, env: DistEnv, step: Step):
        self.cfg, self.test_samples, self.env, self.step = cfg, test_samples, env, step

    def __call__(self, clips: int) -> dict:
        """Metrics of the test fold with ``clips`` clips a video (inference.evaluate's record);
        the engine is left in eval mode (each epoch sets train mode again)."""
        cfg, step = self.cfg, self.step
        ds = ClipDataset(self.test_samples, cfg.data, train=False, clips=clips, seed=cfg.train.seed)
        step.engine.eval()
        with eager():
            return evaluate(step.forward, ds, cfg.eval.batch_size, cfg.data.num_workers, step.device,
                            cfg.model.num_classes, step.dtype, self.env.rank, self.env.world_size,
                            progress=self.env.is_main and sys.stderr.isatty())
