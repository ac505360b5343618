"""Writing the packed store (``prepare --pack``; the format is in :mod:`mma_dfer.data.packed`).

:class:`PackWriter` appends clips to the current shard and is resumable at clip granularity,
atomically at shard granularity:

* The shard being written is ``.shard-K.bin.partial`` with a journal ``.shard-K.journal`` (one
  JSON line per clip appended, after the clip's bytes). A killed pack leaves both; the next one
  keeps every journalled clip whose bytes are all there with the right CRC-32, cuts the partial
  file after the last of them, and continues with the next clip.
* A shard becomes ``shard-K.bin`` (with its table ``shard-K.table.npy`` and its record
  ``shard-K.json``) only once it is complete and flushed to disk; ``index.json`` is written last,
  when every clip of the run is in a complete shard. Readers use only ``index.json``, so they
  see the previous complete store or the new one, never a half.
* Every shard record holds the store's settings: a pack with other settings into the same
  folder is refused (named), unless ``--force`` starts the folder again.
* A clip whose sources changed since it was packed is packed again into the current shard; the
  index points at the newest copy (the old bytes stay in their shard, unused).

:func:`merge` joins the stores of ``prepare --shard I/N`` pieces into one index over their
shards (nothing is copied).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from mma_dfer.data import video as V
from mma_dfer.data.cache import source_stamp
from mma_dfer.data.dataset import absence_record, probe_fbank
from mma_dfer.data.packed import FBANK_DTYPE, INDEX_NAME, PACK_FORMAT, TABLE_DTYPE, StoreError, read_index
from mma_dfer.data.video import ClipError
from mma_dfer.utils import atomic_write_bytes, atomic_write_json, sha256_file

SHARD_BYTES = 1 << 30  # ~1 GB: few files for a parallel file system, little work lost to a kill


@dataclass
class PackEntry:
    """One clip, ready to append: its frames' JPEG bytes (one size), fbank (or why none), sources."""

    clip_id: str
    frames: list[bytes]
    size: tuple[int, int]  # (height, width)
    fbank: Optional[np.ndarray]  # (rows, mel bins) float32
    absent: Optional[dict]
    sources: list


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """PIL's encoder, as ``prepare`` writes its face crops."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def pack_settings(dataset: str, frames: str, quality: int, size: Optional[int], sample_rate: int,
                  mel_bins: int) -> dict:
    """The settings recorded in (and required of) a store; see :func:`packed.store_settings`."""
    if frames not in ("files", "video"):
        raise ValueError(f"frames={frames!r} is not 'files' or 'video'")
    return {"format": PACK_FORMAT, "dataset": dataset, "frames": frames, "jpeg_quality": quality,
            "size": size if frames == "video" else None, "sample_rate": sample_rate, "mel_bins": mel_bins}


JPEG_SUFFIXES = (".jpg", ".jpeg")


def clip_entry(clip_id: str, frame_source: Path, audio_source: Path, settings: dict, cfg) -> PackEntry:
    """A clip as the store keeps it. ``settings["frames"]`` "files": the numbered frame files
    of ``frame_source`` in order, JPEGs as they are (decoded once, to check them and read their
    size), other images encoded at ``jpeg_quality``; "video": every frame of the mp4, resized to
    ``size`` square (as the cache resizes) and encoded. One frame size a clip (else a
    :class:`ClipError` naming the frame). The fbank and the audio's absence as
    :func:`~mma_dfer.data.dataset.probe_fbank` finds them, with ``cfg``'s sample rate and bins."""
    sources = source_stamp([frame_source, audio_source])
    quality = settings["jpeg_quality"]
    frames, size = [], None
    if settings["frames"] == "video":
        vr = V.open_video(frame_source)
        decoded = torch.from_numpy(V.read_video_frames(vr, frame_source, np.arange(len(vr)))).permute(0, 3, 1, 2)
        side = settings["size"]
        decoded = V.resize(decoded.float(), side).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        frames, size = [encode_jpeg(f, quality) for f in decoded.numpy()], (side, side)
    else:
        for path in V.list_frames(frame_source):
            if path.suffix.lower() in JPEG_SUFFIXES:
                data = path.read_bytes()
                try:
                    shape = tuple(decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                              mode=ImageReadMode.RGB).shape[1:])
                except RuntimeError as e:
                    raise ClipError(path, f"unreadable JPEG ({str(e).splitlines()[0][:120]})") from None
            else:
                image = V.read_frame_files([path])[0]
                data, shape = encode_jpeg(image, quality), image.shape[:2]
            if size is not None and shape != size:
                raise ClipError(path, f"frame is {shape[1]}x{shape[0]}, the clip's first frame {size[1]}x{size[0]}: "
                                      "a packed clip has one frame size")
            frames.append(data)
            size = shape
    fb, absent = probe_fbank(audio_source, cfg)
    return PackEntry(clip_id, frames, size, None if fb is None else fb.numpy(),
                     None if absent is None else absence_record(absent), sources)


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}"


