"""``prepare``: from a dataset as downloaded (DFEW, MAFW, CREMA-D, RAVDESS) to what training reads.

For every clip of the official fold files (CREMA-D, RAVDESS: every clip of the layout; CREMA-D's
own 16 kHz ``AudioWAV/`` is linked, not remade): the audio track as a 16 kHz mono 16-bit wav (read
back and checked: rate, channels, duration against the video), and with ``--faces mtcnn`` the
face crops as numbered frames: MTCNN (facenet-pytorch) on every frame, the most confident
face; frames without a detection take the box of the nearest frame with one; the boxes are
smoothed over time (moving average of centre and size), made square with a margin and cropped
(zero padding outside the picture), then resized. A clip with no face in any frame gets a
centred square crop and is reported. The fold files are copied and the raw clips (and DFEW's
shipped face frames) linked, so the output folder is a complete ``data.root``.

With ``--pack`` it then writes the packed store (``<out>/packed``, :mod:`mma_dfer.data.pack`)
from what training would read: DFEW's shipped face JPEGs or MAFW's MTCNN crops as they are,
else the clips' decoded frames encoded once (``--pack-quality``), with each clip's fbank.

Resumable: each finished clip has a marker recording its source's size and mtime; a rerun
skips those, and an output not made by this tool for the same source is never overwritten
without ``--force`` (the packed store resumes from its journal the same way). Parallel over
clips (``--workers``), with a progress bar and a summary; failures are listed in
``prepare_failed.txt``.

At cluster size, ``--shard I/N`` does the clips ``I, I + N, I + 2N, ...`` of the sorted clip
list (one task of ``slurm/prepare.sh``'s array each): its summary goes to
``.prepare/piece-I-of-N.json`` and its store to ``packed/parts/I-of-N/``; ``--merge N`` then
joins the N pieces into the summary and the store one run would have written (one index over
the pieces' shards; the clips' bytes are those one run packs). ``--device cuda`` runs MTCNN on
the GPU in batches of ``DETECT_BATCH_CUDA`` frames.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import wave
from dataclasses import asdict, dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mma_dfer import datasets
from mma_dfer.config import DataConfig
from mma_dfer.data import audio as A
from mma_dfer.data import pack as P
from mma_dfer.data import video as V
from mma_dfer.data.annotations import LAYOUTS, make_sample, official_split_file, read_split
from mma_dfer.datasets import layouts
from mma_dfer.data.cache import CACHE_MIN_SIZE, source_stamp
from mma_dfer.data.dataset import ClipDataset
from mma_dfer.data.faces import detect_boxes, face_squares, square_crop
from mma_dfer.data.pack import clip_entry
from mma_dfer.data.prepare_args import FACE_MARGIN, FACE_SIZE, FACE_SMOOTH, JPEG_QUALITY, PACK_QUALITY, SAMPLE_RATE
from mma_dfer.data.video import ClipError
from mma_dfer.utils import atomic_write_bytes, atomic_write_json, atomic_write_text, one_thread_per_process

MARKERS = ".prepare"


@dataclass
class ClipJob:
    clip_id: str
    video: str
    wav: Optional[str]  # None: the dataset ships its 16 kHz wavs (CREMA-D's AudioWAV/)
    faces: Optional[str]  # output folder, or None for --faces none
    marker: str
    force: bool = False
    margin: float = FACE_MARGIN
    size: int = FACE_SIZE
    smooth: int = FACE_SMOOTH
    device: str = "cpu"


@dataclass
class ClipReport:
    clip_id: str
    status: str  # done | skipped | failed
    reason: str = ""
    no_face: bool = False
    no_audio: bool = False
    detected: int = 0
    frames: int = 0
    notes: list = field(default_factory=list)


# -- audio ---------------------------------------------------------------------------------

def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def check_wav(path: Path, expected_seconds: float) -> str:
    """'' if the wav is 16 kHz mono 16-bit and as long as the video (±0.5 s or 10%), else why not."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
    if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
        return f"wav is {rate} Hz, {channels} channels, {8 * width} bit (expected 16000 Hz mono 16 bit)"
    seconds = n / rate
    if abs(seconds - expected_seconds) > max(0.5, 0.1 * expected_seconds):
        return f"audio lasts {seconds:.2f} s but the video {expected_seconds:.2f} s"
    return ""


# -- faces ---------------------------------------------------------------------------------

