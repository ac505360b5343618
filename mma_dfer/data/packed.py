"""The packed store (``data.source: packed``): every clip's frames as JPEG bytes and its full
fbank, in shard files of about 1 GB, read by offset.

Why: the cache keeps raw uint8 frames (150,528 bytes a 224-px frame: ~136 GB for DFEW) in three
files a clip, and the JPEG-frame folders cost 16 file opens a training clip. A JPEG is ~10 KB,
and a shard is opened once per process: a clip read is one ``pread`` per sampled frame and one
for the fbank, with no file opened.

Layout of ``<data.root>/packed/`` (written by :mod:`mma_dfer.data.pack`, ``prepare --pack``):

* ``shard-KKKKK.bin``: entries back to back; an entry is a clip's JPEG frames, then its fbank
  (float32, little-endian, rows x mel bins).
* ``shard-KKKKK.table.npy``: one row per stored frame, ``(offset, length, crc32)``.
* ``index.json``: ``format``, ``settings`` (what the store was made with: see
  :func:`store_settings`), ``shards`` (path, byte size, table and its SHA-256) and ``clips``:
  ``{clip_id: {"shard", "first" (its first table row), "count" (frames), "size" ([h, w], one
  per clip), "fbank" ([offset, rows, crc32] or null), "absent" (why it has no audio, or null),
  "sources" (the stamp of what it was made from)}}``. A merged store (``prepare --shard`` pieces)
  names shards in the pieces' folders.

Everything is checked before use: the index's format, the settings against the run's config
(:class:`StoreError`, named), each shard's size and each table's SHA-256 when the store is
opened, and each frame's and fbank's CRC-32 when it is read (a corrupt entry is a
:class:`~mma_dfer.data.video.ClipError` naming the shard, the clip and the frame, which
``data.on_error: skip`` skips). Frames are decoded by libjpeg-turbo through torchvision (the
same pixels as PIL's decoder of the JPEG-frames path: tested) in the loader workers, or, with
``data.decode: device``, as a batch on the accelerator (:class:`JpegClips`: nvjpeg on CUDA).
"""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from mma_dfer.data.video import ClipError
from mma_dfer.utils import sha256_file

PACK_FORMAT = 1
STORE_DIR = "packed"
INDEX_NAME = "index.json"
TABLE_DTYPE = np.dtype([("offset", "<u8"), ("length", "<u4"), ("crc", "<u4")])
FBANK_DTYPE = np.dtype("<f4")
# The settings a run's data config must share with the store (the others describe the store).
RUN_SETTINGS = ("dataset", "sample_rate", "mel_bins")


class StoreError(ClipError):
    """A packed store that cannot serve this run: missing, incomplete, damaged, or made with
    other settings. ``str()`` names the store's file and what is wrong."""


def store_dir(root: str | Path) -> Path:
    return Path(root) / STORE_DIR


def read_index(directory: Path) -> dict:
    """The index of the store in ``directory``, checked to be a complete one of this format."""
    path = directory / INDEX_NAME
    if not path.is_file():
        raise StoreError(path, "no packed store (write one with: python -m mma_dfer prepare --dataset D "
                               "--raw R --out O --pack; then data.root=O)")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(path, f"unreadable index ({e})") from None
    if not isinstance(index, dict) or index.get("format") != PACK_FORMAT:
        found = index.get("format") if isinstance(index, dict) else None
        raise StoreError(path, f"store format {found!r}, this code reads format {PACK_FORMAT} (pack again with --force)")
    missing = [k for k in ("settings", "shards", "clips") if not isinstance(index.get(k), (dict, list))]
    if missing:
        raise StoreError(path, f"incomplete index (no {', '.join(missing)})")
    return index


def store_settings(root: str | Path) -> dict:
    """The settings the packed store under ``root`` (a ``data.root``) was made with: format,
    dataset, how the frames were stored (``frames``: "files" = JPEG files as shipped, other
    images encoded at ``jpeg_quality``; "video" = decoded frames resized to ``size`` and encoded
    at ``jpeg_quality``), ``sample_rate`` and ``mel_bins``. What a run trained on such a store
    computes depends on them (the run-identity fingerprint folds them in)."""
    return dict(read_index(store_dir(root))["settings"])


