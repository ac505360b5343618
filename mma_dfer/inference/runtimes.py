"""The runtimes ``predict --runtime`` and ``--quantize`` offer on the CPU, as one callable
``forward(video, audio) -> logits`` that ``evaluate.clip_probabilities`` takes like the model.

- ``torch`` (default): the eager model.
- ``onnxruntime``: the model exported to ONNX in memory (``export.export_bytes``: the same
  checked-faithful export as ``mma-dfer export``) and run by ONNX Runtime's CPU provider with all
  graph optimisations (attention, GELU and LayerNorm fusions).
- ``--quantize int8``: dynamic int8 quantisation of the linear layers (weights int8 per output
  channel, activations quantised per batch at run time): ``torch.ao.quantization.quantize_dynamic`` on
  the torch runtime, ONNX Runtime's ``quantize_dynamic`` (MatMul weights) on onnxruntime. Not
  bit-faithful by design: ``bench/deploy_speed.py`` measures its top-1 agreement with fp32.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from mma_dfer.inference.export import export_bytes, onnx_session, session_forward

RUNTIMES = ("torch", "onnxruntime")
QUANTIZE = ("none", "int8")
INT8_PRECISION = "int8-dynamic"  # the records' "precision" of a quantised model


@dataclass
class Runtime:
    forward: Callable  # forward(video, audio) -> logits (torch tensors, CPU)
    name: str  # "torch", "onnxruntime", with "+int8" when quantised
    precision: str  # what the records say: the float precision, or INT8_PRECISION


def torch_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model with its ``nn.Linear`` layers dynamically quantised to int8: all but
    the classifier (a single 7- or 11-row layer whose dtype the forward reads; the patch
    embeddings, convolutions, stay fp32 too)."""
    model = copy.deepcopy(model).eval()
    linears = {name: per_channel_dynamic_qconfig for name, mod in model.named_modules()
               if isinstance(mod, torch.nn.Linear) and name != "head"}
    return quantize_dynamic(model, linears, dtype=torch.qint8)


def onnx_int8(model_bytes: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantisation of an ONNX model's weight MatMuls (int8 weights
    per output channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # lazy: the deploy extra's (optional)

    with tempfile.TemporaryDirectory(prefix="mma-dfer-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        # only the weight matmuls (the linear layers): the attention's activation x activation
        # products and the patch-embedding convolutions stay fp32, as on the torch runtime; 7-bit
        # weights (reduce_range) because u8 x s8 products saturate int16 on CPUs without VNNI
        # (AVX2: this project's CPU; 29% top-1 agreement on the demo model without it, 93% with)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul", "Gemm"], extra_options={"MatMulConstBOnly": True})
        return dst.read_bytes()


def build_runtime(model: torch.nn.Module, cfg, runtime: str = "torch", quantize: str = "none",
                  precision: str = "float32") -> Runtime:
    """The forward of ``model`` (fp32, eval mode, on the CPU unless ``runtime`` is torch without
    quantisation) on ``runtime``. The ONNX export is checked against the eager model first (at
    batch 1); an export that is not faithful raises ``export.ExportError``."""
    if runtime not in RUNTIMES or quantize not in QUANTIZE:
        raise ValueError(f"runtime {runtime!r} / quantize {quantize!r}")
    if runtime == "torch":
        if quantize == "none":
            return Runtime(model, "torch", precision)
        return Runtime(torch_int8(model), "torch+int8", INT8_PRECISION)
    data, _ = export_bytes(model.eval(), cfg, "onnx", batches=(1,))
    if quantize == "none":
        return Runtime(session_forward(onnx_session(data)), "onnxruntime", precision)
    return Runtime(session_forward(onnx_session(onnx_int8(data))), "onnxruntime+int8", INT8_PRECISION)


def check_runtime_arguments(runtime: str, quantize: str, device: str, precision_choice) -> str | None:
    """Why ``--runtime``/``--quantize`` cannot run with the other flags (exit 2), or None."""
    if runtime == "torch" and quantize == "none":
        return None
    what = f"--runtime {runtime}" if runtime != "torch" else f"--quantize {quantize}"
    if device == "cuda":
        return f"{what} runs on the CPU: use --device cpu (or auto without a GPU)"
    if precision_choice not in (None, "fp32"):
        return f"{what} runs the fp32 model: --precision {precision_choice} cannot be combined with it"
    if runtime == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401  # lazy: is the optional deploy extra installed?
            import onnxscript  # noqa: F401  # lazy: is the optional deploy extra installed?
        except ImportError as e:
            return f"--runtime onnxruntime needs the deploy extra ({e.name} is missing): pip install 'mma-dfer[deploy]'"
    return None
