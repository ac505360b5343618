"""Where a run is: the one record of its progress, saved whole in every checkpoint and restored
whole by a resume (the epoch loop, the sampler's position, the LR schedule and result.json's
throughput all follow from it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class TrainState:
    """Progress of a run. Stored flat under these names in DeepSpeed's client state and in
    ``portable_state.pt``'s ``progress``, the names the raw dict it replaces had, so that a
    checkpoint written before this class existed resumes (and one written after reads as before)."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # optimizer steps taken in the current epoch
    global_step: int = 0  # optimizer steps taken in all
    train_time: float = 0.0  # seconds spent in training epochs (not in evaluation or saving)
    samples: int = 0  # training clips seen by all ranks

    @classmethod
    def from_saved(cls, saved: dict) -> "TrainState":
        """The state a checkpoint's client state (or portable progress) records."""
        return cls(**{f.name: saved[f.name] for f in fields(cls)})

    def saved(self) -> dict:
        """What a checkpoint records: every field under its own name."""
        return asdict(self)

    def account(self, seconds: float, samples: int) -> None:
        """Add a stretch of training (an epoch, or its part before a stop)."""
        self.train_time += seconds
        self.samples += samples

    def step(self) -> None:
        self.step_in_epoch += 1
        self.global_step += 1

    def end_epoch(self) -> None:
        self.epoch += 1
        self.step_in_epoch = 0