def check_run_settings(settings: dict, cfg, where: Path) -> None:
    """Refuse a run whose data config disagrees with the store on a setting they share."""
    differ = [f"data.{k}={getattr(cfg, k)!r} but the store has {settings.get(k)!r}" for k in RUN_SETTINGS
              if settings.get(k) != getattr(cfg, k)]
    if differ:
        raise StoreError(where, "made with other settings: " + "; ".join(differ) +
                         " (pack again: prepare --pack --sample-rate/--mel-bins, or use the store's values)")


class PackedStore:
    """The store under a ``data.root``, opened for reading by a run with data config ``cfg``.

    Shard files are opened once per process and read with ``os.pread`` (no file position: the
    descriptors are safe to share with forked loader workers); tables are memory-mapped. Neither
    is pickled (spawned workers reopen them)."""

    def __init__(self, root: str | Path, cfg):
        self.dir = store_dir(root)
        index = read_index(self.dir)
        self.settings, self.clips = index["settings"], index["clips"]
        check_run_settings(self.settings, cfg, self.dir / INDEX_NAME)
        self._fds: dict = {}
        self._tables: dict = {}  # memory-mapped when checked: a clip read then opens no table file
        self.shards = [self._checked_shard(k, s) for k, s in enumerate(index["shards"])]
        for clip_id, e in self.clips.items():
            if not (0 <= e["shard"] < len(self.shards)) or e["first"] + e["count"] > self.shards[e["shard"]]["rows"]:
                raise StoreError(self.dir / INDEX_NAME, f"clip {clip_id}'s frames lie outside its shard's table")

    def _checked_shard(self, k: int, shard: dict) -> dict:
        data, table = self.dir / shard["path"], self.dir / shard["table"]
        if not data.is_file() or data.stat().st_size != shard["bytes"]:
            size = data.stat().st_size if data.is_file() else "missing"
            raise StoreError(data, f"shard is {size} bytes, the index says {shard['bytes']} (incomplete or replaced)")
        if not table.is_file() or sha256_file(table) != shard["table_sha256"]:
            raise StoreError(table, "frame table missing or not the one the index was written with")
        rows = np.load(table, mmap_mode="r")
        if rows.dtype != TABLE_DTYPE or rows.ndim != 1:
            raise StoreError(table, f"frame table of dtype {rows.dtype}, expected {TABLE_DTYPE}")
        self._tables[k] = rows
        return {"data": data, "table": table, "rows": len(rows)}

    def __getstate__(self):
        return {**self.__dict__, "_fds": {}, "_tables": {}}

    def fd(self, shard: int) -> int:
        if shard not in self._fds:
            self._fds[shard] = os.open(self.shards[shard]["data"], os.O_RDONLY)
        return self._fds[shard]

    def table(self, shard: int) -> np.ndarray:
        if shard not in self._tables:
            self._tables[shard] = np.load(self.shards[shard]["table"], mmap_mode="r")
        return self._tables[shard]

    def frame_sizes(self) -> set:
        return {tuple(e["size"]) for e in self.clips.values()}

    def clip(self, clip_id: str) -> "PackedClip":
        if clip_id not in self.clips:
            raise ClipError(self.dir / INDEX_NAME, f"clip {clip_id} is not in the packed store (prepare --pack "
                                                   "lists the clips it could not pack in prepare_summary.json)")
        return PackedClip(self, clip_id, self.clips[clip_id])


