"""``inspect-clip``: one clip through exactly the test-time pipeline, printed (and drawn)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mma_dfer.config import load_config
from mma_dfer.data import video as V
from mma_dfer.data.annotations import Sample
from mma_dfer.data.dataset import ClipDataset
from mma_dfer.data.video import ClipError


def clip_dataset(file: Path, resolution: int, audio_policy: str, clips: int, wav: Path | None) -> ClipDataset:
    """A one-sample test dataset for ``file`` (an mp4, or a frame folder with ``wav``)."""
    source = "frames" if file.is_dir() else "video"
    cfg = load_config(None, [f"data.resolution={resolution}", f"data.audio_policy={audio_policy}",
                             f"data.source={source}"]).data
    audio = wav if wav is not None else (file if source == "video" else file / "missing.wav")
    sample = Sample(clip_id=file.stem, label=0, video=file if source == "video" else audio,
                    frames=file, wav=audio)
    ds = ClipDataset([sample], cfg, train=False, clips=clips)
    ds.audio_policy_hint = "pass --audio-policy silence to use silence"
    return ds


def frame_count(ds: ClipDataset) -> int:
    sample = ds.samples[0]
    if ds.cfg.source == "video":
        return len(V.open_video(sample.video))
    return len(V.list_frames(sample.frames))


def write_png(path: Path, video: torch.Tensor, audio: torch.Tensor) -> None:
    """The frames in a row per clip and the fbank below them, as the model sees them."""
    video = video if video.dim() == 5 else video[None]
    audio = audio if audio.dim() == 4 else audio[None]
    rows = []
    for clip, fb in zip(video, audio):
        strip = (clip.clamp(0, 1) * 255).byte().permute(2, 0, 3, 1).reshape(clip.shape[-2], -1, 3).numpy()
        spec = fb[0].T.flip(0).numpy()  # (bins, frames), low frequencies at the bottom
        spec = ((spec - spec.min()) / max(spec.max() - spec.min(), 1e-6) * 255).astype(np.uint8)
        spec = np.asarray(Image.fromarray(spec).resize((strip.shape[1], 128)))
        rows += [strip, np.repeat(spec[..., None], 3, axis=2)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def run(args) -> int:
    file = Path(args.file)
    if file.is_dir() and not args.audio and args.audio_policy == "error":
        print(f"error: {file}: a frame folder needs --audio WAV (or --audio-policy silence)", file=sys.stderr)
        return 2
    try:
        ds = clip_dataset(file, args.resolution, args.audio_policy, args.clips, Path(args.audio) if args.audio else None)
        n = frame_count(ds)
        item = ds[0]
    except ClipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for c in range(args.clips):
        print(f"clip {c}: frame indices {V.test_indices(n, ds.cfg.num_frames, c, args.clips).tolist()} (of {n})")
    v, a = item["video"], item["audio"]
    print(f"video: shape {tuple(v.shape)} dtype {v.dtype} min {v.min().item():.4f} max {v.max().item():.4f}")
    print(f"fbank: shape {tuple(a.shape)} mean {a.mean().item():.4f} std {a.std().item():.4f}"
          + (" (silence: no audio stream)" if item["silent"] else ""))
    if args.png:
        write_png(Path(args.png), v, a)
        print(f"wrote {args.png}")
    return 0
