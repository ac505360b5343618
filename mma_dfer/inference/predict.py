"""``predict``: a trained MMA-DFER on new videos, from the raw file to class probabilities.

Each video goes through the test-time pipeline of evaluation (``evaluation_inputs``): faces
found and cropped by ``prepare``'s own code (:mod:`mma_dfer.data.faces`: MTCNN on every frame, the smoothed
track, the square crop stored as JPEG and read back, as the training frames were), the audio track as a
16 kHz mono fbank, uniform 1- or 2-clip sampling at the checkpoint's resolution and frame
counts. A long video is cut into windows (``--window``/``--stride``), each sampled like a
clip of its own with its own audio. Videos are decoded in a stream (``--workers`` processes)
and their clips forwarded in batches on the GPU when there is one. A bad file is reported
and the others are still predicted.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
import decord  # after torch: the order the modules were always loaded in
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from mma_dfer.data import audio as A
from mma_dfer.data import faces as F
from mma_dfer.data import video as V
from mma_dfer.data.dataset import evaluation_inputs, read_fbank
from mma_dfer.data.prepare_args import DETECT_BATCH, FACE_MARGIN
from mma_dfer.data.video import ClipError
from mma_dfer.datasets import class_names as dataset_classes
from mma_dfer.inference.evaluate import clip_probabilities
from mma_dfer.inference.precision import apply_precision
from mma_dfer.inference.records import probability_record, write_csv
from mma_dfer.inference.restore import load_model
from mma_dfer.inference.export import ExportError
from mma_dfer.inference.runtimes import build_runtime, check_runtime_arguments
from mma_dfer.inference.stream import check_stream_arguments, follow
from mma_dfer.inference.timeline import MIN_FACE_SHARE, NEAR_CHANCE, faceless, near_chance, plot_timeline
from mma_dfer.precision import is_float16, precision_for
from mma_dfer.utils import atomic_write_json

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}


@dataclass
class PredictOptions:
    faces: str = "mtcnn"  # "mtcnn" (prepare's face crops) or "none" (the frames are face crops)
    clips: int = 1
    window: Optional[float] = None  # seconds; None: the whole video is one clip
    stride: Optional[float] = None  # seconds between window starts (default: the window)
    margin: float = FACE_MARGIN


@dataclass
class VideoResult:
    file: str
    windows: list = field(default_factory=list)  # records (see probability_record), in time order
    error: Optional[str] = None


# -- inputs --------------------------------------------------------------------------------

def collect_videos(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files as given (whatever their name) and the videos under folders (recursively, by
    extension, sorted); a folder without any video is a problem of its own."""
    files, problems, seen = [], [], set()
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTS
                           and not any(part.startswith(".") for part in f.relative_to(path).parts))
            if not found:
                problems.append(f"{path}: no video files in this folder ({', '.join(sorted(VIDEO_EXTS))})")
        else:
            found = [path]
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                files.append(f)
    return files, problems


def window_spans(n: int, fps: float, window: Optional[float], stride: Optional[float]) -> list[tuple[int, int]]:
    """Frame ranges [a, b): the whole video, or windows of ``window`` seconds every ``stride``
    seconds, the last one moved to end with the video so that the tail is covered. A video
    shorter than one window is one window."""
    if window is None:
        return [(0, n)]
    w = max(1, round(window * fps))
    s = max(1, round((stride or window) * fps))
    if n <= w:
        return [(0, n)]
    starts = list(range(0, n - w + 1, s))
    if starts[-1] + w < n:
        starts.append(n - w)
    return [(a, a + w) for a in starts]


def fbank_span(fb: Optional[torch.Tensor], a: int, b: int, n: int) -> Optional[torch.Tensor]:
    """The fbank rows of frames [a, b) of ``n`` (frames mapped onto the fbank's time axis as
    the dataset maps a clip's first sampled frame): a window's own audio."""
    if fb is None:
        return None
    return fb[int(a / n * fb.shape[0]):int(b / n * fb.shape[0])]


def detect_faces(vr, path: Path) -> tuple[list, tuple[int, int]]:
    """``prepare``'s per-frame MTCNN boxes of the whole video, decoded in chunks (a long video
    never sits in memory) of whole detector batches (the same batches as ``prepare``)."""
    boxes, shape, chunk = [], None, 4 * DETECT_BATCH
    for start in range(0, len(vr), chunk):
        frames = V.read_video_frames(vr, path, np.arange(start, min(start + chunk, len(vr))))
        shape = frames.shape[1:3]
        boxes += F.detect_boxes(frames)
    return boxes, shape


