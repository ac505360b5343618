"""The training augmentation on the accelerator, for whole batches.

At hundreds of clips per second a node's CPUs cannot crop, resize and jitter 16 frames per clip.
With ``data.gpu_augment: true`` (and the pre-decoded cache or the packed store, so every clip's
frames have one size) the loader only slices uint8 frames out of the memory-mapped cache, or
decodes the sampled JPEGs of the packed store, and draws the random parameters (the same
generator, so the same draws as the CPU path); this module then applies the crop-and-resize
(``roi_align``: each clip's box for all its frames), the flip and the brightness factor to the
batch on the device. With ``data.decode: device`` the batch arrives as JPEG bytes and its
``.to(device)`` decodes it there first (:class:`mma_dfer.data.packed.JpegClips`).
"""
from __future__ import annotations

import torch
from torchvision.ops import roi_align

from mma_dfer.data.video import IMAGENET_MEAN, IMAGENET_STD


def apply(video: torch.Tensor, params: torch.Tensor, size: int, normalize: str = "none") -> torch.Tensor:
    """video: (B, T, 3, H, W) uint8 on the device; params: (B, 6). Returns (B, T, 3, size, size)
    float in [0, 1] (or ImageNet-normalised)."""
    b, t = video.shape[:2]
    x = video.flatten(0, 1).float()
    p = params.to(x.device, torch.float32)
    rois = torch.cat([torch.arange(b * t, device=x.device, dtype=torch.float32)[:, None],
                      p[:, :4].repeat_interleave(t, dim=0)], dim=1)
    out = roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    flip = p[:, 4].repeat_interleave(t).bool()
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    out = (out * p[:, 5].repeat_interleave(t)[:, None, None, None]).clamp_(0, 255) / 255.0
    if normalize == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        out = (out - mean) / std
    return out.view(b, t, 3, size, size)
