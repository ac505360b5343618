"""What a run is, known before anything heavy is imported or built: everything its run folder is
checked against (a bad DeepSpeed JSON, data root or --init-from fails here, before a process
group, a lease or a model exists)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mma_dfer.config import Config
from mma_dfer.data.annotations import read_split
from mma_dfer.runs.identity import fingerprint, run_identity
from mma_dfer.training.ds_config import deepspeed_config
from mma_dfer.training.init_from import InitFrom


@dataclass
class RunPlan:
    cfg: Config
    ds_config_path: str | Path  # the DeepSpeed JSON as given (named in errors)
    ds_cfg: dict  # that JSON merged with the config's batch keys
    train_samples: list  # the fold's lists
    test_samples: list
    init: Optional[InitFrom]  # --init-from's weights, or None
    identity: dict  # runs.identity's record of everything that changes what the run computes
    fingerprint: str

    @classmethod
    def make(cls, cfg: Config, ds_config_path: str | Path, world_size: int,
             init_from: Optional[str] = None) -> "RunPlan":
        ds_cfg = deepspeed_config(ds_config_path, cfg, world_size)
        train, test = read_split(cfg.data, "train"), read_split(cfg.data, "test")
        init = InitFrom.read(init_from) if init_from else None
        identity = run_identity(cfg, ds_cfg, train, test, init.weights_sha256 if init else None)
        return cls(cfg, ds_config_path, ds_cfg, train, test, init, identity, fingerprint(identity))