def face_reader(read, squares: list):
    """A frame reader that returns ``prepare``'s face crops of the frames it is asked for."""
    def read_faces(idx: np.ndarray) -> np.ndarray:
        return F.stored_crops(read(idx), [squares[i] for i in idx])

    return read_faces


def check_is_video(path: Path) -> None:
    """A ClipError unless ``path`` is a container with a video stream (a text file, an image or
    an audio file is named as what it is not, before a decoder reports it as something else)."""
    import av  # lazy: PyAV is imported by the file check only (a stream imports it in its reader)

    if not path.is_file():
        return  # the decoder names it ("video file not found")
    try:
        with av.open(str(path)) as container:
            has_video = bool(container.streams.video)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        raise ClipError(path, "not a video file (no container a decoder can read)") from None
    if not has_video:
        raise ClipError(path, "not a video file (no video stream)")


def video_inputs(path: Path, cfg, opts: PredictOptions) -> Iterator[dict]:
    """The model inputs of one video: one dict per window (the whole video without
    ``--window``) with its times, tensors, and how much of it had a face and audio."""
    check_is_video(path)
    vr = V.open_video(path)
    n, fps = len(vr), float(vr.get_avg_fps()) or 25.0
    try:
        fb = read_fbank(path, cfg)
    except A.NoAudioError as e:
        raise ClipError(e.path, f"{e.reason} (--audio-policy silence predicts it with silent audio)") from None
    read = lambda idx: V.read_video_frames(vr, path, idx)  # noqa: E731
    found = None
    if opts.faces == "mtcnn":
        boxes, (h, w) = detect_faces(vr, path)
        found = np.array([b is not None for b in boxes])
        if not found.any():
            raise ClipError(path, "no face found in any frame (--faces none if the frames are face crops)")
        read = face_reader(read, F.face_squares(boxes, h, w, opts.margin))
    for k, (a, b) in enumerate(window_spans(n, fps, opts.window, opts.stride)):
        video, audio = evaluation_inputs(b - a, lambda idx: read(idx + a), fbank_span(fb, a, b, n), cfg, opts.clips)
        yield {"window": k, "start": a / fps, "end": b / fps, "video": video, "audio": audio,
               "silent": fb is None, "faces": None if found is None else float(found[a:b].mean())}


class VideoStream(IterableDataset):
    """Every video's windows, then a ``done`` item (with the error that stopped it, if any).
    Loader workers take every k-th video."""

    def __init__(self, files: list[Path], cfg, opts: PredictOptions):
        self.files, self.cfg, self.opts = files, cfg, opts

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for i in range(worker, len(self.files), workers):
            error = None
            try:
                for item in video_inputs(self.files[i], self.cfg, self.opts):
                    yield {"file": i, **item}
            except ClipError as e:
                error = str(e)
            except Exception as e:  # one broken video must not stop a folder of them
                error = f"{self.files[i]}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            yield {"file": i, "done": True, "error": error}


# -- the model over the stream ---------------------------------------------------------------

