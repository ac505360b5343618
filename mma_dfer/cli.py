"""``mma-dfer <command>`` (also ``python -m mma_dfer <command>``): every job of the project.

``train``, ``evaluate``, ``submit``, ``aggregate`` and ``report`` are the ``launch/*.py`` scripts
(same flags, same exit codes; the scripts call the same functions). Each command's flags come
from a module that imports no torch, and its work is imported only when it runs, so ``--help``
of the program and of every command answers at once. Errors go to stderr.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version as installed
from pathlib import Path

from mma_dfer.config import add_set_flag, load_config
from mma_dfer.data import prepare_args, synthetic
from mma_dfer.datasets import num_folds
from mma_dfer.precision import PRECISION_CHOICES

DESCRIPTION = ("Every job of MMA-DFER: train, evaluate, submit, aggregate and report (the launch/*.py scripts), "
               "predict on new videos, prepare and verify datasets, the CPU demo. "
               "'mma-dfer COMMAND --help' describes a command.")
# The errors a command reports as one line with exit 2 (bad config or input): (module, class).
# Matched by name in sys.modules, so that catching them never imports torch: an error class whose
# module was never imported cannot have been raised.
USER_ERRORS = (("mma_dfer.config", "ConfigError"), ("mma_dfer.data.annotations", "AnnotationError"),
               ("mma_dfer.safe_files", "CheckpointError"), ("mma_dfer.runs.identity", "IdentityError"),
               ("mma_dfer.datasets", "DatasetError"), ("mma_dfer.inference.export", "ExportError"))


def _command(sub, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand whose --help starts with what it does (the listing's line)."""
    return sub.add_parser(name, help=text, description=text)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="experiment YAML, a file or a shipped config's name (default: the paper's "
                   "defaults)")
    add_set_flag(p)


def cmd_params(args) -> int:
    """Print trainable/frozen parameter counts per part; last line ``trainable: <N>``."""
    import torch  # lazy: mma-dfer --help and the light commands import no torch

    from mma_dfer.models import build_model  # lazy: as torch above
    from mma_dfer.models.summary import format_param_table  # lazy: as torch above

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


