"""The command line of ``launch/train.py`` and ``mma-dfer train``: parse, load the config, run,
map errors to exit codes. Also ``deepspeed --module mma_dfer.training.cli ...`` (an installed
package has no ``launch/`` folder)."""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="experiment YAML: a file, or a shipped config's name (dfew_160)")
    p.add_argument("--deepspeed_config", "--deepspeed-config", dest="deepspeed_config", default=None,
                   help="DeepSpeed JSON (ZeRO stage, precision): a file or a shipped name (zero2_bf16); default "
                        "zero0_bf16 on a GPU, cpu_fp32 on the CPU")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable), e.g. --set train.epochs=2")
    p.add_argument("--resume", default="auto",
                   help="auto (default): continue this config's run in its output_dir if there is one (a finished "
                        "one is skipped; another config's is an error); never: start fresh in a new or empty "
                        "output_dir; or a complete checkpoint tag folder of this config")
    p.add_argument("--init-from", "--init_from", dest="init_from", metavar="CKPT",
                   help="start from the trainable weights of another run (its folder or a checkpoint tag folder): "
                        "a new run with its own identity, which records this origin")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train", description="Train MMA-DFER on one fold (DeepSpeed).")
    add_arguments(p)
    return p


def run(args) -> int:
    import logging

    import torch

    from mma_dfer.config import ConfigError, load_config
    from mma_dfer.data.annotations import AnnotationError
    from mma_dfer.data.video import ClipError
    from mma_dfer.models.checkpoints import CheckpointError
    from mma_dfer.runs.identity import IdentityError
    from mma_dfer.training import TrainingError
    from mma_dfer.training.distributed import PEER_LOST_EXIT_CODE, is_collective_failure
    from mma_dfer.training.ds_config import default_ds_config
    from mma_dfer.training.signals import PREEMPTED_EXIT_CODE, Preempted
    from mma_dfer.training.trainer import run as train

    ds_config = args.deepspeed_config
    if ds_config is None:
        ds_config = default_ds_config(torch.cuda.is_available())
        logging.getLogger("mma_dfer.train").warning("no --deepspeed_config: %s (the default on %s)", ds_config,
                                                    "a GPU" if torch.cuda.is_available() else "the CPU")
    try:
        cfg = load_config(args.config, args.overrides)
        train(cfg, ds_config, args.resume, args.init_from)
    except Preempted as e:
        print(f"preempted: {e}; rerun with --resume auto to continue", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except (ConfigError, AnnotationError, ClipError, CheckpointError, TrainingError, IdentityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not is_collective_failure(e):
            raise
        print(f"error: lost contact with another rank of this run (a node or process is gone, or it was silent "
              f"for train.collective_timeout_s={cfg.train.collective_timeout_s} s): {str(e).splitlines()[0]}; "
              f"the last complete checkpoint is intact: exit {PEER_LOST_EXIT_CODE}, requeue to resume",
              file=sys.stderr, flush=True)
        # Leave at once: the broken process group's threads may still wait on the lost peer, and
        # tearing it down at interpreter exit can abort ("terminate called without an active
        # exception", exit 134), which would hide the code that gets the run requeued.
        sys.stdout.flush()
        os._exit(PEER_LOST_EXIT_CODE)
    return 0


def main(argv=None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