@torch.no_grad()
def predict_videos(model, cfg, files: list[Path], class_names: list[str], opts: PredictOptions,
                   batch_size: int = 8, device="cpu", dtype=torch.float32, workers: int = 0,
                   progress: bool = False) -> list[VideoResult]:
    """Predict every file; clips of consecutive windows and videos share batches. A failure is
    printed (one line on stderr) as it happens and recorded in its :class:`VideoResult`."""
    results = [VideoResult(str(f)) for f in files]
    loader = DataLoader(VideoStream(files, cfg, opts), batch_size=None, num_workers=workers)
    bar = tqdm(total=len(files), unit="video", desc="predict", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    pending: list[dict] = []

    def flush():
        if not pending:
            return
        probs = clip_probabilities(model, torch.stack([c["video"] for c in pending]),
                                   torch.stack([c["audio"] for c in pending]), device, dtype).cpu().numpy()
        for c, p in zip(pending, probs):
            record = probability_record(results[c["file"]].file, round(c["start"], 3), round(c["end"], 3),
                                        class_names, p)
            record.update(faces_detected=c["faces"], silent_audio=bool(c["silent"]))
            results[c["file"]].windows.append((c["window"], record))
        pending.clear()

    clips = 0
    for item in loader:
        if not item.get("done"):
            pending.append(item)
            clips += 1
            bar.set_postfix_str(f"{clips} {'windows' if opts.window else 'clips'}", refresh=False)
            if len(pending) >= batch_size:
                flush()
            continue
        if item["error"]:
            results[item["file"]].error = item["error"]
            bar.write(f"error: {item['error']}", file=sys.stderr)
        bar.update(1)
    flush()
    bar.close()
    for r in results:
        r.windows = [] if r.error else [rec for _, rec in sorted(r.windows, key=lambda kv: kv[0])]
    return results


# -- outputs -------------------------------------------------------------------------------

def notes(record: dict) -> str:
    out = []
    faces = record.get("faces_detected")
    if faces == 0:
        out.append("no face (nearest face box used): not an expression")
    elif faceless(record):
        out.append(f"face in only {faces:.0%} of frames: not an expression")
    elif faces is not None and faces < 1:
        out.append(f"face in {faces:.0%} of frames")
    if near_chance(record):
        out.append(f"p near chance (< {NEAR_CHANCE:g}/{len(record['probabilities'])})")
    if record.get("silent_audio"):
        out.append("silent audio")
    return "; ".join(out)


def format_table(results: list[VideoResult]) -> str:
    rows = [("file", "window (s)", "top class", "p", "notes")]
    for r in results:
        for rec in r.windows:
            rows.append((rec["file"], f"{rec['window_start']:.2f}-{rec['window_end']:.2f}", rec["top_class"],
                         f"{rec['probabilities'][rec['top_class']]:.3f}", notes(rec)))
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + ("  " + row[4] if row[4] else "")
                     for row in rows)


def face_warnings(results: list[VideoResult]) -> list[str]:
    """One line per video with windows (or a whole video) where a face was in fewer than
    :data:`MIN_FACE_SHARE` of the frames: those predictions are not of a face."""
    out = []
    for r in results:
        lost = [rec for rec in r.windows if faceless(rec)]
        if not lost:
            continue
        if len(r.windows) == 1:
            out.append(f"warning: {r.file}: a face in only {lost[0]['faces_detected']:.0%} of its frames (MTCNN): "
                       "not a face's expression, whatever its probabilities (marked faces_detected in --json/--csv)")
            continue
        spans = ", ".join(f"{rec['window_start']:.2f}-{rec['window_end']:.2f}" for rec in lost[:8])
        more = f" and {len(lost) - 8} more" if len(lost) > 8 else ""
        out.append(f"warning: {r.file}: no face in {len(lost)} of {len(r.windows)} windows ({spans} s{more}; a face in "
                   f"fewer than {MIN_FACE_SHARE:.0%} of a window's frames): not a face's expression there (the "
                   "nearest frame's face box was used)")
    return out


def plot_paths(plot: str, results: list[VideoResult]) -> list[tuple[VideoResult, Path]]:
    """``--plot FILE.png``: that file for one video, ``FILE-<video>.png`` for each of several."""
    done = [r for r in results if r.windows]
    base = Path(plot)
    if len(done) == 1:
        return [(done[0], base)]
    out, used = [], set()
    for k, r in enumerate(done):
        name = f"{base.stem}-{Path(r.file).stem}"
        name = name if name not in used else f"{name}-{k}"
        used.add(name)
        out.append((r, base.with_name(name + (base.suffix or ".png"))))
    return out


# -- the command ---------------------------------------------------------------------------