def cmd_demo(args) -> int:
    """Generate the demo dataset (once) and train the tiny model on it on the CPU."""
    from mma_dfer.training.signals import PREEMPTED_EXIT_CODE, Preempted  # lazy: the trainer's, as below
    from mma_dfer.training.trainer import run as train  # lazy: mma-dfer --help imports no torch

    root = Path(args.data)
    if not (root / "EmoLabel_DataSplit").is_dir():
        print(f"generating the demo dataset in {root} ...")
        synthetic.make_dataset("dfew", root, clips_per_class=10, seed=0)
    cfg = load_config("demo", [f"data.root={root}", f"output_dir={args.output}", *args.overrides])
    try:
        result = train(cfg, "cpu_fp32", args.resume)
    except Preempted as e:
        print(f"demo: {e}; 'mma-dfer demo' again continues it", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        print("demo: interrupted; 'mma-dfer demo' again continues from its last checkpoint", file=sys.stderr)
        return 130
    two = "" if result["uar_2clip"] is None else f"; 2-clip UAR {result['uar_2clip']:.2f}"
    print(f"demo: UAR {result['uar']:.2f} WAR {result['war']:.2f} (chance {100 / 7:.2f}){two}; "
          f"results in {args.output}/result.json")
    return 0


def _lazy(module: str, function: str = "run"):
    """A command's run function, imported when the command runs (not when the parser is built)."""
    def run(args):
        return getattr(importlib.import_module(module), function)(args)
    return run


def _params(sub) -> None:
    p = _command(sub, "params", "parameter counts per part of the model")
    _config_args(p)
    p.add_argument("--forward", action="store_true", help="also run one forward/backward on random input")
    p.add_argument("--load-pretrained", action="store_true",
                   help="load model.video_checkpoint / model.audio_checkpoint (default: random weights)")
    p.set_defaults(func=cmd_params)


def _demo(sub) -> None:
    p = _command(sub, "demo", "generate the demo dataset and train the tiny model on CPU")
    p.add_argument("--data", default="data/demo-dfew", help="where the generated dataset goes")
    p.add_argument("--output", default="runs/demo", help="run folder")
    p.add_argument("--resume", default="auto", help="auto (default: a finished demo is shown, not retrained), "
                   "never, or a checkpoint folder")
    add_set_flag(p)
    p.set_defaults(func=cmd_demo)


def _make_data(sub) -> None:
    p = _command(sub, "make-data", "write a generated dataset in a real layout (DFEW, MAFW, CREMA-D, RAVDESS)")
    synthetic.add_arguments(p)
    p.set_defaults(func=_lazy("mma_dfer.data.synthetic"))


def _inspect_clip(sub) -> None:
    p = _command(sub, "inspect-clip", "run one clip through the test-time pipeline")
    p.add_argument("file", help="an mp4 clip, or a folder of numbered frames (then --audio)")
    p.add_argument("--resolution", type=int, choices=(112, 160, 224), default=160, help="face crop size in pixels")
    p.add_argument("--audio-policy", choices=("error", "silence"), default="error",
                   help="a clip without an audio track: fail (default) or use silent audio")
    p.add_argument("--clips", type=int, choices=(1, 2), default=1, help="test-time clips (2: the 2-clip protocol)")
    p.add_argument("--audio", help="wav file for a frame folder")
    p.add_argument("--png", help="write the frames and the spectrogram to this PNG")
    p.set_defaults(func=_lazy("mma_dfer.data.inspect"))


def _prepare(sub) -> None:
    p = _command(sub, "prepare", "extract 16 kHz audio and MTCNN faces from the raw datasets, pack them")
    prepare_args.add_arguments(p)
    p.set_defaults(func=_lazy("mma_dfer.data.prepare"))


def _verify(sub) -> None:
    p = _command(sub, "verify", "check a prepared dataset: every clip decodes, counts per fold")
    p.add_argument("--config", help="experiment YAML (data.dataset, data.root, data.source, ...)")
    p.add_argument("--fold", default="all", help="a fold (1..K) or all (default: every fold of the dataset)")
    add_set_flag(p)
    p.set_defaults(func=cmd_verify)


def cmd_verify(args) -> int:
    """``verify``: its flags and the config checked before the decoders and torch are imported
    (a typo answers at once), then every clip (a missing root or fold file is one of its problems)."""
    k = num_folds(load_config(args.config, args.overrides).data)
    if args.fold != "all" and args.fold not in {str(f) for f in range(1, k + 1)}:
        print(f"error: --fold {args.fold}: a fold of this dataset's {k}-fold protocol (1-{k}) or all", file=sys.stderr)
        return 2
    return _lazy("mma_dfer.data.verify")(args)


def _predict(sub) -> None:
    p = _command(sub, "predict", "a trained model on new videos or a live stream: class probabilities per video or window")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="video files, or folders of them (searched recursively); "
                   "none with --stream")
    p.add_argument("--checkpoint", required=True,
                   help="a run folder / checkpoint tag folder of this project, or an authors' model.pth")
    p.add_argument("--faces", choices=("mtcnn", "none"), default="mtcnn",
                   help="mtcnn: find and crop the face as prepare --faces mtcnn does (default); none: the frames "
                        "are face crops already (DFEW's clips)")
    p.add_argument("--clips", type=int, choices=(1, 2), default=1, help="test-time clips per video (or window)")
    p.add_argument("--audio-policy", choices=("error", "silence"), default="error",
                   help="a video without an audio track: fail it (default) or predict it with silent audio")
    p.add_argument("--window", type=float, metavar="SECONDS", help="slide the model over the video in windows")
    p.add_argument("--stride", type=float, metavar="SECONDS", help="seconds between windows (default: --window)")
    p.add_argument("--json", metavar="FILE", help="write every prediction with all class probabilities")
    p.add_argument("--csv", metavar="FILE", help="the same as a CSV table")
    p.add_argument("--plot", metavar="FILE.png", help="draw the emotion timeline (with --window)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per forward pass")
    p.add_argument("--workers", type=int, default=1,
                   help="processes decoding videos and finding faces beside the model (default 1, the fast path: "
                        "with MTCNN ~9x faster than 0, which does it all in this process)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default): a GPU when there is one")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="default: the run's own (its result.json's precision; fp32 for an authors' file)")
    p.add_argument("--margin", type=float, default=prepare_args.FACE_MARGIN, help="face square = margin x the larger box side")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="torch (default) or onnxruntime (the fp32 model exported to ONNX, checked; CPU; deploy extra)")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="int8: dynamic int8 linear layers (CPU; not bit-faithful, see docs/predict.md)")
    p.add_argument("--stream", metavar="SOURCE", help="follow a live source instead of files: a camera (/dev/video0), "
                   "a URL FFmpeg reads (rtsp://, http://, udp://, tcp://) or - (a pipe on stdin); one JSON line "
                   "per window on stdout")
    p.add_argument("--hop-s", type=float, default=1.0, metavar="SECONDS",
                   help="--stream: seconds between windows (default 1)")
    p.set_defaults(func=_lazy("mma_dfer.inference.predict"))


