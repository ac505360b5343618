"""``python -m mma_dfer <command>`` (also the ``mma-dfer`` console script)."""
from __future__ import annotations

import argparse
import sys


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (default: the paper's defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set model.fusion_dim=64 (repeatable)")


def cmd_params(args) -> int:
    """Print trainable/frozen parameter counts per part; last line ``trainable: <N>``."""
    import torch

    from mma_dfer.config import load_config
    from mma_dfer.models import build_model
    from mma_dfer.models.summary import format_param_table

    cfg = load_config(args.config, args.overrides)
    model = build_model(cfg, load_pretrained=args.load_pretrained)
    if args.forward:
        d = cfg.data
        model.train()
        video = torch.rand(1, d.num_frames, 3, d.resolution, d.resolution)
        audio = torch.randn(1, 1, d.audio_frames, d.mel_bins)
        logits = model(video, audio)
        logits.sum().backward()
        print(f"forward/backward OK: logits {tuple(logits.shape)}, "
              f"{sum(p.grad is not None for p in model.trainable_parameters())} trainable tensors got gradients")
    print(format_param_table(model))
    return 0


def main(argv=None) -> int:
    from mma_dfer.config import ConfigError
    from mma_dfer.data.annotations import AnnotationError
    from mma_dfer.identity import IdentityError
    from mma_dfer.models.checkpoints import CheckpointError

    parser = argparse.ArgumentParser(prog="mma-dfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("params", help="parameter counts per part of the model")
    _config_args(p)
    p.add_argument("--forward", action="store_true", help="also run one forward/backward on random input")
    p.add_argument("--load-pretrained", action="store_true",
                   help="load model.video_checkpoint / model.audio_checkpoint (default: random weights)")
    p.set_defaults(func=cmd_params)

    from mma_dfer import commands  # data, demo and toolkit commands register themselves

    commands.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, AnnotationError, IdentityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