def check_arguments(args) -> Optional[str]:
    """Why the arguments cannot work together (exit 2), or None."""
    for name in ("window", "stride"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            return f"--{name} must be a positive number of seconds (got {value})"
    if args.stride is not None and args.window is None:
        return "--stride needs --window"
    if args.plot and args.window is None and not args.stream:
        return "--plot draws the timeline of --window predictions: give --window SECONDS"
    if args.batch_size < 1 or args.workers < 0:
        return "--batch-size must be at least 1 and --workers at least 0"
    problem = check_stream_arguments(args) or check_runtime_arguments(args.runtime, args.quantize, args.device,
                                                                      args.precision)
    if problem:
        return problem
    if args.device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: no CUDA device is available"
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.precision == "fp16" and device == "cpu":
        return "--precision fp16 needs a GPU (use fp32 or bf16 on the CPU)"
    return None


def run(args) -> int:
    problem = check_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    files, problems = ([], []) if args.stream else collect_videos(args.inputs)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if not files and not args.stream:
        print(f"nothing to predict: no video files in {', '.join(args.inputs)}", file=sys.stderr)
        return 1
    if args.faces == "mtcnn":
        try:
            F.detector()
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    accelerated = args.runtime != "torch" or args.quantize != "none"  # CPU runtimes of the fp32 model
    if accelerated:
        device = torch.device("cpu")
    if args.stream and not torch.cuda.is_available():
        # stdout carries the stream's JSON lines: DeepSpeed (imported to read a run's checkpoint)
        # would print its fallback to the CPU there unless told the CPU is meant
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    loaded = load_model(Path(args.checkpoint))
    model, cfg, kind = loaded.model, loaded.cfg, loaded.kind
    precision = precision_for("fp32" if accelerated else args.precision, loaded.precision)
    if is_float16(precision) and device.type == "cpu":
        print(f"error: the run was trained in {precision}, which needs a GPU here: pass --precision fp32 or bf16",
              file=sys.stderr)
        return 2
    dtype = apply_precision(model, precision)
    model.to(device)
    if accelerated:
        try:
            runtime = build_runtime(model.eval(), cfg, args.runtime, args.quantize, precision)
        except ExportError as e:
            print(f"error: --runtime {args.runtime}: {e}", file=sys.stderr)
            return 2
        model, precision = runtime.forward, runtime.precision
    class_names = dataset_classes(cfg.data)  # the run's config.yaml records a manifest's
    data_cfg = replace(cfg.data, audio_policy=args.audio_policy, cache_dir=None)
    opts = PredictOptions(args.faces, args.clips, args.window, args.stride, args.margin)
    if args.stream:
        return follow(args, model, data_cfg, class_names, opts, dtype, precision, device)
    decord.logging.set_level(decord.logging.QUIET)  # a bad file's reason is in our one line, not ffmpeg's
    t0 = time.perf_counter()
    results = predict_videos(model, data_cfg, files, class_names, opts, args.batch_size, device, dtype,
                             args.workers, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - t0
    records = [{**rec, "precision": precision} for r in results for rec in r.windows]
    write_outputs(args, results, records, class_names)
    failed = sum(r.error is not None for r in results)
    print(summary(args, results, records, seconds, f"{device.type} ({cfg.data.dataset} model, {kind}, "
                  f"{cfg.data.resolution} px, {args.clips}-clip, {precision}", len(problems)))
    return 1 if failed or problems else 0


def write_outputs(args, results: list[VideoResult], records: list[dict], class_names: list[str]) -> None:
    """The table on stdout, the face warnings on stderr, and --json, --csv and --plot."""
    if records:
        print(format_table(results))
    for line in face_warnings(results):
        print(line, file=sys.stderr)
    if args.json:
        atomic_write_json(args.json, records)
    if args.csv:
        write_csv(args.csv, records, class_names)
    if args.plot:
        for r, path in plot_paths(args.plot, results):
            plot_timeline(r.windows, class_names, path, f"{Path(r.file).name} (window {args.window:g} s, stride "
                                                        f"{args.stride or args.window:g} s)")
            print(f"wrote {path}")


def summary(args, results: list[VideoResult], records: list[dict], seconds: float, setting: str,
            empty_folders: int) -> str:
    """The last line: how many videos, how fast, on what (``setting``: device, model, precision)."""
    ok = sum(r.error is None for r in results)
    failed = len(results) - ok
    unit = ("window" if args.window else "clip") + ("" if len(records) == 1 else "s")
    without = sum(faceless(rec) for rec in records)
    return (f"predicted {ok} of {len(results)} videos ({len(records)} {unit}) in "
            f"{seconds:.1f} s: {ok / max(seconds, 1e-9):.2f} videos/s on {setting}, faces {args.faces}"
            + (f", {args.runtime}" if args.runtime != "torch" else "") + ")"
            + (f"; {failed} failed" if failed else "")
            + (f"; {empty_folders} folder(s) without videos" if empty_folders else "")
            + (f"; {without} of them without a face" if without else ""))