class PackWriter:
    """Args:
        directory: the store's folder (``<out>/packed``, or a piece's folder under it).
        settings: :func:`pack_settings` of this pack.
        shard_bytes: a shard is closed once it holds this many bytes.
        force: start the folder again instead of continuing it.
    """

    def __init__(self, directory: Path, settings: dict, shard_bytes: int = SHARD_BYTES, force: bool = False):
        self.dir, self.settings, self.shard_bytes = Path(directory), settings, shard_bytes
        if force:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict] = []  # records of the complete shards
        self.clips: dict[str, dict] = {}  # clip id -> index entry (the newest copy)
        while (self.dir / f"{_shard_name(len(self.shards))}.json").is_file():
            self._load_complete(len(self.shards))
        self.k = len(self.shards)
        self.partial = self.dir / f".{_shard_name(self.k)}.bin.partial"
        self.journal = self.dir / f".{_shard_name(self.k)}.journal"
        done = self.dir / f"{_shard_name(self.k)}.bin"
        if done.is_file():  # renamed, but killed before its record: it is the partial shard again
            os.replace(done, self.partial)
        self.rows: list[tuple] = []  # (offset, length, crc) of this shard's frames
        self.current: dict[str, dict] = {}  # this shard's clips
        self.resumed = self._recover()
        self.out = open(self.partial, "ab")

    # -- reading back what a previous pack left ------------------------------------------------
    def _load_complete(self, k: int) -> None:
        rec_path = self.dir / f"{_shard_name(k)}.json"
        rec = json.loads(rec_path.read_text())
        if rec.get("settings") != self.settings:
            raise StoreError(rec_path, f"this store was packed with {rec.get('settings')}, this pack asks for "
                                       f"{self.settings} (use --force to pack it again from the start)")
        data, table = self.dir / rec["path"], self.dir / rec["table"]
        if not data.is_file() or data.stat().st_size != rec["bytes"] or sha256_file(table) != rec["table_sha256"]:
            raise StoreError(data, "a complete shard's data or table does not match its record (damaged; "
                                   "use --force to pack again)")
        self.shards.append({k: rec[k] for k in ("path", "bytes", "table", "table_sha256")})
        (self.dir / f".{_shard_name(k)}.journal").unlink(missing_ok=True)  # killed before its removal
        for clip_id, e in rec["clips"].items():
            self.clips[clip_id] = {**e, "shard": k}

    def _recover(self) -> int:
        """Keep the journalled clips of the partial shard whose bytes are intact (back to back,
        each span's CRC-32 right); cut the rest. Returns how many were kept."""
        if not self.partial.is_file() or not self.journal.is_file():
            self.partial.unlink(missing_ok=True)
            self._start_journal([])
            return 0
        lines = self.journal.read_text().splitlines()
        try:
            header = json.loads(lines[0])["settings"] if lines else None
        except (ValueError, KeyError, TypeError):
            header = None
        if header != self.settings:
            raise StoreError(self.journal, f"an unfinished pack with settings {header}, this pack asks for "
                                           f"{self.settings} (use --force to pack again from the start)")
        good, end = [], 0
        with open(self.partial, "rb") as f:
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                except ValueError:
                    break  # a torn last line
                fbank = rec["entry"]["fbank"]  # [offset, rows, crc]
                spans = rec["rows"] + ([[fbank[0], fbank[1] * self.settings["mel_bins"] * FBANK_DTYPE.itemsize,
                                         fbank[2]]] if fbank else [])
                pos, intact = end, True
                for offset, length, crc in spans:
                    f.seek(offset)
                    intact = intact and offset == pos and zlib.crc32(f.read(length)) == crc
                    pos = offset + length
                if not intact:
                    break
                good.append(rec)
                end = pos
        with open(self.partial, "r+b") as f:
            f.truncate(end)
        for rec in good:
            self._admit(rec)
        self._start_journal(good)
        return len(good)

    def _start_journal(self, records: list[dict]) -> None:
        """The journal of the current shard: the settings, then one line per clip."""
        lines = [{"settings": self.settings}, *records]
        atomic_write_bytes(self.journal, "".join(json.dumps(r) + "\n" for r in lines).encode())

    def _admit(self, rec: dict) -> None:
        first = len(self.rows)
        self.rows += [tuple(r) for r in rec["rows"]]
        entry = {**rec["entry"], "first": first, "shard": self.k}
        self.current[rec["clip"]] = entry
        self.clips[rec["clip"]] = entry

    # -- writing -------------------------------------------------------------------------------
    def has(self, clip_id: str, sources: list) -> bool:
        """Whether the clip is packed, from these very sources."""
        e = self.clips.get(clip_id)
        return e is not None and e["sources"] == sources

    def forget(self, clip_id: str) -> None:
        """Leave a clip out of the index (it no longer packs: an older copy must not stand in)."""
        self.clips.pop(clip_id, None)
        self.current.pop(clip_id, None)

    def add(self, entry: PackEntry) -> None:
        """Append one clip to the current shard (closing it when full)."""
        pos = self.out.tell()
        rows = []
        for data in entry.frames:
            rows.append([pos, len(data), zlib.crc32(data)])
            self.out.write(data)
            pos += len(data)
        fbank = None
        if entry.fbank is not None:
            raw = np.ascontiguousarray(entry.fbank, dtype=FBANK_DTYPE).tobytes()
            fbank = [pos, int(entry.fbank.shape[0]), zlib.crc32(raw)]
            self.out.write(raw)
        self.out.flush()
        rec = {"clip": entry.clip_id, "rows": rows,
               "entry": {"count": len(rows), "size": list(entry.size), "fbank": fbank, "absent": entry.absent,
                         "sources": entry.sources}}
        with open(self.journal, "a") as j:  # after the bytes: a journalled clip's bytes were written first
            j.write(json.dumps(rec) + "\n")
        self._admit(rec)
        if self.out.tell() >= self.shard_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        """Make the partial shard a complete one: flushed, its table and record written, renamed."""
        self.out.flush()
        os.fsync(self.out.fileno())
        size = self.out.tell()
        self.out.close()
        name = _shard_name(self.k)
        buf = io.BytesIO()
        np.save(buf, np.array(self.rows, dtype=TABLE_DTYPE))
        atomic_write_bytes(self.dir / f"{name}.table.npy", buf.getvalue())
        record = {"path": f"{name}.bin", "bytes": size, "table": f"{name}.table.npy",
                  "table_sha256": sha256_file(self.dir / f"{name}.table.npy")}
        os.replace(self.partial, self.dir / record["path"])
        atomic_write_json(self.dir / f"{name}.json", {**record, "settings": self.settings, "clips": {
            c: {k: v for k, v in e.items() if k != "shard"} for c, e in self.current.items()}})
        self.journal.unlink(missing_ok=True)
        self.shards.append(record)
        self.k += 1
        self.partial = self.dir / f".{_shard_name(self.k)}.bin.partial"
        self.journal = self.dir / f".{_shard_name(self.k)}.journal"
        self.rows, self.current = [], {}
        self._start_journal([])
        self.out = open(self.partial, "ab")

    def finish(self) -> dict:
        """Close the last shard and write ``index.json`` (atomically); returns the index."""
        if self.current:
            self._close_shard()
        self.out.close()
        self.partial.unlink(missing_ok=True)
        self.journal.unlink(missing_ok=True)
        index = {"format": PACK_FORMAT, "settings": self.settings, "shards": self.shards,
                 "clips": {c: self.clips[c] for c in sorted(self.clips)}}
        atomic_write_json(self.dir / INDEX_NAME, index)
        return index

    def close(self) -> None:
        """Stop without finishing (the partial shard and journal stay for the next pack)."""
        self.out.close()


def merge(directory: Path, pieces: list[Path]) -> dict:
    """One index over the pieces' stores (folders under ``directory``), written to
    ``directory/index.json``: the same settings everywhere, no clip in two pieces."""
    settings, shards, clips = None, [], {}
    for piece in pieces:
        index = read_index(piece)
        if settings is None:
            settings = index["settings"]
        elif index["settings"] != settings:
            raise StoreError(piece / INDEX_NAME, f"packed with {index['settings']}, the first piece with {settings}")
        rel = piece.relative_to(directory)
        for clip_id, e in index["clips"].items():
            if clip_id in clips:
                raise StoreError(piece / INDEX_NAME, f"clip {clip_id} is also in another piece")
            clips[clip_id] = {**e, "shard": e["shard"] + len(shards)}
        shards += [{**s, "path": str(rel / s["path"]), "table": str(rel / s["table"])} for s in index["shards"]]
    if settings is None:
        raise StoreError(directory, "no pieces to merge")
    index = {"format": PACK_FORMAT, "settings": settings, "shards": shards,
             "clips": {c: clips[c] for c in sorted(clips)}}
    atomic_write_json(directory / INDEX_NAME, index)
    return index
