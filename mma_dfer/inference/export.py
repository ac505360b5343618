"""``mma-dfer export``: a trained MMA-DFER as a file that runs without this package.

Two formats, both traced once by ``torch.export`` with a dynamic batch dimension:

- ``onnx``: an ONNX graph (torch's dynamo exporter) that ONNX Runtime, or any ONNX consumer,
  loads; inputs ``video`` (B, T, 3, S, S) and ``audio`` (B, 1, F, bins), output ``logits``.
- ``pt2``: the ``torch.export`` program (``torch.export.load``), for PyTorch services and
  AOTInductor.

Beside the model a sidecar JSON (``<file>.json``) says what a consumer needs: the class names in
the output's order, the input layout and preprocessing (frame sampling, size, value range,
normalisation, the fbank's settings and normalisation constants), the run's fingerprint and
precision, and the exporting versions. An export is checked before it is written: its logits
must equal the eager model's within :data:`TOLERANCE` at batch 1 and 3, or it is an
:class:`ExportError` saying why, never a silently different model.
"""
from __future__ import annotations

import importlib.metadata as md
import io
import platform
import sys
from pathlib import Path
from typing import Callable, Optional

import torch

from mma_dfer.data import audio as A
from mma_dfer.data.video import IMAGENET_MEAN, IMAGENET_STD
from mma_dfer.datasets import class_names
from mma_dfer.inference.restore import load_model
from mma_dfer.runs.identity import fingerprint
from mma_dfer.utils import atomic_write_bytes, atomic_write_json, sha256_file

FORMATS = ("onnx", "pt2")
TOLERANCE = 1e-4  # largest |exported - eager| logit allowed (fp32)
CHECK_BATCHES = (1, 3)  # the batch sizes every export is checked at (the batch dimension is dynamic)
TRACE_BATCH = 2  # the example batch of the trace: 1 would be specialised to a constant by torch.export
INPUT_NAMES = ("video", "audio")
OUTPUT_NAME = "logits"


class ExportError(Exception):
    """The model cannot be exported faithfully (the message says why)."""


