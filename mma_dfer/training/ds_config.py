"""The DeepSpeed JSON of a run: ZeRO and precision from the file, everything else from the config
and :data:`DEFAULTS` (this module is the one owner of what a JSON leaves out)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from mma_dfer.config import Config
from mma_dfer.resources import ResourceError, ds_config_path
from mma_dfer.training import TrainingError


# What every run gets unless its JSON says otherwise (a user's JSON may turn any of it on):
# DeepSpeed's throughput timer synchronises the device at every forward and step (two host syncs
# per step: the host cannot queue step n+1 while the GPU runs step n), its wall-clock breakdown
# at every step, and its periodic prints interleave with the trainer's own log (which logs its own
# clips/s): all off.
DEFAULTS = {"steps_per_print": 1_000_000_000, "wall_clock_breakdown": False,
            "timers": {"throughput": {"enabled": False}}}


def with_defaults(ds: dict, defaults: dict = DEFAULTS) -> dict:
    """``ds`` with each key of ``defaults`` it does not set (nested sections merged key by key)."""
    out = dict(ds)
    for key, value in defaults.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = with_defaults(out[key], value)
        elif key not in out:
            out[key] = value
    return out


def default_ds_config(cuda: bool) -> str:
    """The shipped JSON a run gets without ``--deepspeed_config``: bf16 autocast without ZeRO on a
    GPU (one GPU per run partitions nothing; the 7.6M trainable weights need no ZeRO on several),
    fp32 on the CPU (bf16 matmuls are emulated, slowly, on most CPUs)."""
    return "zero0_bf16" if cuda else "cpu_fp32"


def deepspeed_config(path: str | Path, cfg: Config, world: int) -> dict:
    """The JSON with the batch sizes and clipping filled in from ``train.*``.

    DeepSpeed's JSON owns ZeRO and precision; the optimizer, schedule, batch and clipping are
    the config's. A JSON that sets any of them to something else is an error, not a merge.
    ``path``: a file, or the name of a shipped JSON (``zero0_bf16``)."""
    try:
        path = ds_config_path(path)
        ds = with_defaults(json.loads(path.read_text()))
    except ResourceError as e:
        raise TrainingError(str(e)) from None
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot read DeepSpeed config {path}: {e}") from None
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise TrainingError(f"{path}: remove '{key}': the optimizer and LR schedule come from train.* "
                                "(AdamW, cosine) so that one config describes the run")
    t = cfg.train
    micro = t.micro_batch_size or t.batch_size // world
    if micro < 1 or t.batch_size % (micro * world):
        raise TrainingError(f"train.batch_size={t.batch_size} (the paper's global batch) is not micro-batch "
                            f"{micro} x world size {world} x a whole number of accumulation steps; set "
                            "train.micro_batch_size or change the number of GPUs")
    # gradient_clipping always: DeepSpeed's default is 1.0, the paper's (the authors') is none
    wanted = {"train_batch_size": t.batch_size, "train_micro_batch_size_per_gpu": micro,
              "gradient_accumulation_steps": t.batch_size // (micro * world), "gradient_clipping": t.grad_clip}
    for key, value in wanted.items():
        if key in ds and ds[key] != value:
            raise TrainingError(f"{path}: {key}={ds[key]} disagrees with the config ({value} from train.batch_size="
                                f"{t.batch_size}, train.micro_batch_size, train.grad_clip and world size {world})")
        ds[key] = value
    if t.grad_clip > 0 and ds.get("zero_optimization", {}).get("compute_grad_norm") is False:
        raise TrainingError(f"{path}: train.grad_clip={t.grad_clip} needs the gradient norm; remove "
                            "zero_optimization.compute_grad_norm=false (set in the shipped JSONs because nothing "
                            "reads the norm when clipping is off, as in the paper)")
    if ds.get("fp16", {}).get("enabled") and not torch.cuda.is_available():
        raise TrainingError(f"{path}: the whole-module fp16 mode needs a GPU (DeepSpeed refuses it on most "
                            "CPUs); use a torch_autocast JSON (ds_configs/zero0_fp16.json), cpu_fp32.json or cpu_bf16.json")
    return ds
