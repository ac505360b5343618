"""Audio: the clip's track (or an extracted wav) as 16 kHz mono, AudioMAE's Kaldi fbank, the
AudioSet normalisation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import decord  # after torch: the order the modules were always loaded in
from torchaudio.compliance import kaldi

from mma_dfer.data.video import ClipError

# AudioMAE's AudioSet statistics (main_finetune_as.py); normalised as (x - mean) / (2 * std).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
FRAME_SHIFT_MS = 10


class NoAudioError(ClipError):
    """The file has no audio stream (handled by ``data.audio_policy``)."""


def read_waveform(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` from an mp4's audio track or a wav file.

    decord (ffmpeg's resampler) converts any rate and channel count: the authors' code read
    wavs at their native rate, which silently shifts every mel bin for non-16 kHz files."""
    if not path.is_file():
        raise ClipError(path, "audio/video file not found")
    try:
        reader = decord.AudioReader(str(path), ctx=decord.cpu(0), sample_rate=sample_rate, mono=True)
        samples = reader[:].asnumpy()
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "audio stream" in msg.lower():
            raise NoAudioError(path, "no audio stream") from None
        raise ClipError(path, f"cannot decode audio ({msg[:120]})") from None
    if samples.size == 0:
        raise NoAudioError(path, "audio stream is empty")
    return samples.reshape(-1).astype(np.float32)


def fbank(waveform: np.ndarray, sample_rate: int = 16000, mel_bins: int = 128) -> torch.Tensor:
    """(frames, mel_bins) Kaldi fbank as AudioMAE computes it: mean removed, Hanning window of
    25 ms, 10 ms shift, HTK-compatible, no energy term, no dither."""
    wav = torch.from_numpy(waveform).float()
    wav = wav - wav.mean()
    min_len = int(0.025 * sample_rate)
    if wav.numel() < min_len:
        wav = torch.nn.functional.pad(wav, (0, min_len - wav.numel()))
    return kaldi.fbank(wav.unsqueeze(0), htk_compat=True, sample_frequency=sample_rate, use_energy=False,
                       window_type="hanning", num_mel_bins=mel_bins, dither=0.0, frame_shift=FRAME_SHIFT_MS)


def window(fb: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """``length`` frames from ``start``, zero-padded at the end (authors: pad or cut to 512)."""
    out = fb[start:start + length]
    if out.shape[0] < length:
        out = torch.nn.functional.pad(out, (0, 0, 0, length - out.shape[0]))
    return out


def normalize(fb: torch.Tensor) -> torch.Tensor:
    return (fb - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)


def silence(length: int, mel_bins: int = 128) -> torch.Tensor:
    """The stand-in for a clip without audio (authors: a zero fbank), before normalisation."""
    return torch.zeros(length, mel_bins)