def crop_faces(frames: np.ndarray, job: ClipJob) -> tuple[np.ndarray, int, bool, list]:
    """(crops, frames with a detection, no face at all, per-frame squares [cx, cy, side])."""
    boxes = detect_boxes(frames, device=job.device)
    detected = sum(b is not None for b in boxes)
    squares = face_squares(boxes, *frames.shape[1:3], job.margin, job.smooth)
    crops = np.stack([square_crop(f, cx, cy, side, job.size) for f, (cx, cy, side) in zip(frames, squares)])
    return crops, detected, detected == 0, squares


def write_frames(folder: Path, crops: np.ndarray) -> None:
    """Numbered JPEGs (00000.jpg, ...) written to a temporary folder, then renamed into place."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for k, img in enumerate(crops):
        Image.fromarray(img).save(tmp / f"{k:05d}.jpg", quality=JPEG_QUALITY)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


# -- one clip ------------------------------------------------------------------------------

def process_clip(job: ClipJob) -> ClipReport:
    torch.set_num_threads(1)
    video, marker = Path(job.video), Path(job.marker)
    wav = Path(job.wav) if job.wav else None
    rep = ClipReport(job.clip_id, "done")
    squares = None
    try:
        stamp = source_stamp([video])
        if not stamp:
            raise ClipError(video, "video file not found")
        if marker.is_file() and not job.force:
            old = json.loads(marker.read_text())
            if old.get("status") == "done" and old.get("sources") == stamp and (not old.get("wav") or wav is None or wav.is_file()) \
                    and (job.faces is None or Path(job.faces).is_dir()):
                return ClipReport(job.clip_id, "skipped", "already prepared", old.get("no_face", False),
                                  old.get("no_audio", False), old.get("detected", 0), old.get("frames", 0))
            # else: our own unfinished or outdated work on this clip, redone below
        elif not job.force and ((wav and wav.exists()) or (job.faces and Path(job.faces).exists())):
            return ClipReport(job.clip_id, "skipped", "outputs exist that this tool did not make; use --force")
        atomic_write_json(marker, {"status": "started", "sources": stamp})
        vr = V.open_video(video)
        fps = float(vr.get_avg_fps()) or 25.0
        rep.frames = len(vr)
        try:
            if wav is not None:
                samples = A.read_waveform(video, SAMPLE_RATE)
                write_wav(wav, samples)
                problem = check_wav(wav, len(vr) / fps)
                if problem:
                    raise ClipError(wav, problem)
        except A.NoAudioError:
            rep.no_audio = True
        if job.faces:
            frames = V.read_video_frames(vr, video, np.arange(len(vr)))
            crops, rep.detected, rep.no_face, squares = crop_faces(frames, job)
            write_frames(Path(job.faces), crops)
        atomic_write_json(marker, {"status": "done", "sources": stamp, "wav": not rep.no_audio, "faces": job.faces,
                                   "no_face": rep.no_face, "no_audio": rep.no_audio, "detected": rep.detected,
                                   "frames": rep.frames, "squares": squares})
    except ClipError as e:
        return ClipReport(job.clip_id, "failed", str(e))
    except Exception as e:  # one broken clip must not stop a 10,000-clip preparation
        return ClipReport(job.clip_id, "failed", f"{video}: {type(e).__name__}: {e}")
    return rep


# -- the whole dataset ---------------------------------------------------------------------

def _all_samples(dataset: str, raw: Path) -> tuple[list, list[Path]]:
    """Every clip of the official fold files (train and test of every fold), and those files; for
    a dataset with generated folds (CREMA-D, RAVDESS) every clip its layout holds (every vocal
    channel of RAVDESS; a file name that does not parse is an error naming it) and the folds
    already generated under ``raw/splits``."""
    info = datasets.get(dataset)
    if info.splits == "generated":
        vocal = "both" if dataset == "ravdess" else "speech"
        items, _ = layouts.scan(dataset, raw, vocal)
        made = sorted(p for p in (raw / "splits").rglob("*.csv")) if (raw / "splits").is_dir() else []
        return [make_sample(dataset, raw, c, label) for c, label, _ in items], made
    seen, files = {}, []
    for fold in range(1, info.folds + 1):
        for split in ("train", "test"):
            path = official_split_file(dataset, raw, fold, split)
            if not path.is_file():
                continue
            files.append(path)
            for s in read_split(DataConfig(dataset=dataset, root=str(raw), fold=fold), split):
                seen.setdefault(s.clip_id, s)
    if not files:
        raise FileNotFoundError(f"no official fold files under {raw} (expected e.g. "
                                f"{official_split_file(dataset, raw, 1, 'train')})")
    return list(seen.values()), files


def _link_into(out: Path, raw: Path, rel: str) -> None:
    src, dst = raw / rel, out / rel
    if src.exists() and not dst.exists() and src.resolve() != dst.resolve():
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            dst.symlink_to(src.resolve(), target_is_directory=True)
        except FileExistsError:  # another --shard piece made it meanwhile
            pass


def training_source(dataset: str, faces: str) -> str:
    """What training reads after this preparation: face frames (DFEW's shipped ones, or the
    MTCNN crops) or, for MAFW without crops, the clips."""
    return "frames" if faces == "mtcnn" or datasets.get(dataset).faces == "shipped" else "video"


@dataclass
class PackOptions:
    """``--pack``: the JPEG quality of frames it encodes, the shard size, the fbank's settings."""

    quality: int = PACK_QUALITY
    shard_bytes: int = 1 << 30
    sample_rate: int = 16000
    mel_bins: int = 128


