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


def register(sub) -> None:
    """Attach the data, demo and toolkit sub-commands to ``sub``."""
    _make_data(sub)
    _inspect_clip(sub)
