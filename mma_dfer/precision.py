"""The precision vocabulary, one home for its names: what a DeepSpeed JSON or engine trains in,
as ``result.json``, the run identity and ``--precision`` name it. No torch (the run identity,
the aggregator and ``--help`` read these names); :func:`torch_dtype` maps a name to torch's.

Names: ``float32``; ``bfloat16`` / ``float16``, the whole module in that dtype (DeepSpeed's
``bf16`` / ``fp16`` sections); ``autocast-bfloat16`` / ``autocast-float16``, fp32 trainable
weights under autocast (the ``torch_autocast`` section, the shipped JSONs' way)."""
from __future__ import annotations

from typing import Optional

FLOAT32 = "float32"
AUTOCAST = "autocast-"
HALF = ("bfloat16", "float16")
PRECISION_CHOICES = ("fp32", "bf16", "fp16")  # --precision of evaluate and predict
# How a JSON, torch or a user may spell a dtype -> its name here.
_SPELLINGS = {"float32": FLOAT32, "fp32": FLOAT32, "bfloat16": "bfloat16", "bf16": "bfloat16",
              "float16": "float16", "fp16": "float16", "half": "float16"}


def dtype_name(spelling) -> str:
    """``bfloat16``/``float16``/``float32`` for any spelling of it (``torch.bfloat16``, ``bf16``,
    ``half``, a torch dtype); a ValueError for anything else."""
    name = str(spelling).replace("torch.", "")
    if name not in _SPELLINGS:
        raise ValueError(f"unknown precision {spelling!r}")
    return _SPELLINGS[name]


def autocast_name(ds: dict) -> Optional[str]:
    """The dtype of a DeepSpeed JSON's ``torch_autocast`` section when it is enabled, else None."""
    section = ds.get("torch_autocast", {})
    return dtype_name(section.get("dtype", "bfloat16")) if section.get("enabled") else None


def precision_of(ds: dict) -> str:
    """What a DeepSpeed JSON trains in: the whole module's dtype, or ``autocast-<dtype>``."""
    if ds.get("fp16", {}).get("enabled"):
        return "float16"
    if ds.get("bf16", ds.get("bfloat16", {})).get("enabled"):
        return "bfloat16"
    autocast = autocast_name(ds)
    return AUTOCAST + autocast if autocast else FLOAT32


def precision_name(engine) -> str:
    """What a DeepSpeed engine trains in (the same names as :func:`precision_of` of its JSON)."""
    if engine.fp16_enabled():
        return "float16"
    if engine.bfloat16_enabled():
        return "bfloat16"
    if engine.torch_autocast_enabled():
        return AUTOCAST + dtype_name(engine.torch_autocast_dtype())
    return FLOAT32


def precision_for(choice: Optional[str], trained: str) -> str:
    """The precision an evaluation runs in: the run's own (``trained``, as result.json records
    it) when ``choice`` (a :data:`PRECISION_CHOICES`) is None, else fp32, or bf16/fp16 the way the
    run used half precision (whole module, or autocast: the shipped JSONs' way, also for an fp32 run)."""
    if choice is None:
        return trained
    dtype = dtype_name(choice)
    if dtype == FLOAT32:
        return FLOAT32
    return dtype if trained in HALF else AUTOCAST + dtype


def is_float16(name: str) -> bool:
    """Whether a precision name trains or runs in float16 (whole module or autocast): the family
    that needs a GPU and, in training, dynamic loss scaling."""
    return name in ("float16", AUTOCAST + "float16")


def torch_dtype(name: str):
    """The torch dtype of a dtype name (any spelling :func:`dtype_name` reads)."""
    import torch  # lazy: this module's names are read by torch-free code (identity, aggregate, --help)

    return getattr(torch, dtype_name(name))