def _export(sub) -> None:
    p = _command(sub, "export", "a trained model as an ONNX file or a torch.export program, with a sidecar JSON")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                   help="a run folder / checkpoint tag folder of this project, or an authors' model.pth")
    p.add_argument("--format", choices=("onnx", "pt2"), required=True,
                   help="onnx (ONNX Runtime and other consumers; needs the deploy extra) or pt2 (torch.export)")
    p.add_argument("--resolution", type=int, help="the input size to export at: must be the model's own (checked)")
    p.add_argument("--out", help="the model file (default <run>/export/model-<R>.<format>, or beside an authors' "
                   "file); the sidecar JSON is <out>.json")
    p.set_defaults(func=_lazy("mma_dfer.inference.export"))


def _launched(sub, name: str, module: str, help: str) -> None:
    """A command that is also a ``launch/<name>.py`` script: the module's flags and run()."""
    p = _command(sub, name, help)
    importlib.import_module(module).add_arguments(p)
    p.set_defaults(func=_lazy(module))


LAUNCHED = [  # (command, module, help): the launch/ scripts
    ("train", "mma_dfer.training.cli", "train one fold through DeepSpeed (launch/train.py)"),
    ("evaluate", "mma_dfer.inference.evaluate_checkpoint", "evaluate a checkpoint on a fold's test set "
     "(launch/evaluate.py)"),
    ("submit", "mma_dfer.cluster.submit", "fan the folds x resolutions or a sweep out through submitit "
     "(launch/submit.py)"),
    ("aggregate", "mma_dfer.experiments.aggregate", "per-resolution UAR/WAR tables over folds (launch/aggregate.py)"),
    ("report", "mma_dfer.report", "one HTML page of every run beside the paper (launch/report.py)"),
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mma-dfer", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"mma-dfer {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, text in LAUNCHED:
        _launched(sub, name, module, text)
    for add in (_predict, _export, _prepare, _verify, _demo, _params, _make_data, _inspect_clip):
        add(sub)
    return p


def version() -> str:
    """The installed package's version (a checkout run without installing: "unknown")."""
    try:
        return installed("mma-dfer")
    except PackageNotFoundError:
        return "unknown (not installed)"


def user_error(e: BaseException) -> bool:
    """Whether ``e`` is one of :data:`USER_ERRORS` (looked up without importing anything)."""
    for module, name in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return True
    return False


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:
        if not user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
