"""A trained model without DeepSpeed: a run's checkpoint rebuilt (:func:`load_trained_model`),
or either kind of checkpoint, a run's or an authors' file, made ready for evaluation,
``predict`` and ``export`` (:func:`load_model`)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mma_dfer.config import Config, ConfigError, load_config
from mma_dfer.datasets import REGISTRY, paper_dataset
from mma_dfer.models import build_model, from_authors_checkpoint
from mma_dfer.runs import checkpoints
from mma_dfer.runs.identity import SHAPE_FIELDS, check_same, run_identity
from mma_dfer.safe_files import CheckpointError
from mma_dfer.utils import seed_everything


def load_trained_model(path: str | Path, cfg: Optional[Config] = None):
    """(model in eval mode, config) from a run folder or checkpoint tag folder.

    The config is the run's own ``config.yaml`` unless given. The frozen encoders are rebuilt
    as the run built them (pretrained files, or the seeded random init); the checkpoint holds
    the trainable weights, and every one of them must be there."""
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


@dataclass
class Loaded:
    """A checkpoint made ready for evaluation."""

    model: object
    cfg: object
    epoch: int
    kind: str  # "mma-dfer" or "authors"
    precision: str  # the precision it was trained in (result.json's names)
    identity: Optional[dict]  # the training run's identity (None for an authors' file)


def load_model(path: Path, cfg=None) -> Loaded:
    """Either kind of checkpoint. Without ``cfg``: a run's own ``config.yaml``, or for an
    authors' file its dataset's defaults (the dataset read off its class count). The config is
    adapted to an authors' model (its resolution and frame counts come from the checkpoint; its
    MAFW classes are mapped to this project's order)."""
    if path.is_file():
        return load_authors(path, cfg)
    try:
        tag_dir = checkpoints.resolve(path)
    except FileNotFoundError as e:
        raise CheckpointError(str(e)) from None
    marker = checkpoints.marker(tag_dir)
    identity = marker.get("identity")
    if cfg is not None:
        check_model_fields(identity, cfg, tag_dir)
    model, cfg = load_trained_model(tag_dir, cfg)
    precision = identity["deepspeed.precision"] if isinstance(identity, dict) else "float32"
    return Loaded(model, cfg, marker["epoch"], "mma-dfer", precision, identity)


def load_authors(path: Path, cfg=None) -> Loaded:
    """An authors' ``model.pth`` with ``cfg`` (default: its dataset's, read off its class count)."""
    model = from_authors_checkpoint(path, label_order="canonical")
    if cfg is None:
        dataset = paper_dataset(model.num_classes)
        if dataset is None:
            known = ", ".join(f"{d.title} ({len(d.classes)})" for d in REGISTRY.values() if d.paper)
            raise ConfigError(f"{path} has {model.num_classes} classes: none of the paper's datasets ({known}); "
                              "pass --config")
        cfg = load_config(None, [f"data.dataset={dataset}", f"data.resolution={model.image_size}"])
    if model.num_classes != cfg.model.num_classes:
        raise ConfigError(f"{path} has {model.num_classes} classes but data.dataset={cfg.data.dataset} has "
                          f"{cfg.model.num_classes}")
    if cfg.data.resolution != model.image_size:
        logging.warning("using the checkpoint's resolution %d (config: %d)", model.image_size, cfg.data.resolution)
    cfg.data.resolution, cfg.data.num_frames = model.image_size, model.num_frames
    cfg.data.audio_frames = model.audio_frames
    return Loaded(model, cfg, model.checkpoint_epoch, "authors", "float32", None)


def check_model_fields(identity: Optional[dict], cfg, where: Path) -> None:
    """``cfg`` must build the checkpoint's model: its model fields and input geometry (an
    IdentityError names each field that differs)."""
    now = run_identity(cfg, {}, [], [])
    shaping = [k for k in now if k.startswith("model.") or k in SHAPE_FIELDS]
    check_same(identity and {k: identity.get(k) for k in shaping}, {k: now[k] for k in shaping}, str(where),
               "the checkpoint", "Evaluate a run with its own config: no --config, or --config <run>/config.yaml.")
