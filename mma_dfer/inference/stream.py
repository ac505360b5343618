"""``predict --stream SOURCE``: a live source followed window by window.

A reader thread demuxes the source with FFmpeg's libraries (PyAV): a camera (``/dev/videoN``,
V4L2), a URL FFmpeg reads (RTSP, HTTP, UDP, TCP) or ``-`` (a pipe on stdin). It keeps a rolling
buffer of frames and of the audio track (16 kHz mono), no longer than one window and a few hops.
Every ``--hop-s`` seconds of stream time a window of ``--window`` seconds (default: the model's
fbank span, ``audio_frames`` x 10 ms) ends; it goes through the test-time pipeline of a file
window (``evaluation_inputs``: uniform frame sampling, resize, its own fbank) and one JSON line
is printed: the window's stream times, the probabilities, the top class and the latency from the
window's end arriving to its line. When the model is slower than the stream, the newest complete
window is taken: a window that has waited longer than one hop for the model is dropped (and
counted) unless it is the newest, so the output is never more than a hop and a forward pass
behind the stream (a burst of data, as networks and pipes deliver it, is not dropped). End of stream and SIGINT stop it cleanly; then ``--json``/``--csv``/``--plot`` are
written as for a file's windows.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections import deque
from typing import Optional

import av
import numpy as np
import torch

from mma_dfer.data import audio as A
from mma_dfer.data import faces as F
from mma_dfer.data import video as V
from mma_dfer.data.dataset import evaluation_inputs, placeholder_inputs
from mma_dfer.inference import evaluate
from mma_dfer.inference.records import probability_record, write_csv
from mma_dfer.inference.timeline import plot_timeline
from mma_dfer.utils import atomic_write_json

KEEP_EXTRA_S = 3.0  # the buffer holds one window plus this much (and one hop) of the newest stream


def check_stream_arguments(args) -> Optional[str]:
    """Why the file/stream flags do not fit together (exit 2), or None."""
    if args.stream is None:
        return None if args.inputs else "give INPUT videos or folders, or --stream SOURCE"
    if args.inputs:
        return "--stream follows one live source: give no INPUT files with it"
    if not args.hop_s > 0:
        return f"--hop-s must be a positive number of seconds (got {args.hop_s})"
    if args.stride is not None:
        return "--stream moves its window by --hop-s (not --stride)"
    if args.workers > 1:  # the default 1 is the files' fast path; a stream has its one reader thread
        return "--workers decodes files; a stream is decoded in one reader thread (leave --workers out)"
    return None


def open_source(source: str):
    """The PyAV container of SOURCE: ``-`` is stdin, ``/dev/video*`` a V4L2 camera, anything
    else a path or URL FFmpeg opens (once the stream has begun, a read that waits over 10 s
    ends it). Stream probing is limited to about 1 s, so the first window is not held back."""
    probe = {"analyzeduration": "1000000", "probesize": "1000000"}  # start within ~1 s of a live stream
    if source == "-":
        return av.open("pipe:0", "r", options=probe)
    if source.startswith("/dev/video"):
        return av.open(source, "r", format="v4l2")
    return av.open(source, "r", options=probe, timeout=(None, 10.0))


class RollingBuffer:
    """Frames and audio samples of the newest stretch of the stream, filled by the reader thread.
    Times are stream seconds from the first decoded frame of either kind."""

    def __init__(self, keep_s: float, sample_rate: int, prepare_frame):
        self.keep_s, self.sample_rate, self.prepare_frame = keep_s, sample_rate, prepare_frame
        self.cond = threading.Condition()
        self.origin: Optional[float] = None
        self.frames: deque = deque()  # (time, frame)
        self.frame_s = 0.04  # one frame's duration (from the stream's rate)
        self.video_end = 0.0  # stream time up to which every frame has arrived
        self.audio = np.zeros(0, np.float32)
        self.audio_start: Optional[float] = None  # stream time of self.audio[0]
        self.has_audio = False
        self.arrivals: deque = deque()  # (ready_end, wall time it was reached)
        self.finished = False
        self.error: Optional[str] = None

    def _time(self, t: Optional[float], fallback: float) -> float:
        t = fallback if t is None else float(t)
        if self.origin is None:
            self.origin = t
        return t - self.origin

    def ready_end(self) -> float:
        """Stream time up to which both the frames and (if any) the audio have arrived."""
        if not self.has_audio or self.finished:
            return self.video_end
        audio_end = (self.audio_start or 0.0) + len(self.audio) / self.sample_rate
        return min(self.video_end, audio_end)

    def _arrived(self) -> None:
        end = self.ready_end()
        if not self.arrivals or end > self.arrivals[-1][0]:
            self.arrivals.append((end, time.monotonic()))
        self.cond.notify_all()

    def add_frame(self, t: Optional[float], rgb: np.ndarray) -> None:
        frame = self.prepare_frame(rgb)
        with self.cond:
            t = self._time(t, self.video_end)
            self.frames.append((t, frame))
            self.video_end = max(self.video_end, t + self.frame_s)
            horizon = self.video_end - self.keep_s
            while self.frames and self.frames[0][0] < horizon:
                self.frames.popleft()
            while len(self.arrivals) > 1 and self.arrivals[1][0] < horizon:
                self.arrivals.popleft()
            self._arrived()

    def add_audio(self, t: Optional[float], samples: np.ndarray) -> None:
        with self.cond:
            if self.audio_start is None:
                self.audio_start = self._time(t, 0.0)
            self.audio = np.concatenate([self.audio, samples])
            cut = int((self.video_end - self.keep_s - self.audio_start) * self.sample_rate)
            if cut > 0 and cut < len(self.audio):
                self.audio, self.audio_start = self.audio[cut:], self.audio_start + cut / self.sample_rate
            self._arrived()

    def finish(self, error: Optional[str] = None) -> None:
        with self.cond:
            self.finished, self.error = True, error
            self._arrived()

    def arrival_of(self, end: float) -> float:
        """The wall time at which the stream reached ``end`` (now, if it is not found)."""
        for reached, wall in self.arrivals:
            if reached >= end - 1e-6:
                return wall
        return time.monotonic()

    def window(self, start: float, end: float):
        """(frames, waveform or None) of [start, end): copies, taken under the lock."""
        frames = [f for t, f in self.frames if start - 1e-6 <= t < end - 1e-6]
        if not self.has_audio:
            return frames, None
        a = max(0, int(round((start - (self.audio_start or 0.0)) * self.sample_rate)))
        b = max(a, int(round((end - (self.audio_start or 0.0)) * self.sample_rate)))
        return frames, self.audio[a:b].copy()


def read_stream(container, buffer: RollingBuffer, stop: threading.Event) -> None:
    """The reader thread: decode the first video stream and the first audio stream into the
    buffer until the end of the stream, an error or ``stop``."""
    error = None
    try:
        streams = list(container.streams.video[:1]) + list(container.streams.audio[:1])
        video = container.streams.video[0]
        rate = video.average_rate or video.guessed_rate
        if rate:
            buffer.frame_s = 1.0 / float(rate)
        resampler = None
        if container.streams.audio:
            buffer.has_audio = True
            resampler = av.AudioResampler(format="flt", layout="mono", rate=buffer.sample_rate)
        for packet in container.demux(streams):
            if stop.is_set():
                break
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    buffer.add_frame(frame.time, frame.to_ndarray(format="rgb24"))
                else:
                    for out in resampler.resample(frame):
                        buffer.add_audio(frame.time, out.to_ndarray().reshape(-1).astype(np.float32))
    except Exception as e:  # a broken or vanished source ends the stream with its reason
        error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    buffer.finish(error)


class FaceTrack:
    """``prepare``'s face squares for the sampled frames of each window (MTCNN on those frames;
    a window without a face keeps the last window's squares)."""

    def __init__(self, margin: float):
        self.margin, self.last = margin, None

    def crops(self, frames: np.ndarray) -> tuple[Optional[np.ndarray], float]:
        boxes = F.detect_boxes(frames)
        found = float(np.mean([b is not None for b in boxes]))
        h, w = frames.shape[1:3]
        if found > 0:
            self.last = F.face_squares(boxes, h, w, self.margin)
        if self.last is None:
            return None, 0.0
        squares = self.last if found > 0 else [self.last[-1]] * len(frames)
        return F.stored_crops(frames, squares), found


