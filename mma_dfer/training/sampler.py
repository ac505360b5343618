"""Batches that are the same global batches whatever the number of ranks."""
from __future__ import annotations

import numpy as np


class GlobalBatchSampler:
    """Each epoch: a permutation from (seed, epoch); global batches of ``global_batch`` clips
    (the last partial one dropped, as ``drop_last``); global batch ``s`` is cut into
    ``accum`` x ``world`` micro-batches, and this rank takes micro-batches ``a * world + rank``
    for a = 0..accum-1. So 1 rank x 8 and 2 ranks x 4 see the same 8 clips per optimizer step,
    and ``start_step`` resumes mid-epoch without loading the skipped batches.
    """

    def __init__(self, n: int, global_batch: int, micro: int, rank: int, world: int, seed: int):
        if global_batch % (micro * world):
            raise ValueError(f"global batch {global_batch} is not a multiple of micro-batch {micro} x world {world}")
        self.n, self.global_batch, self.micro, self.rank, self.world, self.seed = n, global_batch, micro, rank, world, seed
        self.accum = global_batch // (micro * world)
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.global_batch

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for s in range(self.start_step, self.steps_per_epoch):
            batch = perm[s * self.global_batch:(s + 1) * self.global_batch]
            for a in range(self.accum):
                k = a * self.world + self.rank
                yield batch[k * self.micro:(k + 1) * self.micro].tolist()
