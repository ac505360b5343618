"""A small learnable dataset in the real DFEW and MAFW layouts, with real media files.

Neither dataset can be downloaded without a licence, so tests, the demo and CI run on clips
this module writes: H.264 mp4 files with an AAC audio track (44.1 kHz stereo, as web video
usually is, so the loader's resampling and down-mixing are exercised), the numbered frame
folders the datasets ship, and the official 5-fold split files. Each class has its own
visual pattern (colour and motion of a face-like blob) and its own audio tone, so a model can
learn it from either modality.

Layouts written (``<root>`` is what ``data.root`` points at):

* DFEW: ``Clip/original/{id:05d}.mp4``, ``Clip/clip_224x224/{id:05d}/{id:05d}_{k:05d}.jpg``
  (k from 1), ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv``
  (``video_name,label`` with labels 1-7).
* MAFW: ``data/clips/{id:05d}.mp4``, ``data/faces/{id:05d}/{k}.png`` (k from 0, so a
  lexicographic sort would put 10.png before 2.png), ``split/single/no_caption/set_{1..5}/
  {train,test}.txt`` (``{id:05d}.mp4 <class name>``).
* CREMA-D: ``VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv`` (H.264/AAC in FLV), its
  ``AudioWAV/<same>.wav`` (16 kHz mono, as CREMA-D ships them) and ``faces/<same>/{k}.png``
  (what ``prepare --faces mtcnn`` makes); no split files (its folds are generated).
* RAVDESS: ``Actor_NN/01-01-EE-01-SS-RR-NN.mp4`` (audio-video speech clips) and
  ``faces/<same>/{k}.png``; no split files.

CREMA-D and RAVDESS clips are spread over 10 actors (clip k of a class is actor k % 10's), so
that speaker-independent folds can be generated from them.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import wave
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from mma_dfer.datasets import get as dataset_info
from mma_dfer.datasets.layouts import CREMAD_EMOTIONS
from mma_dfer.labels import CLASS_NAMES

FPS = 25
AUDIO_RATE = 44100


def _class_style(label: int, num_classes: int) -> dict:
    hue = label / num_classes
    rgb = np.array([0.5 + 0.5 * math.cos(2 * math.pi * (hue + k / 3)) for k in range(3)])
    return {"rgb": (rgb * 200 + 40).astype(np.float32), "tone": 220.0 * 2 ** (label / 2.5),
            "speed": 0.5 + 1.5 * label / num_classes}


def render_frames(label: int, num_classes: int, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(T, size, size, 3) uint8: a bright ellipse ("face") with two dark "eyes" on a noisy
    background; its colour and the speed of its motion identify the class."""
    style = _class_style(label, num_classes)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    phase = rng.uniform(0, 2 * math.pi)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        cx = 0.5 + 0.18 * math.cos(phase + style["speed"] * t / 4)
        cy = 0.5 + 0.12 * math.sin(phase + style["speed"] * t / 4)
        face = ((xx - cx) / 0.28) ** 2 + ((yy - cy) / 0.36) ** 2 < 1
        eyes = (((xx - cx + 0.1) ** 2 + (yy - cy + 0.08) ** 2) < 0.002) | (
            ((xx - cx - 0.1) ** 2 + (yy - cy + 0.08) ** 2) < 0.002)
        img = rng.normal(60, 12, (size, size, 3)).astype(np.float32)
        img[face] = style["rgb"] + rng.normal(0, 8, (int(face.sum()), 3))
        img[eyes] = 20
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def render_audio(label: int, num_classes: int, seconds: float, rng: np.random.Generator,
                 rate: int = AUDIO_RATE, channels: int = 2) -> np.ndarray:
    """(channels, samples) float32 in [-1, 1]: the class tone with a harmonic, plus noise."""
    f0 = _class_style(label, num_classes)["tone"]
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    wave = 0.4 * np.sin(2 * np.pi * f0 * t) + 0.15 * np.sin(2 * np.pi * 2 * f0 * t)
    wave = wave * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, 6)))
    wave = wave + rng.normal(0, 0.02, wave.shape)
    return np.repeat(wave[None].astype(np.float32), channels, axis=0)