class PackedClip:
    """One clip of a :class:`PackedStore`: its frame count and size, why it has no audio (or
    None), and readers of sampled frames and of its fbank, each checked against its CRC-32."""

    def __init__(self, store: PackedStore, clip_id: str, entry: dict):
        self.store, self.clip_id, self.entry = store, clip_id, entry
        self.count = entry["count"]
        self.height, self.width = entry["size"]
        self.absent = entry["absent"]

    def _corrupt(self, what: str) -> ClipError:
        return ClipError(self.store.shards[self.entry["shard"]]["data"],
                         f"clip {self.clip_id} {what}: checksum mismatch (a corrupt entry; pack again with --force)")

    def jpeg(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """The JPEG bytes of frames ``idx`` (repeats allowed), concatenated into one uint8 tensor,
        and their lengths. Each distinct frame is read once, into one buffer."""
        shard = self.entry["shard"]
        rows = self.store.table(shard)[self.entry["first"] + np.asarray(idx, dtype=np.int64)]
        lengths = rows["length"].astype(np.int64)
        buf = bytearray(int(lengths.sum()))
        view, fd, pos, seen = memoryview(buf), self.store.fd(shard), 0, {}
        for k, (offset, length, crc) in zip(idx, rows.tolist()):
            part = view[pos:pos + length]
            if k in seen:
                part[:] = view[seen[k]:seen[k] + length]
            elif os.preadv(fd, [part], offset) != length or zlib.crc32(part) != crc:
                raise self._corrupt(f"frame {int(k)}")
            seen.setdefault(k, pos)
            pos += length
        return torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.zeros(0, dtype=torch.uint8), \
            torch.from_numpy(lengths)

    def decode(self, idx) -> np.ndarray:
        """(k, H, W, 3) uint8 frames ``idx``, decoded on this CPU (the loader worker); strided
        over the decoder's (k, 3, H, W) layout, which is what the loader turns it back into."""
        data, lengths = self.jpeg(idx)
        frames = decode(data, lengths, "cpu", self.store.shards[self.entry["shard"]]["data"], self.clip_id)
        if frames.shape[-2:] != (self.height, self.width):
            raise ClipError(self.store.shards[self.entry["shard"]]["data"],
                            f"clip {self.clip_id}: frames decode to {tuple(frames.shape[-2:])}, the index says "
                            f"{(self.height, self.width)}")
        return frames.permute(0, 2, 3, 1).numpy()  # a view: the loader permutes back to (k, 3, H, W), no copy

    def fbank(self) -> Optional[torch.Tensor]:
        """The whole (rows, mel bins) fbank, or None when the clip has no audio (see ``absent``)."""
        if self.entry["fbank"] is None:
            return None
        offset, rows, crc = self.entry["fbank"]
        bins = self.store.settings["mel_bins"]
        buf = bytearray(rows * bins * FBANK_DTYPE.itemsize)
        if os.preadv(self.store.fd(self.entry["shard"]), [buf], offset) != len(buf) or zlib.crc32(buf) != crc:
            raise self._corrupt("fbank")
        return torch.from_numpy(np.frombuffer(buf, dtype=FBANK_DTYPE).reshape(rows, bins))


def decode(data: torch.Tensor, lengths: torch.Tensor, device, where, clip_id="") -> torch.Tensor:
    """(N, 3, H, W) uint8 on ``device`` from N concatenated JPEGs of one size (torchvision:
    libjpeg-turbo on the CPU, nvjpeg in one batched call on CUDA)."""
    parts = list(torch.split(data, lengths.flatten().tolist()))
    try:
        images = decode_jpeg(parts, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as e:
        raise ClipError(where, f"{'clip ' + clip_id + ': ' if clip_id else ''}cannot decode a JPEG frame "
                               f"({str(e).splitlines()[0][:120]})") from None
    try:
        return torch.stack(images)
    except RuntimeError:
        sizes = sorted({tuple(im.shape[-2:]) for im in images})
        raise ClipError(where, f"frames of several sizes {sizes} in one batch (data.gpu_augment needs one size)") \
            from None


class JpegClips:
    """A training batch's frames as JPEG bytes (``data.decode: device``), decoded when moved.

    The trainer moves a batch's frames with ``batch["video"].to(device, non_blocking=True)``
    and hands them to :mod:`~mma_dfer.data.gpu_augment`; this object answers that call with the
    decoded uint8 frames (B, T, 3, H, W) on the device, so the loader ships ~16 x 10 KB a clip
    instead of 16 x 150 KB of pixels and the GPU decodes the whole batch in one call. The same
    call on the CPU decodes there (the tests' check of this path). ``pin_memory`` keeps the
    loader's pinned copies working."""

    def __init__(self, data: torch.Tensor, lengths: torch.Tensor):
        self.data, self.lengths = data, lengths  # all frames' bytes; (B, T) lengths

    @classmethod
    def collate(cls, items: list[tuple[torch.Tensor, torch.Tensor]]) -> "JpegClips":
        return cls(torch.cat([d for d, _ in items]), torch.stack([n for _, n in items]))

    def __len__(self) -> int:
        return len(self.lengths)

    def pin_memory(self) -> "JpegClips":
        return JpegClips(self.data.pin_memory(), self.lengths)

    def to(self, device, non_blocking: bool = False) -> torch.Tensor:
        frames = decode(self.data, self.lengths, torch.device(device), "a batch of packed frames")
        return frames.view(*self.lengths.shape, *frames.shape[1:])
