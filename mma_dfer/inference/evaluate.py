"""Test-set evaluation: 1-clip and C-clip-averaged predictions, gathered across ranks."""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from mma_dfer.data.dataset import ClipDataset, collate, placeholder_inputs
from mma_dfer.inference.metrics import confusion_matrix, merge_shards, uar_war
from mma_dfer.inference.metrics import shard

log = logging.getLogger(__name__)


def clip_probabilities(forward: Callable, video: torch.Tensor, audio: torch.Tensor, device, dtype=torch.float32):
    """(B, classes) softmax probabilities of a batch; video (B, T, 3, S, S) and audio
    (B, 1, F, bins), or (B, C, ...) of both for C clips per video, whose softmaxes are averaged."""
    b = video.shape[0]
    clips = video.shape[1] if video.dim() == 6 else 1
    video, audio = video.to(device, dtype), audio.to(device, dtype)
    if clips > 1:
        video, audio = video.flatten(0, 1), audio.flatten(0, 1)
    return F.softmax(forward(video, audio).float(), dim=-1).view(b, clips, -1).mean(1)


@torch.no_grad()
def predict(forward: Callable, dataset: ClipDataset, indices: list[int], batch_size: int, num_workers: int,
            device, dtype=torch.float32, progress: bool = False, in_step: bool = False):
    """Class probabilities for ``indices``: softmax, averaged over the clips of a video in
    multi-clip mode (as MAE-DFER/HiCMAE's 2-clip protocol). Returns (indices, probs, skipped).
    ``in_step``: one forward pass per batch even when all its clips were skipped (a placeholder
    clip, its output dropped), so that ranks with equally long shards run equally many."""
    # its own generator: evaluating must not advance the global RNG that drop-path draws from
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate, generator=torch.Generator().manual_seed(0))
    out_idx, out_prob, skipped = [], [], []
    if progress:
        loader = tqdm(loader, desc=f"eval ({dataset.clips}-clip)", leave=False)
    for batch in loader:
        skipped += batch["skipped"]  # (dataset index, reason)
        if "video" not in batch:
            if in_step:
                clip_probabilities(forward, *placeholder_inputs(dataset.cfg, dataset.clips), device, dtype)
            continue
        probs = clip_probabilities(forward, batch["video"], batch["audio"], device, dtype)
        out_idx.append(batch["index"].numpy())
        out_prob.append(probs.cpu().numpy())
    if not out_idx:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), skipped
    return np.concatenate(out_idx), np.concatenate(out_prob), skipped


def evaluate(forward: Callable, dataset: ClipDataset, batch_size: int, num_workers: int, device, num_classes: int,
             dtype=torch.float32, rank: int = 0, world: int = 1, progress: bool = False) -> dict:
    """UAR/WAR over the *whole* test set: each rank predicts its shard, the shards are gathered,
    merged by dataset index (the padding's repeats dropped) and scored on every rank. Shards are
    padded to one length, so every rank runs the same number of forward passes: under ZeRO-3
    each one gathers the weights from all ranks."""
    idx, probs, skipped = predict(forward, dataset, shard(len(dataset), rank, world), batch_size, num_workers,
                                  device, dtype, progress, in_step=world > 1)
    if world > 1 and dist.is_initialized():
        parts = [None] * world
        dist.all_gather_object(parts, (idx, probs, skipped))
    else:
        parts = [(idx, probs, skipped)]
    idx, probs = merge_shards([(p[0], p[1]) for p in parts if len(p[0])])
    skipped = sorted({s for p in parts for s in p[2]})
    if len(idx) + len(skipped) != len(dataset):
        raise RuntimeError(f"evaluation covered {len(idx)} + {len(skipped)} skipped of {len(dataset)} clips")
    if skipped:
        log.warning("%d of %d test clips were skipped (data.on_error=skip); the metrics cover %d clips: %s",
                    len(skipped), len(dataset), len(idx), [dataset.samples[i].clip_id for i, _ in skipped])
    labels = np.array([dataset.samples[i].label for i in idx])
    preds = probs.argmax(1)
    uar, war = uar_war(labels, preds, num_classes)
    return {"uar": uar, "war": war, "confusion": confusion_matrix(labels, preds, num_classes).tolist(),
            "num_clips": int(len(idx)), "skipped": [dataset.samples[i].clip_id for i, _ in skipped],
            "indices": idx, "probs": probs, "labels": labels}
