"""The clip dataset: sampling, decoding (or the cache), transforms, audio windows, bad clips.

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
from mma_dfer.data.cache import ClipCache
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

    def __init__(self, samples: list[Sample], cfg: DataConfig, train: bool, clips: int = 1, seed: int = 1):
        if train and clips != 1:
            raise ValueError("multi-clip sampling is a test-time mode")
        self.samples, self.cfg, self.train, self.clips, self.seed = samples, cfg, train, clips, seed
        self.epoch = 0
        self.cache = ClipCache(cfg.cache_dir, cfg.dataset, max(cfg.resolution, 224)) if cfg.cache_dir else None

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
        try:
            return read_fbank(self.audio_source(sample), self.cfg)
        except A.NoAudioError as e:
            raise ClipError(e.path, f"{e.reason} (set data.audio_policy=silence to use silence)") from None

    def decode_all(self, sample: Sample) -> tuple[np.ndarray, Optional[torch.Tensor]]:
        """Every frame at the cache size and the full fbank (to fill the cache)."""
        src = self.frame_source(sample)
        if self.cfg.source == "video":
            vr = V.open_video(src)
            frames = V.read_video_frames(vr, src, np.arange(len(vr)))
        else:
            frames = V.read_frame_files(V.list_frames(src))
        t = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        t = V.resize(t, self.cache.size).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return t.numpy(), self.full_fbank(sample)

    def from_cache(self, sample: Sample):
        """(frame count, frame reader, full fbank) from the cache, filling it on a miss."""
        sources = [self.frame_source(sample), self.audio_source(sample)]
        hit = self.cache.load(sample.clip_id, sources)
        if hit is None:
            frames, fb = self.decode_all(sample)
            self.cache.store(sample.clip_id, sources, frames, None if fb is None else fb.numpy())
            hit = self.cache.load(sample.clip_id, sources)
        frames, fb = hit
        return len(frames), (lambda idx: np.asarray(frames[idx])), None if fb is None else torch.from_numpy(np.array(fb))

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
        n, read, fb = self.from_cache(sample) if self.cache else self._from_source(sample)
        item = {"label": sample.label, "index": index, "silent": fb is None}
        if not self.train:
            item["video"], item["audio"] = evaluation_inputs(n, read, fb, self.cfg, self.clips)
            return item
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, self.epoch, index])
        idx = V.train_indices(n, cfg.num_frames, rng)
        frames = torch.from_numpy(read(idx)).permute(0, 3, 1, 2)
        item["audio"] = audio_window(fb, idx, n, cfg, clips=1)
        if cfg.augment and cfg.gpu_augment:  # uint8 out; mma_dfer.data.gpu_augment applies
            (y, x, ch, cw), flip, factor = V.draw_train_params(
                *frames.shape[-2:], cfg.resolution, rng, tuple(cfg.crop_area), tuple(cfg.crop_ratio),
                cfg.flip_prob, cfg.brightness)
            item["video"] = frames.contiguous()
            item["aug"] = torch.tensor([x, y, x + cw, y + ch, float(flip), factor])
            return item
        frames = frames.float()
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
    try:
        wav = A.read_waveform(path, cfg.sample_rate)
    except A.NoAudioError as e:
        if cfg.audio_policy == "error":
            raise
        log.warning("%s: %s; using silence (audio policy: silence)", e.path, e.reason)
        return None
    except ClipError:
        if cfg.audio_policy == "silence" and not path.exists():
            log.warning("%s: no audio file; using silence (audio policy: silence)", path)
            return None
        raise
    return A.fbank(wav, cfg.sample_rate, cfg.mel_bins)


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
    """Stack the good items; ``skipped`` lists (index, reason) of the bad ones."""
    good = [it for it in items if "skipped" not in it]
    batch = {"skipped": [(it["index"], it["skipped"]) for it in items if "skipped" in it]}
    if good:
        batch["video"] = torch.stack([it["video"] for it in good])
        batch["audio"] = torch.stack([it["audio"] for it in good])
        batch["label"] = torch.tensor([it["label"] for it in good])
        batch["index"] = torch.tensor([it["index"] for it in good])
        batch["silent"] = torch.tensor([it["silent"] for it in good])
        if "aug" in good[0]:
            batch["aug"] = torch.stack([it["aug"] for it in good])
    return batch