def window_inputs(frames: list, wave: Optional[np.ndarray], cfg, opts, faces: Optional[FaceTrack]):
    """(video, audio, faces_detected, silent) of one window, as ``video_inputs`` makes a file
    window's, or None when no face has been seen yet."""
    n = len(frames)
    found = None
    if faces is not None:
        # only the frames the sampling picks are searched for a face
        picks = sorted({int(i) for c in range(opts.clips) for i in V.test_indices(n, cfg.num_frames, c, opts.clips)})
        crops, found = faces.crops(np.stack([frames[i] for i in picks]))
        if crops is None:
            return None
        where = {i: k for k, i in enumerate(picks)}
        read = lambda idx: crops[[where[int(i)] for i in idx]]  # noqa: E731
    else:
        read = lambda idx: np.stack([frames[int(i)] for i in idx])  # noqa: E731
    silent = wave is None or wave.size == 0
    fb = None if silent else A.fbank(wave, cfg.sample_rate, cfg.mel_bins)
    video, audio = evaluation_inputs(n, read, fb, cfg, opts.clips)
    return video, audio, found, silent


def frame_preparer(cfg, faces: str):
    """What the buffer stores of a frame: with ``--faces none`` the frame already resized to the
    model's size (``evaluation_inputs`` resizes each frame on its own, so this is the same input
    at a fraction of the memory); for MTCNN the full frame."""
    if faces != "none":
        return lambda rgb: rgb

    def prepare(rgb: np.ndarray) -> np.ndarray:
        frame = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float()
        return V.resize(frame, cfg.resolution)[0].permute(1, 2, 0).numpy()
    return prepare


