"""Faces in video frames, the one way ``prepare`` makes its crops and ``predict`` (files and
``--stream``) makes the same crops of new videos: MTCNN on every frame (the most confident face),
the track filled and smoothed over time, a square with a margin around it, cropped with zero
padding and resized, and the JPEG round trip the stored frames went through."""
from __future__ import annotations

import io
from typing import Optional

import numpy as np
from PIL import Image

from mma_dfer.data.prepare_args import (DETECT_BATCH, DETECT_BATCH_CUDA, FACE_MARGIN, FACE_SIZE, FACE_SMOOTH,
                                        JPEG_QUALITY, MTCNN_HINT)

_DETECTORS: dict = {}


def detector(device: str = "cpu"):
    """MTCNN from facenet-pytorch (its P/R/O-Net weights ship in its wheel), one per process and device."""
    if device not in _DETECTORS:
        try:
            from facenet_pytorch import MTCNN  # lazy: an optional package (--faces none needs none)
        except ImportError as e:
            raise RuntimeError(f"--faces mtcnn needs facenet-pytorch: {MTCNN_HINT} ({e})") from None
        _DETECTORS[device] = MTCNN(keep_all=True, device=device, post_process=False)
    return _DETECTORS[device]


def detect_boxes(frames: np.ndarray, batch: Optional[int] = None, device: str = "cpu") -> list[Optional[np.ndarray]]:
    """The most confident face box (x1, y1, x2, y2) per frame, or None. Frames go to MTCNN
    ``batch`` at a time (default ``DETECT_BATCH`` on the CPU, ``DETECT_BATCH_CUDA`` on a GPU), as
    one (N, H, W, 3) array that facenet-pytorch moves to ``device`` and runs as one batch."""
    batch = batch or (DETECT_BATCH if device == "cpu" else DETECT_BATCH_CUDA)
    out = []
    for i in range(0, len(frames), batch):
        boxes, probs = detector(device).detect(np.ascontiguousarray(frames[i:i + batch]))
        for b, p in zip(boxes, probs):
            out.append(None if b is None else np.asarray(b[int(np.argmax(p))], dtype=np.float64))
    return out


def fill_and_smooth(boxes: list[Optional[np.ndarray]], window: int) -> Optional[np.ndarray]:
    """(T, 4) boxes: gaps take the nearest detected frame's box, then a centred moving average
    of centre and size over ``window`` frames. None when no frame has a face."""
    found = [i for i, b in enumerate(boxes) if b is not None]
    if not found:
        return None
    filled = np.stack([boxes[min(found, key=lambda j: (abs(j - i), j))] for i in range(len(boxes))])
    cs = np.stack([(filled[:, 0] + filled[:, 2]) / 2, (filled[:, 1] + filled[:, 3]) / 2,
                   filled[:, 2] - filled[:, 0], filled[:, 3] - filled[:, 1]], axis=1)
    half = window // 2
    padded = np.pad(cs, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    smooth = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], axis=1)
    return smooth  # (T, 4): cx, cy, w, h


def square_crop(frame: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """A side x side square around (cx, cy), zero-padded outside the frame, resized to size."""
    h, w = frame.shape[:2]
    s = max(int(round(side)), 2)
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    canvas = np.zeros((s, s, 3), dtype=frame.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.BILINEAR))


def face_squares(boxes: list[Optional[np.ndarray]], height: int, width: int, margin: float = FACE_MARGIN,
                 smooth: int = FACE_SMOOTH) -> list[list[float]]:
    """Per-frame crop squares [cx, cy, side] from per-frame detections (None: no face): the
    smoothed track, made square with ``margin``; with no face in any frame, the centred square
    of the picture (the stated fallback)."""
    track = fill_and_smooth(boxes, smooth)
    if track is None:
        side = min(height, width) / margin
        track = np.tile([width / 2, height / 2, side, side], (len(boxes), 1))
    return [[float(cx), float(cy), float(max(bw, bh) * margin)] for cx, cy, bw, bh in track]


def as_stored(crop: np.ndarray) -> np.ndarray:
    """A crop as training reads it back from its frame file (JPEG, quality ``JPEG_QUALITY``),
    so that ``predict`` feeds a model the pixels it was trained on."""
    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="JPEG", quality=JPEG_QUALITY)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


def stored_crops(frames, squares: list, size: int = FACE_SIZE) -> np.ndarray:
    """The crops of ``frames`` at their ``squares`` [cx, cy, side] as training reads them back
    (:func:`as_stored`): what ``predict`` feeds the model for a video's or a stream's frames."""
    return np.stack([as_stored(square_crop(f, *s, size)) for f, s in zip(frames, squares)])
