"""Frames: which to sample, how to read them (decord clips or numbered frame folders), and the
train/test transforms of the authors' code, on tensors."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import decord  # after torch: the order the modules were always loaded in
from PIL import Image

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ClipError(RuntimeError):
    """A clip cannot be used; ``str()`` is one line naming the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


# -- which frames ------------------------------------------------------------------------

def _edge_pad(n: int, num: int) -> np.ndarray:
    """Clips shorter than ``num`` frames: every frame once, then the last one repeated."""
    return np.pad(np.arange(n), (0, num - n), mode="edge")


def train_indices(n: int, num: int, rng: np.random.Generator) -> np.ndarray:
    """Segment-based sampling with a random offset in each of ``num`` equal segments
    (authors' ``_get_train_indices`` with duration 1)."""
    seg = n // num
    if seg > 0:
        return np.arange(num) * seg + rng.integers(0, seg, size=num)
    if n > num:
        return np.sort(rng.integers(0, n, size=num))
    return _edge_pad(n, num)


def test_indices(n: int, num: int, clip: int = 0, clips: int = 1) -> np.ndarray:
    """Uniform sampling: the frame at phase ``(clip + 1) / (clips + 1)`` of each of ``num``
    equal segments. One clip is the segment middles (authors' ``_get_test_indices``); two
    clips take the 1/3 and 2/3 points, two interleaved uniform grids over the whole video."""
    if n <= num:
        return _edge_pad(n, num)
    tick = n / num
    phase = (clip + 1) / (clips + 1)
    return np.array([int(tick * phase + tick * x) for x in range(num)])


# -- reading -----------------------------------------------------------------------------

def frame_number(path: Path) -> tuple:
    """Sort key: the last integer in the file name (``2.jpg`` before ``10.jpg``), then the name."""
    nums = re.findall(r"\d+", path.stem)
    return (int(nums[-1]) if nums else -1, path.name)


def list_frames(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ClipError(folder, "frame folder not found")
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=frame_number)
    if not frames:
        raise ClipError(folder, "frame folder has no image files")
    return frames


def read_frame_files(paths: list[Path]) -> np.ndarray:
    """(T, H, W, 3) uint8; frames of another size than the first are resized to it."""
    out = []
    for p in paths:
        try:
            with Image.open(p) as img:
                img = img.convert("RGB")
                if out and img.size != (out[0].shape[1], out[0].shape[0]):
                    img = img.resize((out[0].shape[1], out[0].shape[0]), Image.BILINEAR)
                out.append(np.asarray(img))
        except OSError as e:
            raise ClipError(p, f"unreadable image ({e})") from None
    return np.stack(out)


def decoder_reason(e: BaseException) -> str:
    """The first line of a decoder's exception without decord's C++ log prefix
    (``[12:00:00] /github/workspace/src/video/video_reader.cc:699: ``), at most 120 characters."""
    line = str(e).splitlines()[0] if str(e) else type(e).__name__
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", line)[:120]


def open_video(path: Path):
    """A decord ``VideoReader``; a missing, corrupt or empty file raises :class:`ClipError`."""
    if not path.is_file():
        raise ClipError(path, "video file not found")
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as e:  # decord raises DECORDError / RuntimeError for broken containers
        raise ClipError(path, f"cannot decode video ({decoder_reason(e)})") from None
    if len(vr) == 0:
        raise ClipError(path, "video has no frames")
    return vr


def read_video_frames(vr, path: Path, indices: np.ndarray) -> np.ndarray:
    try:
        return vr.get_batch([int(i) for i in indices]).asnumpy()
    except Exception as e:
        raise ClipError(path, f"cannot decode frames {indices.tolist()} ({decoder_reason(e)})") from None


# -- transforms (on (T, 3, H, W) float tensors in [0, 255]) ---------------------------------

def random_sized_crop_box(h: int, w: int, area: tuple, ratio: tuple, rng: np.random.Generator):
    """The authors' ``GroupRandomSizedCrop``: 10 tries at area U(area) and aspect U(ratio), with
    width and height swapped half of the time; None when no try fits (then: scale + crop)."""
    for _ in range(10):
        target = rng.uniform(*area) * h * w
        aspect = rng.uniform(*ratio)
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if rng.random() < 0.5:
            cw, ch = ch, cw
        if cw <= w and ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    return None


def resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to size x size (antialiased when shrinking, like PIL's resize)."""
    if frames.shape[-2:] == (size, size):
        return frames
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def draw_train_params(h: int, w: int, size: int, rng: np.random.Generator, area=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                      flip_prob: float = 0.5, brightness: float = 0.5) -> tuple:
    """The random draws of one clip's augmentation, in the authors' order: (crop box in source
    pixels (y, x, h, w), flip, brightness factor). The authors' fallback when no random box fits
    (scale the short side to ``size``, then a random ``size`` crop) is expressed as a box too."""
    box = random_sized_crop_box(h, w, area, ratio, rng)
    if box is None:
        scale = size / min(h, w)
        sh, sw = max(size, round(h * scale)), max(size, round(w * scale))
        y = int(rng.integers(0, sh - size + 1))
        x = int(rng.integers(0, sw - size + 1))
        box = (y / scale, x / scale, size / scale, size / scale)
    flip = bool(rng.random() < flip_prob)
    factor = float(rng.uniform(max(0.0, 1 - brightness), 1 + brightness)) if brightness > 0 else 1.0
    return box, flip, factor


def train_transform(frames: torch.Tensor, size: int, rng: np.random.Generator, area=(0.08, 1.0),
                    ratio=(3 / 4, 4 / 3), flip_prob: float = 0.5, brightness: float = 0.5) -> torch.Tensor:
    """Random sized crop (the same box for every frame), horizontal flip, brightness jitter."""
    h, w = frames.shape[-2:]
    (y, x, ch, cw), flip, factor = draw_train_params(h, w, size, rng, area, ratio, flip_prob, brightness)
    y0, x0 = int(round(y)), int(round(x))
    frames = resize(frames[..., y0:y0 + max(1, int(round(ch))), x0:x0 + max(1, int(round(cw)))], size)
    if flip:
        frames = frames.flip(-1)
    if factor != 1.0:
        frames = (frames * factor).clamp_(0, 255)
    return frames


def to_model_range(frames: torch.Tensor, normalize: str = "none") -> torch.Tensor:
    """[0, 255] -> [0, 1] as the authors' code; optionally ImageNet mean/std (off by default)."""
    frames = frames / 255.0
    if normalize == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        frames = (frames - mean) / std
    return frames
