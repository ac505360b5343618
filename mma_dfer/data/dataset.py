"""The clip dataset: sampling, decoding (or the cache, or the packed store), transforms, audio
windows, bad clips.

An item is a dict: ``video`` (T, 3, S, S) float in [0, 1] (or (C, T, 3, S, S) in C-clip test
mode), ``audio`` (1, F, 128) normalised fbank (or (C, 1, F, 128)), ``label``, ``index``.
Train-time randomness comes from a generator seeded by (seed, epoch, index), so an epoch's
batches are the same whatever the number of loader workers, and a resumed run sees the
same augmentations as an uninterrupted one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from mma_dfer.config import DataConfig
from mma_dfer.data import audio as A
from mma_dfer.data import video as V
from mma_dfer.data.annotations import Sample
from mma_dfer.data.cache import ClipCache, cache_settings
from mma_dfer.data.packed import JpegClips, PackedStore, StoreError
from mma_dfer.data.video import ClipError

log = logging.getLogger(__name__)


class ClipDataset(Dataset):
    """Args:
        samples: records from :func:`mma_dfer.data.annotations.read_split`.
        cfg: the data section of the config.
        train: training sampling and augmentation (else uniform sampling and plain resize).
        clips: test-time clips per video (1, or 2 for the paper's 2-clip average).
        seed: base seed of the per-item generators.
    """

    # how a clip without audio can be used anyway, in the words of the command that reads it
    # (training and verify take the config; inspect-clip and predict a flag)
    audio_policy_hint = "set data.audio_policy=silence to use silence"

    def __init__(self, samples: list[Sample], cfg: DataConfig, train: bool, clips: int = 1, seed: int = 1):
        if train and clips != 1:
            raise ValueError("multi-clip sampling is a test-time mode")
        self.samples, self.cfg, self.train, self.clips, self.seed = samples, cfg, train, clips, seed
        self.epoch = 0
        self.cache = ClipCache(cfg.cache_dir, cfg.dataset, cache_settings(cfg)) if cfg.cache_dir else None
        self.store = PackedStore(cfg.root, cfg) if cfg.source == "packed" else None
        if self.store is not None and train and cfg.augment and cfg.gpu_augment and len(self.store.frame_sizes()) > 1:
            raise StoreError(self.store.dir, f"data.gpu_augment batches frames of one size, the store's clips have "
                                             f"{sorted(self.store.frame_sizes())} (pack from video, which stores one "
                                             "size, or set data.gpu_augment=false)")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.load(index)
        except ClipError as e:
            if self.cfg.on_error == "skip":
                return {"index": index, "skipped": str(e)}
            raise

    # -- decoding ---------------------------------------------------------------------------
    def audio_source(self, sample: Sample) -> Path:
        """An extracted wav when there is one, else the clip's own audio track."""
        return sample.wav if sample.wav.is_file() else sample.video

    def frame_source(self, sample: Sample) -> Path:
        return sample.video if self.cfg.source == "video" else sample.frames

    def full_fbank(self, sample: Sample) -> Optional[torch.Tensor]:
        """The whole clip's fbank (before normalisation), or None when it has no audio."""
        fb, absent = probe_fbank(self.audio_source(sample), self.cfg)
        return fb if absent is None else self.without_audio(absent)

    def without_audio(self, absent: ClipError) -> None:
        """``data.audio_policy`` on a clip without audio: None (silence) or the error, worded."""
        try:
            return silence_or_raise(absent, self.cfg)
        except A.NoAudioError as e:
            raise ClipError(e.path, f"{e.reason} ({self.audio_policy_hint})") from None

    def decode_all(self, sample: Sample) -> tuple[np.ndarray, Optional[torch.Tensor], Optional[ClipError]]:
        """Every frame at the cache size, the full fbank and why there is none (to fill the cache)."""
        src = self.frame_source(sample)
        if self.cfg.source == "video":
            vr = V.open_video(src)
            frames = V.read_video_frames(vr, src, np.arange(len(vr)))
        else:
            frames = V.read_frame_files(V.list_frames(src))
        t = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        t = V.resize(t, self.cache.size).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return (t.numpy(), *probe_fbank(self.audio_source(sample), self.cfg))

    def from_cache(self, sample: Sample):
        """(frame count, frame reader, full fbank) from the cache, filling it on a miss."""
        sources = [self.frame_source(sample), self.audio_source(sample)]
        hit = self.cache.load(sample.clip_id, sources)
        if hit is None:
            frames, fb, absent = self.decode_all(sample)
            self.cache.store(sample.clip_id, sources, frames, None if fb is None else fb.numpy(),
                             None if absent is None else absence_record(absent))
            hit = self.cache.load(sample.clip_id, sources)
            if hit is None:
                raise ClipError(self.cache.dir / sample.clip_id, "cache entry unreadable right after it was written")
        frames, fb, absent = hit
        fb = torch.from_numpy(np.array(fb)) if absent is None else self.without_audio(absence_error(absent))
        return len(frames), (lambda idx: np.asarray(frames[idx])), fb

    def from_store(self, sample: Sample):
        """(frame count, frame reader, full fbank) from the packed store."""
        clip = self.store.clip(sample.clip_id)
        fb = clip.fbank() if clip.absent is None else self.without_audio(absence_error(clip.absent))
        return clip.count, clip.decode, fb

    def _from_source(self, sample: Sample):
        src = self.frame_source(sample)
        if self.cfg.source == "video":
            vr = V.open_video(src)
            return len(vr), (lambda idx: V.read_video_frames(vr, src, idx)), self.full_fbank(sample)
        files = V.list_frames(src)
        return len(files), (lambda idx: V.read_frame_files([files[i] for i in idx])), self.full_fbank(sample)

    # -- one item ---------------------------------------------------------------------------
    def load(self, index: int) -> dict:
        sample = self.samples[index]
        if self.store is not None:
            n, read, fb = self.from_store(sample)
        else:
            n, read, fb = self.from_cache(sample) if self.cache else self._from_source(sample)
        item = {"label": sample.label, "index": index, "silent": fb is None}
        if not self.train:
            item["video"], item["audio"] = evaluation_inputs(n, read, fb, self.cfg, self.clips)
            return item
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, self.epoch, index])
        idx = V.train_indices(n, cfg.num_frames, rng)
        item["audio"] = audio_window(fb, idx, n, cfg, clips=1)
        if cfg.augment and cfg.gpu_augment:  # uint8 (or JPEG bytes) out; mma_dfer.data.gpu_augment applies
            if cfg.decode == "device":  # decoded with the batch on the device (packed.JpegClips)
                clip = self.store.clip(sample.clip_id)
                item["jpeg"], size = clip.jpeg(idx), (clip.height, clip.width)
            else:
                item["video"] = torch.from_numpy(read(idx)).permute(0, 3, 1, 2).contiguous()
                size = item["video"].shape[-2:]
            (y, x, ch, cw), flip, factor = V.draw_train_params(
                *size, cfg.resolution, rng, tuple(cfg.crop_area), tuple(cfg.crop_ratio), cfg.flip_prob, cfg.brightness)
            item["aug"] = torch.tensor([x, y, x + cw, y + ch, float(flip), factor])
            return item
        frames = torch.from_numpy(read(idx)).permute(0, 3, 1, 2).float()
        if cfg.augment:
            frames = V.train_transform(frames, cfg.resolution, rng, tuple(cfg.crop_area), tuple(cfg.crop_ratio),
                                       cfg.flip_prob, cfg.brightness)
        else:
            frames = V.resize(frames, cfg.resolution)
        item["video"] = V.to_model_range(frames.clamp(0, 255), cfg.normalize)
        return item


