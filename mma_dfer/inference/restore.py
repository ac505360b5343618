"""Rebuild a trained model from one of this project's runs, without DeepSpeed."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from mma_dfer.config import Config, load_config
from mma_dfer.runs import checkpoints
from mma_dfer.safe_files import CheckpointError


def load_trained_model(path: str | Path, cfg: Optional[Config] = None):
    """(model in eval mode, config) from a run folder or checkpoint tag folder.

    The config is the run's own ``config.yaml`` unless given. The frozen encoders are rebuilt
    as the run built them (pretrained files, or the seeded random init); the checkpoint holds
    the trainable weights, and every one of them must be there."""
    from mma_dfer.utils import seed_everything
    from mma_dfer.models import build_model

    try:
        tag_dir = checkpoints.resolve(Path(path))
    except FileNotFoundError as e:
        raise CheckpointError(str(e)) from None
    if cfg is None:
        run_dir = tag_dir.parent.parent
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(f"{run_dir}/config.yaml not found; pass the config explicitly")
        cfg = load_config(run_dir / "config.yaml")
    checkpoints.verify(tag_dir)
    module = checkpoints.saved_module(tag_dir)
    seed_everything(cfg.train.seed)
    model = build_model(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = trainable - set(module), set(module) - set(model.state_dict())
    if missing or unexpected:
        raise CheckpointError(f"{tag_dir}: does not match the run's model; missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    model.load_state_dict({k: v.float() for k, v in module.items()}, strict=False)
    return model.eval(), cfg