class Interrupt:
    """SIGINT sets ``stop`` (the window being predicted is finished and printed first)."""

    def __init__(self, stop: threading.Event):
        self.stop, self.previous, self.signalled = stop, None, False

    def __enter__(self):
        def handler(signum, frame):
            self.signalled = True
            self.stop.set()
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def warm_up(forward, cfg, clips: int, device, dtype) -> None:
    """One forward pass and one fbank before the stream opens, so that the first window's
    latency is the model's, not the first call's set-up (thread pools, lazy imports)."""
    A.fbank(np.zeros(cfg.sample_rate // 10, np.float32), cfg.sample_rate, cfg.mel_bins)
    evaluate.clip_probabilities(forward, *placeholder_inputs(cfg, clips), device, dtype)


def open_checked(source: str, cfg):
    """The opened source, or None once it has said (on stderr) why it cannot be followed."""
    try:
        container = open_source(source)
    except Exception as e:
        print(f"error: {source}: cannot open the stream ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})",
              file=sys.stderr)
        return None
    if not container.streams.video:
        print(f"error: {source}: no video stream", file=sys.stderr)
        return None
    if not container.streams.audio and cfg.audio_policy == "error":
        print(f"error: {source}: no audio stream (--audio-policy silence predicts it with silent audio)",
              file=sys.stderr)
        return None
    return container


def write_stream_outputs(args, records: list[dict], class_names: list[str], title: str) -> None:
    """--json, --csv and --plot of the windows followed, as for a file's windows."""
    if args.json:
        atomic_write_json(args.json, records)
    if args.csv:
        write_csv(args.csv, records, class_names)
    if args.plot and records:
        plot_timeline(records, class_names, args.plot, title)
        print(f"wrote {args.plot}", file=sys.stderr)


@torch.no_grad()
def follow(args, forward, cfg, class_names: list[str], opts, dtype, precision: str, device="cpu") -> int:
    """Follow ``args.stream``; returns predict's exit code (0 stopped cleanly, 1 the source
    failed or could not be opened)."""
    source, hop = args.stream, args.hop_s
    length = args.window or cfg.audio_frames * A.FRAME_SHIFT_MS / 1000
    warm_up(forward, cfg, opts.clips, device, dtype)
    print(f"following {source}: a {length:g}-s window every {hop:g} s", file=sys.stderr, flush=True)
    container = open_checked(source, cfg)
    if container is None:
        return 1
    buffer = RollingBuffer(length + hop + KEEP_EXTRA_S, cfg.sample_rate, frame_preparer(cfg, opts.faces))
    stop = threading.Event()
    reader = threading.Thread(target=read_stream, args=(container, buffer, stop), name="stream-reader", daemon=True)
    faces = FaceTrack(opts.margin) if opts.faces == "mtcnn" else None
    records, dropped, faceless, k, start0 = [], 0, 0, 0, None
    with Interrupt(stop) as interrupt:
        reader.start()
        while not stop.is_set():
            with buffer.cond:
                start0, ready = await_window(buffer, stop, start0, k * hop + length)
                if stop.is_set() or start0 is None or ready < start0 + k * hop + length - 1e-6:
                    break
                newest = math.floor((ready - start0 - length) / hop + 1e-6)
                now = time.monotonic()
                while k < newest and now - buffer.arrival_of(start0 + k * hop + length) > hop:
                    dropped += 1  # it waited longer than a hop: the model has fallen behind
                    k += 1
                a, b = start0 + k * hop, start0 + k * hop + length
                frames, wave = buffer.window(a, b)
                arrived = buffer.arrival_of(b)
            if not frames:
                k += 1
                continue
            inputs = window_inputs(frames, wave, cfg, opts, faces)
            if inputs is None:
                faceless += 1
                k += 1
                continue
            video, audio, found, silent = inputs
            probs = evaluate.clip_probabilities(forward, video.unsqueeze(0), audio.unsqueeze(0), device, dtype)
            probs = probs[0].cpu().numpy()
            record = probability_record(source, round(a, 3), round(b, 3), class_names, probs)
            record.update(faces_detected=found, silent_audio=bool(silent), precision=precision)
            records.append(record)
            line = {"window": k, **record, "latency_s": round(time.monotonic() - arrived, 3), "dropped": dropped}
            print(json.dumps(line), flush=True)
            k += 1
    stop.set()
    reader.join(timeout=2.0)
    how = "SIGINT" if interrupt.signalled else ("a read error" if buffer.error else "end of stream")
    if buffer.error:
        print(f"error: {source}: {buffer.error}", file=sys.stderr)
    write_stream_outputs(args, records, class_names, f"{source} (window {length:g} s, hop {hop:g} s)")
    print(f"stream stopped by {how}: {len(records)} windows predicted{counts_said(dropped, faceless, hop)}",
          file=sys.stderr)
    return 1 if buffer.error and how != "SIGINT" else 0


def await_window(buffer, stop: threading.Event, start0: Optional[float], end: float) -> tuple:
    """(the first frame's time, the time the buffer is complete up to), once the window ending
    ``end`` seconds after the first frame is in ``buffer``, the source has ended or ``stop`` is
    set. The caller holds ``buffer.cond`` (waiting releases it for the reader)."""
    while not stop.is_set():
        if start0 is None and buffer.frames:
            start0 = buffer.frames[0][0]
        ready = buffer.ready_end()
        if (start0 is not None and ready >= start0 + end - 1e-6) or buffer.finished:
            return start0, ready
        buffer.cond.wait(0.1)
    return start0, buffer.ready_end()


def counts_said(dropped: int, faceless: int, hop: float) -> str:
    """The stop line's tail: the windows dropped (and why that happens) and those without a face."""
    slow = (f"; {dropped} dropped: the model is slower than the stream (each window of {hop:g} s took longer), "
            "windows that waited over a hop were skipped") if dropped else "; 0 dropped"
    return slow + (f"; {faceless} windows without a face yet (not predicted)" if faceless else "")
