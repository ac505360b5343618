"""Pre-decoding cache: each clip decoded once to uint8 frames and its full-length fbank.

Layout: ``<cache_dir>/<dataset>/s<size>-<digest>/<clip_id>.{frames,fbank}.npy`` + ``.meta.json``.
Frames are stored at ``size`` x ``size`` (the augmentation then crops from those), the fbank for
the whole clip (so any audio window can be cut from it). Arrays are read memory-mapped.

An entry is keyed by everything that shapes its content (:func:`cache_settings`: the format
version, the frame source, the frame size, the sample rate and the mel bins) and by its
sources (path, size and mtime of the frame source and the audio file). The settings pick the
folder (``<digest>`` is their hash), so runs with other settings never read, or overwrite, each
other's entries; the meta file records them and the source stamp again, and both are checked on
every load, with the arrays' shapes: a stale, foreign or damaged entry is a miss and is rebuilt.
A clip without audio is stored with the reason (the file or stream it lacks), not as silence: the
run's ``data.audio_policy`` is applied when the entry is read (see :meth:`ClipCache.load`).
Entries are written to temporary names and renamed, so a killed run never leaves a half entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from mma_dfer.utils import atomic_write_json

# 1: keyed by the sources alone (before issue 18); 2: keyed by cache_settings, absent audio recorded.
CACHE_FORMAT = 2
CACHE_MIN_SIZE = 224  # frames are cached at max(resolution, 224): one entry serves 112, 160 and 224


def cache_settings(cfg) -> dict:
    """The settings that shape a cache entry's content, from a :class:`~mma_dfer.config.DataConfig`."""
    return {"format": CACHE_FORMAT, "source": cfg.source, "size": max(cfg.resolution, CACHE_MIN_SIZE),
            "sample_rate": cfg.sample_rate, "mel_bins": cfg.mel_bins}


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def source_stamp(paths: list[Path]) -> list:
    """(path, size, mtime_ns) of each existing source; a folder counts its files."""
    out = []
    for p in paths:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
            out.append([str(p), sum(f.stat().st_size for f in files), max((f.stat().st_mtime_ns for f in files), default=0)])
        elif p.is_file():
            st = p.stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


class ClipCache:
    """Args:
        cache_dir: ``data.cache_dir``.
        dataset: ``data.dataset`` (one sub-folder each).
        settings: :func:`cache_settings` of the run's data config.
    """

    def __init__(self, cache_dir: str | Path, dataset: str, settings: dict):
        self.settings = settings
        self.size = settings["size"]
        self.dir = Path(cache_dir) / dataset / f"s{self.size}-{settings_digest(settings)}"

    def _paths(self, clip_id: str):
        base = self.dir / clip_id
        return base.with_suffix(".frames.npy"), base.with_suffix(".fbank.npy"), base.with_suffix(".meta.json")

    def load(self, clip_id: str, sources: list[Path]) -> Optional[tuple]:
        """(frames memmap (n, S, S, 3) uint8, fbank memmap (m, bins) or None, absent audio or None)
        for a valid entry, else None. ``absent`` is ``{"path", "reason", "stream"}`` for a clip
        without audio (``stream``: the file exists but has no audio stream). The entry holds the
        facts and not the decision: the caller applies its own ``data.audio_policy``, so a clip
        cached by a "silence" run (``prepare`` fills that way) still fails an "error" run, and one
        entry serves both policies (keying by the policy would store every frame twice)."""
        frames_p, fbank_p, meta_p = self._paths(clip_id)
        try:
            meta = json.loads(meta_p.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("settings") != self.settings or meta.get("sources") != source_stamp(sources):
            return None
        try:
            frames = np.load(frames_p, mmap_mode="r")
            fb = np.load(fbank_p, mmap_mode="r") if meta.get("absent") is None else None
        except (OSError, ValueError):
            return None
        if frames.shape != (meta.get("num_frames"), self.size, self.size, 3) or frames.dtype != np.uint8:
            return None
        if fb is not None and (fb.ndim != 2 or fb.shape[1] != self.settings["mel_bins"] or fb.dtype != np.float32):
            return None
        return frames, fb, meta.get("absent")

    def store(self, clip_id: str, sources: list[Path], frames: np.ndarray, fb: Optional[np.ndarray],
              absent: Optional[dict] = None) -> None:
        """Write one entry; ``fb`` is None exactly when ``absent`` says why the clip has no audio."""
        if (fb is None) != (absent is not None):
            raise ValueError(f"{clip_id}: a cache entry has an fbank or the reason it has none, not both")
        frames_p, fbank_p, meta_p = self._paths(clip_id)
        frames_p.parent.mkdir(parents=True, exist_ok=True)  # a manifest's clip id may hold folders
        for path, arr in ((frames_p, frames), (fbank_p, fb)):
            if arr is None:
                continue
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arr))
            os.replace(tmp, path)
        atomic_write_json(meta_p, {"settings": self.settings, "sources": source_stamp(sources),
                                   "num_frames": int(frames.shape[0]), "absent": absent})