def piece_of(samples: list, piece: Optional[tuple[int, int]]) -> list:
    """The clips of ``--shard I/N``: every N-th of the clips sorted by id, from the I-th (each
    piece gets clips from the whole range: similar lengths, similar work)."""
    ordered = sorted(samples, key=lambda s: s.clip_id)
    return ordered if piece is None else ordered[piece[0]::piece[1]]


def piece_name(piece: tuple[int, int]) -> str:
    return f"{piece[0]}-of-{piece[1]}"


def prepare(dataset: str, raw: str | Path, out: str | Path, workers: int = 1, faces: str = "none",
            force: bool = False, cache_resolutions: tuple = (), margin: float = FACE_MARGIN, progress: bool = True,
            pack: Optional[PackOptions] = None, piece: Optional[tuple[int, int]] = None, device: str = "cpu") -> dict:
    raw, out = Path(raw).resolve(), Path(out).resolve()
    samples, split_files = _all_samples(dataset, raw)
    layout = LAYOUTS[dataset]
    ships_wavs = dataset == "cremad"  # AudioWAV/: 16 kHz mono as distributed
    for f in split_files:  # the fold lists, in place for data.root=out (atomic: pieces copy them at once)
        dst = out / f.relative_to(raw)
        if dst.resolve() != f.resolve():
            atomic_write_bytes(dst, f.read_bytes())
    for rel in ([layout["video"]] if layout["video"] else sorted(p.name for p in raw.glob("Actor_*"))):
        _link_into(out, raw, rel)
    if ships_wavs:
        _link_into(out, raw, layout["wav"])
    if faces == "none":
        _link_into(out, raw, layout["frames"])  # DFEW's shipped face frames
    samples = piece_of(samples, piece)
    jobs = [ClipJob(clip_id=s.clip_id, video=str(s.video),
                    wav=None if ships_wavs else str(out / layout["wav"] / f"{s.clip_id}.wav"),
                    faces=str(out / layout["frames"] / s.clip_id) if faces == "mtcnn" else None,
                    marker=str(out / MARKERS / f"{s.clip_id}.json"), force=force, margin=margin, device=device)
            for s in samples]
    desc = f"prepare {dataset}" + (f" {piece_name(piece)}" if piece else "")
    reports: list[ClipReport] = list(_map(process_clip, jobs, workers, progress, desc, ordered=False))
    extra = {}
    if cache_resolutions:
        extra["cached"] = fill_cache(dataset, out, samples, faces, workers)
    if pack is not None:
        store = out / "packed" / ("parts/" + piece_name(piece) if piece else "")
        extra.update(pack_clips(dataset, out, samples, faces, workers, pack, store, force, progress))
    if piece is not None:
        atomic_write_json(out / MARKERS / f"piece-{piece_name(piece)}.json",
                          {"piece": list(piece), "reports": [asdict(r) for r in reports], **extra})
        return summary_of(reports, extra)
    return write_summary(out, reports, extra)


def _map(fn, jobs: list, workers: int, progress: bool, desc: str, ordered: bool = True):
    """``fn`` over ``jobs`` in ``workers`` spawned processes (one compute thread each), in order
    or as finished, with a progress bar."""
    bar = None
    if progress:
        bar = tqdm(total=len(jobs), desc=desc, dynamic_ncols=True)
    try:
        if workers > 1 and len(jobs) > 1:
            with get_context("spawn").Pool(workers, initializer=one_thread_per_process) as pool:
                for result in (pool.imap if ordered else pool.imap_unordered)(fn, jobs):
                    yield result
                    if bar:
                        bar.update(1)
        else:
            for job in jobs:
                yield fn(job)
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()