def write_mp4(path: Path, frames: np.ndarray, audio=None, fps: int = FPS, audio_rate: int = AUDIO_RATE) -> Path:
    """Encode frames as H.264 (yuv420p) and, if given, ``audio`` (channels, samples) as AAC."""
    import av  # lazy: mma-dfer --help imports this module for make-data's flags; PyAV loads FFmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "18", "preset": "ultrafast"}
        streams = [vs]
        if audio is not None:
            layout = "stereo" if audio.shape[0] == 2 else "mono"
            aus = out.add_stream("aac", rate=audio_rate, layout=layout)
            streams.append(aus)
        for img in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        if audio is not None:
            chunk = 1024
            for start in range(0, audio.shape[1], chunk):
                block = np.ascontiguousarray(audio[:, start:start + chunk])
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
                frame.sample_rate = audio_rate
                frame.pts = start
                frame.time_base = Fraction(1, audio_rate)
                for packet in aus.encode(frame):
                    out.mux(packet)
        for s in streams:
            for packet in s.encode(None):
                out.mux(packet)
    return path


def _write_frames(folder: Path, frames: np.ndarray, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for img, name in zip(frames, names):
        Image.fromarray(img).save(folder / name)


def _fold_of(index_in_class: int, folds: int) -> int:
    return index_in_class % folds + 1


def _write_clip(root: Path, dataset: str, size: int, frame_range: tuple[int, int], job: tuple) -> None:
    """Render and write one clip (its mp4 and its frame folder) from its own seed."""
    clip_id, label, seed = job
    names = CLASS_NAMES[dataset]
    rng = np.random.default_rng(seed)
    n = int(rng.integers(frame_range[0], frame_range[1] + 1))
    frames = render_frames(label, len(names), n, size, rng)
    audio = render_audio(label, len(names), n / FPS, rng)
    cid = f"{clip_id:05d}"
    if dataset == "dfew":
        write_mp4(root / "Clip/original" / f"{cid}.mp4", frames, audio)
        _write_frames(root / "Clip/clip_224x224" / cid, frames, [f"{cid}_{i + 1:05d}.jpg" for i in range(n)])
    else:
        write_mp4(root / "data/clips" / f"{cid}.mp4", frames, audio)
        _write_frames(root / "data/faces" / cid, frames, [f"{i}.png" for i in range(n)])


ACTORS = 10  # the generated CREMA-D and RAVDESS datasets' speakers
CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")


def layout_name(dataset: str, label: int, k: int) -> str:
    """The real-layout name of the generated ``dataset``'s k-th clip of class ``label``."""
    actor, turn = k % ACTORS, k // ACTORS
    if dataset == "cremad":
        return f"{1001 + actor}_{CREMAD_SENTENCES[turn % 12]}_{CREMAD_EMOTIONS[label]}_XX"
    if turn >= 4:
        raise ValueError("a generated RAVDESS actor has 4 clips per emotion (2 statements x 2 repetitions)")
    return f"01-01-{label + 1:02d}-01-{turn % 2 + 1:02d}-{turn // 2 + 1:02d}-{actor + 1:02d}"


def _write_layout_clip(root: Path, dataset: str, size: int, frame_range: tuple[int, int], job: tuple) -> None:
    """Render and write one CREMA-D or RAVDESS clip (video, face frames, and CREMA-D's wav)."""
    name, label, seed = job
    num_classes = len(dataset_info(dataset).classes)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(frame_range[0], frame_range[1] + 1))
    frames = render_frames(label, num_classes, n, size, rng)
    if dataset == "cremad":
        write_mp4(root / "VideoFlash" / f"{name}.flv", frames, render_audio(label, num_classes, n / FPS, rng))
        pcm = render_audio(label, num_classes, n / FPS, rng, rate=16000, channels=1)[0]
        (root / "AudioWAV").mkdir(parents=True, exist_ok=True)
        with wave.open(str(root / "AudioWAV" / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    else:
        write_mp4(root / f"Actor_{name[-2:]}" / f"{name}.mp4", frames, render_audio(label, num_classes, n / FPS, rng))
    _write_frames(root / "faces" / name, frames, [f"{i}.png" for i in range(n)])


def _write_all(write, jobs: list, workers: int) -> None:
    """``write`` each job, in ``workers`` forked processes when more than one (each clip has its
    own seed, so the files are the same either way)."""
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(write, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
    else:
        for job in jobs:
            write(job)


def make_layout_dataset(dataset: str, out: str | Path, clips_per_class: int = 10, seed: int = 0, size: int = 64,
                        min_frames: int = 20, max_frames: int = 40, workers: int = 1) -> Path:
    """A generated CREMA-D or RAVDESS in its real layout (file names as the dataset names them)."""
    root = Path(out)
    rng = np.random.default_rng(seed)
    jobs = [(layout_name(dataset, label, k), label, int(rng.integers(2 ** 63)))
            for label in range(len(dataset_info(dataset).classes)) for k in range(clips_per_class)]
    write = partial(_write_layout_clip, root, dataset, size, (min_frames, max_frames))
    _write_all(write, jobs, workers)
    return root


def make_dataset(dataset: str, out: str | Path, clips_per_class: int = 10, seed: int = 0, size: int = 64,
                 min_frames: int = 20, max_frames: int = 40, workers: int = 1) -> Path:
    """Write a generated dataset in ``dataset``'s real layout under ``out``; returns the root.

    Clip k of each class belongs to the test set of fold ``k % K + 1`` (K: the dataset's folds) and
    the train set of the others, so every fold's test set has every class when ``clips_per_class >= K``.
    Each clip is rendered from its own seed (drawn from ``seed``), so ``workers`` processes
    write exactly the dataset one process writes. CREMA-D and RAVDESS: :func:`make_layout_dataset`."""
    if dataset in ("cremad", "ravdess"):
        return make_layout_dataset(dataset, out, clips_per_class, seed, size, min_frames, max_frames, workers)
    if dataset not in CLASS_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(CLASS_NAMES)}")
    root = Path(out)
    rng = np.random.default_rng(seed)
    names = CLASS_NAMES[dataset]
    jobs, rows = [], []  # (clip id, label, clip seed); (clip id, label, fold)
    for label in range(len(names)):
        for k in range(clips_per_class):
            clip_id = len(jobs) + 1
            jobs.append((clip_id, label, int(rng.integers(2 ** 63))))
            rows.append((clip_id, label, _fold_of(k, dataset_info(dataset).folds)))
    write = partial(_write_clip, root, dataset, size, (min_frames, max_frames))
    _write_all(write, jobs, workers)
    for fold in range(1, dataset_info(dataset).folds + 1):
        for split in ("train", "test"):
            chosen = [(c, lab) for c, lab, f in rows if (f == fold) == (split == "test")]
            if dataset == "dfew":
                path = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{fold}.csv"
                lines = ["video_name,label"] + [f"{c},{lab + 1}" for c, lab in chosen]
            else:
                path = root / "split/single/no_caption" / f"set_{fold}" / f"{split}.txt"
                lines = [f"{c:05d}.mp4 {names[lab]}" for c, lab in chosen]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
    return root


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mma-dfer make-data", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=sorted(CLASS_NAMES), required=True, help="which layout and classes")
    p.add_argument("--out", required=True, help="folder to write the dataset into")
    p.add_argument("--clips-per-class", type=int, default=10,
                   help="clips of each class (at least 5: every fold's test set gets one of each)")
    p.add_argument("--seed", type=int, default=0, help="the same seed writes the same clips")
    p.add_argument("--size", type=int, default=64, help="frame width/height in pixels")
    p.add_argument("--workers", type=int, default=1, help="processes writing clips (the output is the same)")


def run(args) -> int:
    info = dataset_info(args.dataset)
    root = make_dataset(args.dataset, args.out, args.clips_per_class, args.seed, args.size, workers=args.workers)
    empty = empty_test_folds(args.clips_per_class, info.folds) if info.splits == "official" else []
    if empty:
        print(f"warning: --clips-per-class {args.clips_per_class}: the test sets of fold(s) "
              f"{', '.join(map(str, empty))} are empty (clip k of each class is in fold k % {info.folds} + 1's test "
              f"set); use --clips-per-class {info.folds} or more to train and test on every fold", file=sys.stderr)
    print(f"wrote a generated {info.title} dataset; use data.root={root.resolve()}")
    return 0


def empty_test_folds(clips_per_class: int, folds: int = 5) -> list[int]:
    """The folds whose test set :func:`make_dataset` leaves empty (fewer clips per class than folds)."""
    return [fold for fold in range(1, folds + 1) if fold > clips_per_class]


if __name__ == "__main__":
    raise SystemExit(main())