def example_inputs(cfg, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs in the model's layout and value ranges: frames in [0, 1], a normalised
    fbank (about unit scale)."""
    g = torch.Generator().manual_seed(seed)
    d = cfg.data
    video = torch.rand(batch, d.num_frames, 3, d.resolution, d.resolution, generator=g)
    audio = torch.randn(batch, 1, d.audio_frames, d.mel_bins, generator=g) * 0.5
    return video, audio


def trace(model: torch.nn.Module, cfg) -> torch.export.ExportedProgram:
    """The eval-mode fp32 model as a ``torch.export`` program with a dynamic batch dimension."""
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise ExportError("the model's weights are not all float32: export the fp32 model (its run's precision is "
                          "recorded in the sidecar)")
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        return torch.export.export(model, example_inputs(cfg, TRACE_BATCH),
                                   dynamic_shapes={"video": {0: batch}, "audio": {0: batch}})
    except Exception as e:  # a graph break or a batch-dependent branch: no faithful program
        raise ExportError(f"torch.export cannot trace this model with a dynamic batch "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None


def onnx_bytes(program: torch.export.ExportedProgram) -> bytes:
    """The program as a serialised ONNX model (opset of torch's exporter)."""
    try:
        onnx_program = torch.onnx.export(program, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                         dynamo=True, verbose=False)
    except Exception as e:
        raise ExportError(f"the ONNX exporter failed ({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None
    return onnx_program.model_proto.SerializeToString()


def pt2_bytes(program: torch.export.ExportedProgram) -> bytes:
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def onnx_session(model_bytes: bytes, threads: Optional[int] = None):
    """An ONNX Runtime CPU session of a serialised model (``threads``: intra-op threads,
    default torch's thread count, so that runtimes are compared on the same cores)."""
    import onnxruntime as ort  # lazy: the deploy extra's (an optional package; pt2 needs none)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def session_forward(session) -> Callable:
    """``forward(video, audio) -> logits`` (torch tensors) over an ONNX Runtime session."""
    def forward(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        feeds = {"video": video.detach().float().contiguous().numpy(),
                 "audio": audio.detach().float().contiguous().numpy()}
        return torch.from_numpy(session.run([OUTPUT_NAME], feeds)[0])
    return forward


def largest_difference(model: torch.nn.Module, exported: Callable, cfg, batches=CHECK_BATCHES) -> float:
    """The largest |exported - eager| logit over random inputs of each batch size."""
    worst = 0.0
    with torch.no_grad():
        for b in batches:
            video, audio = example_inputs(cfg, b, seed=b)
            eager = model(video, audio)
            got = exported(video, audio)
            if got.shape != eager.shape:
                raise ExportError(f"the exported model gives logits of shape {tuple(got.shape)} for batch {b}, "
                                  f"the model {tuple(eager.shape)}")
            worst = max(worst, float((got.float() - eager.float()).abs().max()))
    return worst


def check_faithful(model: torch.nn.Module, exported: Callable, cfg, what: str, batches=CHECK_BATCHES) -> float:
    """Raise :class:`ExportError` unless ``exported`` gives the eager logits within TOLERANCE."""
    diff = largest_difference(model, exported, cfg, batches)
    if not diff <= TOLERANCE:
        raise ExportError(f"the {what} differs from the eager model by {diff:.3g} in the logits (tolerance "
                          f"{TOLERANCE:g} at batch {', '.join(map(str, batches))}): not written")
    return diff


def export_bytes(model: torch.nn.Module, cfg, fmt: str, batches=CHECK_BATCHES) -> tuple[bytes, float]:
    """(serialised model, its largest logit difference from eager), checked faithful."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (choose {' or '.join(FORMATS)})")
    program = trace(model, cfg)
    if fmt == "pt2":
        data = pt2_bytes(program)
        loaded = torch.export.load(io.BytesIO(data)).module()
        return data, check_faithful(model, loaded, cfg, "torch.export program", batches)
    data = onnx_bytes(program)
    return data, check_faithful(model, session_forward(onnx_session(data)), cfg, "ONNX model", batches)


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("mma-dfer", "onnx", "onnxscript", "onnxruntime"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def sidecar(loaded, class_names: list[str], fmt: str, model_file: Path, difference: float, source: Path) -> dict:
    """What a consumer of the exported file needs to feed it and read its output."""
    d = loaded.cfg.data
    mean_std = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)} if d.normalize == "imagenet" else None
    return {
        "format": fmt,
        "file": model_file.name,
        "model": {"kind": loaded.kind, "dataset": d.dataset, "resolution": d.resolution,
                  "epoch": loaded.epoch, "source": str(source),
                  "fingerprint": fingerprint(loaded.identity) if loaded.identity else None,
                  "source_sha256": sha256_file(source) if source.is_file() else None,
                  "trained_precision": loaded.precision, "exported_precision": "float32"},
        "class_names": list(class_names),
        "inputs": {
            "video": {"name": "video", "shape": ["batch", d.num_frames, 3, d.resolution, d.resolution],
                      "dtype": "float32", "layout": "B, T, C (RGB), H, W",
                      "frames": f"{d.num_frames} frames sampled uniformly over the clip (or window)",
                      "resize": f"bilinear, antialiased, to {d.resolution}x{d.resolution} (the face square)",
                      "value_range": [0.0, 1.0], "scale": "pixel / 255",
                      "normalize": d.normalize, "normalize_mean_std": mean_std},
            "audio": {"name": "audio", "shape": ["batch", 1, d.audio_frames, d.mel_bins], "dtype": "float32",
                      "fbank": {"kind": "Kaldi fbank (torchaudio.compliance.kaldi.fbank)",
                                "sample_rate": d.sample_rate, "channels": "mono", "mel_bins": d.mel_bins,
                                "frame_length_ms": 25, "frame_shift_ms": A.FRAME_SHIFT_MS,
                                "window_type": "hanning", "htk_compat": True, "use_energy": False,
                                "dither": 0.0, "waveform_mean_removed": True},
                      "frames": f"the first {d.audio_frames} fbank frames of the clip, zero-padded at the end",
                      "normalize": "(fbank - mean) / (2 * std)", "mean": A.AUDIOSET_MEAN, "std": A.AUDIOSET_STD,
                      "silent_clip": "a zero fbank, normalised the same way"},
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(class_names)],
                   "meaning": "logits in class_names order; softmax gives the probabilities (2-clip: the mean "
                              "of both clips' softmaxes)"},
        "dynamic_batch": True,
        "checked": {"largest_logit_difference": difference, "tolerance": TOLERANCE, "batches": list(CHECK_BATCHES)},
        "versions": versions(),
    }


def default_out(checkpoint: Path, kind: str, fmt: str, resolution: int) -> Path:
    """``<run>/export/model-<R>.<fmt>`` for a run, ``<file stem>.<fmt>`` beside an authors' file."""
    if kind == "authors":
        return checkpoint.with_suffix(f".{fmt}")
    base = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return base / "export" / f"model-{resolution}.{fmt}"


def export(checkpoint: Path, fmt: str, resolution: Optional[int] = None, out: Optional[Path] = None) -> tuple[Path, Path, float]:
    """Export a run folder, checkpoint tag folder or authors' ``.pth``; returns (model file,
    sidecar, largest logit difference from eager)."""
    loaded = load_model(checkpoint)
    trained = loaded.cfg.data.resolution
    if resolution is not None and resolution != trained:
        raise ExportError(f"{checkpoint} was trained at {trained} px: its positional embeddings fix the input at "
                          f"{trained}x{trained}, and a {resolution}-px export would be another model (export a "
                          f"{resolution}-px run instead)")
    model = loaded.model.float().eval()
    data, difference = export_bytes(model, loaded.cfg, fmt)
    out = Path(out) if out else default_out(checkpoint, loaded.kind, fmt, trained)
    side = out.with_name(out.name + ".json")
    meta = sidecar(loaded, class_names(loaded.cfg.data), fmt, out, difference, checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    atomic_write_json(side, meta)
    return out, side, difference


def run(args) -> int:
    if args.format == "onnx":
        try:
            import onnxruntime  # noqa: F401  # lazy: the deploy extra's, checked before the long export
            import onnxscript  # noqa: F401  # lazy: the deploy extra's, checked before the long export
        except ImportError as e:
            print(f"error: --format onnx needs the deploy extra ({e.name} is missing): pip install 'mma-dfer[deploy]'",
                  file=sys.stderr)
            return 2
    try:
        out, side, diff = export(Path(args.checkpoint), args.format, args.resolution,
                                 Path(args.out) if args.out else None)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} and {side} (dynamic batch; logits within {diff:.2g} of the eager model at batch "
          f"{', '.join(map(str, CHECK_BATCHES))})")
    return 0


__all__ = ["ExportError", "FORMATS", "TOLERANCE", "export", "export_bytes", "onnx_session", "session_forward",
           "check_faithful", "example_inputs"]