def read_fbank(path: Path, cfg: DataConfig) -> Optional[torch.Tensor]:
    """The whole fbank (before normalisation) of a wav or a video's track, or None (silence)
    when there is no audio and ``cfg.audio_policy`` is "silence"; with "error" the
    :class:`~mma_dfer.data.audio.NoAudioError` propagates for the caller to word."""
    fb, absent = probe_fbank(path, cfg)
    return fb if absent is None else silence_or_raise(absent, cfg)


def probe_fbank(path: Path, cfg: DataConfig) -> tuple[Optional[torch.Tensor], Optional[ClipError]]:
    """(fbank, None), or (None, why) for a clip without audio, whatever the policy: a
    :class:`~mma_dfer.data.audio.NoAudioError` (no or an empty stream), or the file is missing.
    Stores (the cache, the packed store) record the why and apply the policy when read."""
    try:
        wav = A.read_waveform(path, cfg.sample_rate)
    except A.NoAudioError as e:
        return None, e
    except ClipError as e:
        if path.exists():
            raise
        return None, e
    return A.fbank(wav, cfg.sample_rate, cfg.mel_bins), None


def silence_or_raise(absent: ClipError, cfg: DataConfig) -> None:
    """The audio policy on a clip without audio: "error" raises ``absent``, "silence" logs it."""
    if cfg.audio_policy == "error":
        raise absent
    log.warning("%s: %s; using silence (audio policy: silence)", absent.path, absent.reason)
    return None