def summary_of(reports: list[ClipReport], extra: dict) -> dict:
    by = {k: sorted(r.clip_id for r in reports if r.status == k) for k in ("done", "skipped", "failed")}
    failed = sorted((r for r in reports if r.status == "failed"), key=lambda r: r.clip_id)
    return {"clips": len(reports), **{k: len(v) for k, v in by.items()},
            "no_face": sorted(r.clip_id for r in reports if r.no_face),
            "no_audio": sorted(r.clip_id for r in reports if r.no_audio),
            "failed_list": [asdict(r) for r in failed], **extra}


def write_summary(out: Path, reports: list[ClipReport], extra: dict) -> dict:
    """``prepare_summary.json`` and the lists of failed clips (those ``--pack`` could not pack
    with a "pack: " reason), clips without a face, without audio."""
    summary = summary_of(reports, extra)
    failed = [(r["clip_id"], r["reason"]) for r in summary["failed_list"]]
    failed += [(clip_id, f"pack: {reason}") for clip_id, reason in summary.get("pack_failed", [])]
    atomic_write_text(out / "prepare_failed.txt", "".join(f"{c}\t{why}\n" for c, why in sorted(failed)))
    atomic_write_text(out / "prepare_no_face.txt", "".join(f"{c}\n" for c in summary["no_face"]))
    atomic_write_text(out / "prepare_no_audio.txt", "".join(f"{c}\n" for c in summary["no_audio"]))
    atomic_write_json(out / "prepare_summary.json", summary)
    return summary


def merge_pieces(out: str | Path, n: int) -> dict:
    """After the N ``--shard I/N`` pieces: the summary, the lists and the packed store's index
    one run would have written. A missing or foreign piece is an error naming it."""
    out = Path(out).resolve()
    files = [out / MARKERS / f"piece-{piece_name((i, n))}.json" for i in range(n)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {n} pieces have not finished (no summary): {', '.join(missing)}")
    pieces = [json.loads(f.read_text()) for f in files]
    for i, (f, p) in enumerate(zip(files, pieces)):
        if p.get("piece") != [i, n]:
            raise FileNotFoundError(f"{f}: the summary of piece {p.get('piece')}, not of {i}/{n}")
    reports = [ClipReport(**r) for p in pieces for r in p["reports"]]
    extra = {}
    if all("cached" in p for p in pieces):
        extra["cached"] = sum(p["cached"] for p in pieces)
    if all("packed" in p for p in pieces):
        P.merge(out / "packed", [out / "packed/parts" / piece_name((i, n)) for i in range(n)])
        extra["packed"] = sum(p["packed"] for p in pieces)
        extra["pack_reused"] = sum(p["pack_reused"] for p in pieces)
        extra["pack_failed"] = sorted(x for p in pieces for x in p["pack_failed"])
    elif any("packed" in p for p in pieces):
        raise FileNotFoundError(f"some pieces were packed (--pack) and some not: {[f.name for f, p in zip(files, pieces) if 'packed' not in p]} were not")
    return write_summary(out, reports, extra)


def pack_clips(dataset: str, out: Path, samples, faces: str, workers: int, opts: PackOptions, store: Path,
               force: bool = False, progress: bool = True) -> dict:
    """Pack the prepared clips ``samples`` into the store folder ``store`` (see
    :mod:`mma_dfer.data.pack`): clips packed before from the same sources are kept, the others
    made in ``workers`` processes and appended in clip order (the same shards whatever the
    workers). Returns ``packed`` (how many of ``samples`` the index holds) and ``pack_failed``."""
    source = training_source(dataset, faces)
    settings = P.pack_settings(dataset, "files" if source == "frames" else "video", opts.quality, CACHE_MIN_SIZE,
                               opts.sample_rate, opts.mel_bins)
    cfg = DataConfig(dataset=dataset, root=str(out), source=source, sample_rate=opts.sample_rate, mel_bins=opts.mel_bins)
    writer = P.PackWriter(store, settings, opts.shard_bytes, force)
    jobs = []
    for s in sorted(samples, key=lambda s: s.clip_id):
        sample = make_sample(dataset, out, s.clip_id, s.label)
        frames, audio = sample.video if source == "video" else sample.frames, sample.wav if sample.wav.is_file() else sample.video
        if not writer.has(s.clip_id, source_stamp([frames, audio])):
            jobs.append((s.clip_id, str(frames), str(audio), settings, cfg))
    failed = []
    try:
        for result in _map(_pack_one, jobs, workers, progress, f"pack {dataset}"):
            if isinstance(result, P.PackEntry):
                writer.add(result)
            else:
                writer.forget(result[0])  # never an older copy of a clip that no longer packs
                failed.append(list(result))
        index = writer.finish()
    finally:
        writer.close()
    return {"packed": sum(s.clip_id in index["clips"] for s in samples), "pack_reused": len(samples) - len(jobs),
            "pack_failed": sorted(failed)}


def _pack_one(job: tuple):
    """A :class:`~mma_dfer.data.pack.PackEntry`, or (clip id, why it cannot be packed)."""
    clip_id, frames, audio, settings, cfg = job
    try:
        return clip_entry(clip_id, Path(frames), Path(audio), settings, cfg)
    except ClipError as e:
        return clip_id, str(e)
    except Exception as e:  # one broken clip must not stop the pack
        return clip_id, f"{frames}: {type(e).__name__}: {e}"


def fill_cache(dataset: str, out: Path, samples, faces: str, workers: int = 1) -> int:
    """Decode every prepared clip once into the cache (``<out>/cache``), in ``workers``
    processes; returns the count. The cache holds 224-px frames, which serve every resolution up
    to 224 (its entries are written under temporary names and renamed: workers never collide).
    It goes through the training loader's own code (``ClipDataset.from_cache``), so its entries
    have the keys a training run with the default audio settings looks for; a clip without audio
    is recorded as such (not as silence), and a run with ``data.audio_policy: error`` fails on it."""
    cfg = DataConfig(dataset=dataset, root=str(out), source=training_source(dataset, faces),
                     cache_dir=str(out / "cache"), audio_policy="silence")
    ds = ClipDataset([make_sample(dataset, out, s.clip_id, s.label) for s in samples], cfg, train=False)
    if workers > 1:
        with get_context("fork").Pool(workers, initializer=one_thread_per_process) as pool:
            return sum(pool.map(partial(_cache_one, ds), range(len(ds.samples)), chunksize=8))
    return sum(_cache_one(ds, i) for i in range(len(ds.samples)))


def _cache_one(ds, index: int) -> int:
    try:
        ds.from_cache(ds.samples[index])
        return 1
    except ClipError:
        return 0


def parse_piece(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} is not of the form I/N (e.g. 0/8)") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: I must be 0..N-1")
    return i, n


