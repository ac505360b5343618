"""DeepSpeed's CPU communication op (``deepspeed_shm_comm``): built where it is used, cached per
environment, announced when it is built.

On the CPU accelerator DeepSpeed compiles a C++ shared-memory all-reduce the first time its
communication backend starts (75-110 s on two cores). torch caches such builds under
``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``), a folder every environment
shares, so each environment with another torch or DeepSpeed rebuilt it over the other's, in
silence. Here the cache is this environment's own (``<sys.prefix>/torch_extensions`` when the
user has not set ``TORCH_EXTENSIONS_DIR``), a run of one process skips the op (there is no peer
to reduce with), and a build says that it is happening.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("mma_dfer.train")

OP_NAME = "deepspeed_shm_comm"  # deepspeed.ops.op_builder.cpu.comm.ShareMemCommBuilder.NAME
ENV = "TORCH_EXTENSIONS_DIR"


def extensions_dir() -> Path:
    """This environment's build cache: ``$TORCH_EXTENSIONS_DIR`` if set, else
    ``<sys.prefix>/torch_extensions``, or (a prefix this user cannot write, a system Python)
    a folder of its own, named by the prefix, under ``~/.cache/torch_extensions``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    prefix = Path(sys.prefix)
    if os.access(prefix, os.W_OK):
        return prefix / "torch_extensions"
    tag = hashlib.sha256(str(prefix.resolve()).encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "torch_extensions" / f"{prefix.name}-{tag}"


def is_built(folder: Path) -> bool:
    return any(folder.glob(f"*/{OP_NAME}/{OP_NAME}*.so"))


def prepare(world_size: int, is_main: bool) -> None:
    """Before DeepSpeed's communication backend starts: point torch's build cache at this
    environment's, and on the CPU accelerator skip the op for one process or say that it is
    built now (once per environment)."""
    folder = extensions_dir()
    os.environ.setdefault(ENV, str(folder))
    from deepspeed.accelerator import get_accelerator  # lazy: after the build cache is set, as the op reads it

    if get_accelerator().device_name() != "cpu":
        return
    if world_size == 1:
        import deepspeed.ops  # lazy: as above

        deepspeed.ops.__compatible_ops__[OP_NAME] = False  # DeepSpeed then starts without the op
        return
    if is_main and not is_built(folder):
        log.warning("building DeepSpeed's CPU op, one-time, ~80 s (cached in %s, this environment's own)", folder)
