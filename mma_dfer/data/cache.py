"""Pre-decoding cache: each clip decoded once to uint8 frames and its full-length fbank.

Layout: ``<cache_dir>/<dataset>/s<size>/<clip_id>.{frames,fbank}.npy`` + ``.meta.json``. Frames
are stored at ``size`` x ``size`` (the augmentation then crops from those), the fbank for the
whole clip (so any audio window can be cut from it). An entry is valid only while its sources
have the recorded size and mtime; a stale entry is rebuilt. Arrays are read memory-mapped.
Entries are written to temporary names and renamed, so a killed run never leaves a half entry.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from mma_dfer.utils import atomic_write_json


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
    def __init__(self, cache_dir: str | Path, dataset: str, size: int):
        self.dir = Path(cache_dir) / dataset / f"s{size}"
        self.size = size

    def _paths(self, clip_id: str):
        base = self.dir / clip_id
        return base.with_suffix(".frames.npy"), base.with_suffix(".fbank.npy"), base.with_suffix(".meta.json")

    def load(self, clip_id: str, sources: list[Path]) -> Optional[tuple]:
        """(frames memmap (n, S, S, 3) uint8, fbank memmap (m, bins) or None) if valid, else None."""
        frames_p, fbank_p, meta_p = self._paths(clip_id)
        try:
            meta = json.loads(meta_p.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("sources") != source_stamp(sources) or not frames_p.is_file():
            return None
        frames = np.load(frames_p, mmap_mode="r")
        fb = np.load(fbank_p, mmap_mode="r") if meta.get("has_audio") else None
        return frames, fb

    def store(self, clip_id: str, sources: list[Path], frames: np.ndarray, fb: Optional[np.ndarray]) -> None:
        frames_p, fbank_p, meta_p = self._paths(clip_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        for path, arr in ((frames_p, frames), (fbank_p, fb)):
            if arr is None:
                continue
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arr))
            os.replace(tmp, path)
        atomic_write_json(meta_p, {"sources": source_stamp(sources), "num_frames": int(frames.shape[0]),
                                   "has_audio": fb is not None, "size": self.size})
