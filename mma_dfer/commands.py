"""Sub-commands beyond ``params``: each adds its parser here."""
from __future__ import annotations


def _make_data(sub) -> None:
    from mma_dfer.data import synthetic

    p = sub.add_parser("make-data", help="write a generated dataset in the real DFEW/MAFW layout")
    synthetic.add_arguments(p)
    p.set_defaults(func=synthetic.run)


def _inspect_clip(sub) -> None:
    def run(args):
        from mma_dfer.data.inspect import run as inspect_run

        return inspect_run(args)

    p = sub.add_parser("inspect-clip", help="run one clip through the test-time pipeline")
    p.add_argument("file", help="an mp4 clip, or a folder of numbered frames (then --audio)")
    p.add_argument("--resolution", type=int, choices=(112, 160, 224), default=160)
    p.add_argument("--audio-policy", choices=("error", "silence"), default="error")
    p.add_argument("--clips", type=int, choices=(1, 2), default=1)
    p.add_argument("--audio", help="wav file for a frame folder")
    p.add_argument("--png", help="write the frames and the spectrogram to this PNG")
    p.set_defaults(func=run)


def _demo(sub) -> None:
    def run(args):
        from pathlib import Path

        from mma_dfer.config import load_config
        from mma_dfer.data.synthetic import make_dataset
        from mma_dfer.engine.trainer import run as train

        config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
        root = Path(args.data)
        if not (root / "EmoLabel_DataSplit").is_dir():
            print(f"generating the demo dataset in {root} ...")
            make_dataset("dfew", root, clips_per_class=10, seed=0)
        cfg = load_config(config, [f"data.root={root}", f"output_dir={args.output}", *args.overrides])
        result = train(cfg, Path(__file__).resolve().parents[1] / "ds_configs" / "cpu_fp32.json", args.resume)
        print(f"demo: UAR {result['uar']:.2f} WAR {result['war']:.2f} (chance {100 / 7:.2f}); "
              f"2-clip UAR {result['uar_2clip']:.2f}; results in {args.output}/result.json")
        return 0

    p = sub.add_parser("demo", help="generate the demo dataset and train the tiny model on CPU")
    p.add_argument("--data", default="data/demo-dfew", help="where the generated dataset goes")
    p.add_argument("--output", default="runs/demo", help="run folder")
    p.add_argument("--resume", default="auto", help="auto (default: a finished demo is shown, not retrained), "
                   "never, or a checkpoint folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def _prepare(sub) -> None:
    def run(args):
        from mma_dfer.data.prepare import run as prepare_run

        return prepare_run(args)

    from mma_dfer.data.prepare import add_arguments

    p = sub.add_parser("prepare", help="extract 16 kHz audio and MTCNN faces from the raw datasets")
    add_arguments(p)
    p.set_defaults(func=run)


def _verify(sub) -> None:
    def run(args):
        from mma_dfer.data.verify import run as verify_run

        return verify_run(args)

    p = sub.add_parser("verify", help="check a prepared dataset: every clip decodes, counts per fold")
    p.add_argument("--config", help="experiment YAML (data.dataset, data.root, data.source, ...)")
    p.add_argument("--fold", default="all", help="1-5 or all (default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def _predict(sub) -> None:
    def run(args):
        from mma_dfer.engine.predict import run as predict_run

        return predict_run(args)

    from mma_dfer.data.prepare import FACE_MARGIN

    p = sub.add_parser("predict", help="a trained model on new videos: class probabilities per video or window")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, or folders of them (searched recursively)")
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
    p.add_argument("--workers", type=int, default=0, help="processes decoding videos (and finding faces)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                   help="default: the run's own (its result.json's precision; fp32 for an authors' file)")
    p.add_argument("--margin", type=float, default=FACE_MARGIN, help="face square = margin x the larger box side")
    p.set_defaults(func=run)


def register(sub) -> None:
    """Attach the data, demo and toolkit sub-commands to ``sub``."""
    _make_data(sub)
    _inspect_clip(sub)
    _demo(sub)
    _prepare(sub)
    _verify(sub)
    _predict(sub)