def absence_record(absent: ClipError) -> dict:
    """A clip's missing audio as stores keep it (JSON)."""
    return {"path": absent.path, "reason": absent.reason, "stream": isinstance(absent, A.NoAudioError)}


def absence_error(record: dict) -> ClipError:
    """The error :func:`probe_fbank` gave when the record was made."""
    return (A.NoAudioError if record["stream"] else ClipError)(record["path"], record["reason"])


def evaluation_inputs(n: int, read, fb: Optional[torch.Tensor], cfg: DataConfig, clips: int = 1):
    """The test-time input of one video of ``n`` frames: ``read(indices)`` gives (k, H, W, 3)
    uint8 frames, ``fb`` is its whole fbank (None: silence). Uniform sampling, plain resize;
    returns video (T, 3, S, S) and audio (1, F, bins), or (C, ...) of both for C clips.
    Evaluation and ``predict`` (whole videos and windows of long ones) share it."""
    videos, audios = [], []
    for c in range(clips):
        idx = V.test_indices(n, cfg.num_frames, c, clips)
        frames = V.resize(torch.from_numpy(read(idx)).permute(0, 3, 1, 2).float(), cfg.resolution)
        videos.append(V.to_model_range(frames.clamp(0, 255), cfg.normalize))
        audios.append(audio_window(fb, idx, n, cfg, clips))
    if clips == 1:
        return videos[0], audios[0]
    return torch.stack(videos), torch.stack(audios)


def audio_window(fb: Optional[torch.Tensor], idx: np.ndarray, n: int, cfg: DataConfig, clips: int) -> torch.Tensor:
    """(1, F, bins): 1-clip mode starts at 0 (authors); multi-clip windows start at the clip's
    first sampled frame, mapped onto the fbank's time axis."""
    if fb is None:
        return A.normalize(A.silence(cfg.audio_frames, cfg.mel_bins)).unsqueeze(0)
    start = 0 if clips == 1 else int(idx[0] / n * fb.shape[0])
    return A.normalize(A.window(fb, start, cfg.audio_frames)).unsqueeze(0)


def placeholder_inputs(cfg: DataConfig, clips: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip of zeros in the model's input shapes, (video, audio) with a batch of 1 (and a
    clip axis for C > 1): the forward pass a rank runs when all its clips were skipped, so that
    every rank runs as many as the others (ZeRO-3 gathers the weights in each)."""
    video = torch.zeros(1, cfg.num_frames, 3, cfg.resolution, cfg.resolution)
    audio = torch.zeros(1, 1, cfg.audio_frames, cfg.mel_bins)
    if clips > 1:
        video, audio = video.unsqueeze(1).expand(1, clips, *video.shape[1:]), audio.unsqueeze(1).expand(
            1, clips, *audio.shape[1:])
    return video, audio


def collate(items: list[dict]) -> dict:
    """Stack the good items; ``skipped`` lists (index, reason) of the bad ones. Packed frames
    left for the device to decode become one :class:`~mma_dfer.data.packed.JpegClips`."""
    good = [it for it in items if "skipped" not in it]
    batch = {"skipped": [(it["index"], it["skipped"]) for it in items if "skipped" in it]}
    if good:
        batch["video"] = JpegClips.collate([it["jpeg"] for it in good]) if "jpeg" in good[0] else \
            torch.stack([it["video"] for it in good])
        batch["audio"] = torch.stack([it["audio"] for it in good])
        batch["label"] = torch.tensor([it["label"] for it in good])
        batch["index"] = torch.tensor([it["index"] for it in good])
        batch["silent"] = torch.tensor([it["silent"] for it in good])
        if "aug" in good[0]:
            batch["aug"] = torch.stack([it["aug"] for it in good])
    return batch