def run(args) -> int:
    res = tuple(int(r) for r in args.resolution_cache.split(",") if r) if args.resolution_cache else ()
    pack = PackOptions(args.pack_quality, int(args.pack_shard_mb * 2**20), args.sample_rate, args.mel_bins) \
        if args.pack else None
    try:
        if args.merge and args.shard:
            raise ValueError("--shard I/N prepares one piece, --merge N joins them afterwards: one or the other")
        if args.merge:
            s = merge_pieces(args.out, args.merge)
        else:
            piece = parse_piece(args.shard) if args.shard else None
            s = prepare(args.dataset, args.raw, args.out, args.workers, args.faces, args.force, res, args.margin,
                        pack=pack, piece=piece, device=args.device)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = f"piece {args.shard} of " if args.shard else ("merged pieces of " if args.merge else "")
    print(f"prepare {what}{args.dataset}: {s['clips']} clips: {s['done']} done, {s['skipped']} skipped, "
          f"{s['failed']} failed; {len(s['no_face'])} without a face (centre crop used), "
          f"{len(s['no_audio'])} without audio" + (f"; {s['cached']} cached in {args.out}/cache" if "cached" in s else "")
          + (f"; {s['packed']} packed into {args.out}/packed ({s['pack_reused']} kept from an earlier pack, "
             f"{len(s['pack_failed'])} could not be packed)" if "packed" in s else ""))
    if s["failed"] or s.get("pack_failed"):
        print(f"failed clips are listed in {Path(args.out) / 'prepare_failed.txt'}" if not args.shard else
              "failed clips are listed in the merged summary (--merge)")
    if not args.shard:
        print(f"use data.root={Path(args.out).resolve()}" + (" with data.source=packed" if "packed" in s else ""))
    return 1 if s["failed"] or s.get("pack_failed") else 0
