"""The command line of ``launch/train.py`` and ``mma-dfer train``: parse, load the config, run,
map errors to exit codes. Also ``deepspeed --module mma_dfer.training.cli ...`` (an installed
package has no ``launch/`` folder)."""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys

from mma_dfer.config import ConfigError, add_set_flag, load_config
from mma_dfer.data.annotations import AnnotationError
from mma_dfer.runs.identity import IdentityError
from mma_dfer.runs.preflight import PreflightError, check_training
from mma_dfer.safe_files import CheckpointError
from mma_dfer.training import TrainingError
from mma_dfer.training.signals import PREEMPTED_EXIT_CODE, Preempted

INTERRUPTED_EXIT_CODE = 130  # the shell's code for Ctrl-C: the second one stops at once


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="experiment YAML: a file, or a shipped config's name (dfew_160)")
    p.add_argument("--deepspeed_config", "--deepspeed-config", dest="deepspeed_config", default=None,
                   help="DeepSpeed JSON (ZeRO stage, precision): a file or a shipped name (zero2_bf16); default "
                        "zero0_bf16 on a GPU, cpu_fp32 on the CPU")
    add_set_flag(p)
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
    # the config and what it names on disk, before torch, DeepSpeed and the model are imported
    try:
        cfg = load_config(args.config, args.overrides)
        check_training(cfg, args.resume, args.init_from)
    except (ConfigError, AnnotationError, PreflightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return train_and_report(args, cfg)


def train_and_report(args, cfg) -> int:
    """Train ``cfg`` (checked by :func:`run`); the exit code of each way a run can end."""
    import torch  # lazy: train --help and run()'s checks import no torch

    from mma_dfer.data.video import ClipError  # lazy: as torch above
    from mma_dfer.training.distributed import PEER_LOST_EXIT_CODE, is_collective_failure  # lazy: as torch above
    from mma_dfer.training.ds_config import default_ds_config  # lazy: as torch above
    from mma_dfer.training.trainer import run as train  # lazy: as torch above

    ds_config = args.deepspeed_config
    if ds_config is None:
        ds_config = default_ds_config(torch.cuda.is_available())
        logging.getLogger("mma_dfer.train").warning("no --deepspeed_config: %s (the default on %s)", ds_config,
                                                    "a GPU" if torch.cuda.is_available() else "the CPU")
    try:
        train(cfg, ds_config, args.resume, args.init_from)
    except Preempted as e:
        what = "interrupted (Ctrl-C)" if e.signum == signal.SIGINT else "preempted"
        print(f"{what}: {e}; the same command resumes: {resume_command()}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without a checkpoint of this moment
        print(f"interrupted: stopped at once; the last complete checkpoint is kept, the same command resumes "
              f"from it: {resume_command()}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
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


def resume_command() -> str:
    """What continues this run: this process's command line, shell-quoted, without a
    ``--resume never`` (which would refuse the folder the run now holds); under a launcher of
    several ranks (deepspeed, SLURM), that launcher's command."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "the same launch command (--resume auto, the default)"
    argv = list(sys.argv)
    if argv[0].endswith("__main__.py"):
        head = ["python", "-m", "mma_dfer"]
    elif argv[0].endswith(".py"):
        head = ["python", argv[0]]
    else:
        head = [os.path.basename(argv[0])]
    rest, i = [], 1
    while i < len(argv):
        if argv[i] == "--resume" and argv[i + 1:i + 2] == ["never"]:
            i += 2
            continue
        if argv[i] != "--resume=never" and not argv[i].startswith("--local_rank"):
            rest.append(argv[i])
        i += 1
    return " ".join(head + [shlex.quote(a) for a in rest])


def main(argv=None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
