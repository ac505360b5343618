"""Loading checkpoints that are untrusted files.

* The published encoders: MAE-Face ViT-B (``mae_face_pretrain_vit_base.pth``) and AudioMAE's
  AS-2M *pretrained* ViT-B. Both keep timm-ViT names under ``ckpt['model']``; the MAE training
  scripts pickle their ``argparse.Namespace`` beside the weights, and the AudioMAE file also
  holds its decoder (``decoder_*``, ``mask_token``), which is dropped.
* The authors' released fine-tuned MMA-DFER checkpoints (``{'epoch', 'state_dict', 'best_acc',
  'optimizer', 'recorder'}``, ``module.``-prefixed ``GenerateModel`` keys, a pickled
  ``__main__.RecorderMeter``), mapped onto this project's module names.

Every file is read through :func:`mma_dfer.safe_files.safe_load` (``weights_only=True``). The
only non-tensor objects let through are the ones those files are known to carry, registered
with torch's safe-globals mechanism; anything else (a pickle that would run code) is refused
with an error naming the file and the global. There is no fallback to full unpickling.
"""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from mma_dfer.config import ModelConfig
from mma_dfer.datasets import paper_dataset
from mma_dfer.labels import CLASS_NAMES, LIST_ORDERS, to_canonical
from mma_dfer.models.mma_dfer import MMADFER
from mma_dfer.safe_files import CheckpointError, safe_load


class RecorderMeter:
    """Stand-in for the authors' ``__main__.RecorderMeter`` (training curves, never used here).

    Registered under its original module and name so that ``weights_only`` unpickling can
    rebuild it as a plain attribute bag without importing or running the authors' code."""


RecorderMeter.__module__ = "__main__"


def _numpy_array_globals() -> list:
    """What a pickled numpy array needs (the RecorderMeter holds float32 arrays)."""
    try:
        from numpy._core.multiarray import _reconstruct  # lazy: numpy 2's name; which one exists shows on import
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # lazy: numpy 1's name
    return [(_reconstruct, "numpy.core.multiarray._reconstruct"),
            (_reconstruct, "numpy._core.multiarray._reconstruct"), np.ndarray, np.dtype,
            type(np.dtype(np.float32))]


MAE_GLOBALS = [argparse.Namespace]
AUTHORS_GLOBALS = [RecorderMeter, *_numpy_array_globals()]


def _unwrap(obj: dict, path: Path, keys=("model", "state_dict")) -> dict:
    for key in keys:
        if key in obj and isinstance(obj[key], dict):
            return obj[key]
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise CheckpointError(f"{path}: no state dict under any of {list(keys)} (top-level keys: {sorted(obj)[:10]})")


def resize_pos_embed(pos: torch.Tensor, old_grid: tuple, new_grid: tuple) -> torch.Tensor:
    """Bicubic resize of the patch rows of a (1, 1 + H*W, D) pos-embed; CLS kept apart.

    ``align_corners=False`` and no antialias, as the authors' code (timm's old
    ``resize_pos_embed``). Grids may be non-square (the fbank's 64x8 time x frequency)."""
    cls, grid = pos[:, :1], pos[:, 1:]
    if grid.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"pos_embed has {grid.shape[1]} patch rows, not {old_grid[0]}x{old_grid[1]}")
    if tuple(old_grid) == tuple(new_grid):
        return pos.clone()
    dtype = grid.dtype
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], -1).to(dtype)
    return torch.cat([cls, grid], dim=1)


def _key_report(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return f"{shown}{f', ... ({len(keys)} in all)' if len(keys) > limit else ''}"


# Keys of a MAE pre-training or fine-tuning file that are not part of the encoder.
_IGNORED = re.compile(r"^(decoder_.*|mask_token|head\..*|fc_norm\..*)$")


def load_encoder_checkpoint(encoder, path: str | Path, pretrain_grid: tuple, kind: str) -> list[str]:
    """Load a MAE-style ViT checkpoint into a :class:`ViTEncoder`; returns the ignored keys.

    The pretrained pos-embed rows are resized from ``pretrain_grid`` to the encoder's grid;
    the encoder's prompt rows keep their initialisation. Any missing encoder key, unknown key
    or shape mismatch raises :class:`CheckpointError` naming the file and the keys, so that a
    wrong file can never load silently as random weights."""
    path = Path(path)
    state = _unwrap(safe_load(path, MAE_GLOBALS), path)
    ignored = [k for k in state if _IGNORED.match(k)]
    state = {k: v for k, v in state.items() if k not in ignored}
    expected = encoder.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: not a {kind} ViT checkpoint for this model. "
            + (f"Missing keys: {_key_report(missing)}. " if missing else "")
            + (f"Unexpected keys: {_key_report(unexpected)}." if unexpected else ""))
    try:
        pos = resize_pos_embed(state["pos_embed"], pretrain_grid, encoder.grid_size)
    except ValueError as e:
        raise CheckpointError(f"{path}: pos_embed {tuple(state['pos_embed'].shape)}: {e} "
                              f"(check model.{kind}_pretrain_*)") from None
    state["pos_embed"] = torch.cat([pos, expected["pos_embed"][:, pos.shape[1]:]], dim=1)
    bad = [f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
           for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"{path}: shape mismatch for {len(bad)} keys: {'; '.join(bad[:8])}")
    encoder.load_state_dict(state, strict=True)
    return ignored


def load_pretrained_encoders(model, cfg: ModelConfig) -> dict:
    """Load the configured MAE-Face and AudioMAE files into ``model``; returns a report."""
    report = {}
    p = cfg.patch_size
    if cfg.video_checkpoint and model.use_video:
        grid = (cfg.video_pretrain_size // p,) * 2
        report["video"] = load_encoder_checkpoint(model.video_encoder, cfg.video_checkpoint, grid, "video")
    if cfg.audio_checkpoint and model.use_audio:
        grid = (cfg.audio_pretrain_frames // p, model.mel_bins // p)
        report["audio"] = load_encoder_checkpoint(model.audio_encoder, cfg.audio_checkpoint, grid, "audio")
    model.freeze_encoders()
    return report


# ---------------------------------------------------------------------------------------
# The authors' fine-tuned GenerateModel checkpoints
# ---------------------------------------------------------------------------------------

_AUTHORS_RULES = [
    # (authors' key, this project's key); \1, \2 carry block/layer indices.
    (r"image_encoder\.(cls_token|pos_embed|patch_embed\..*|blocks\..*|norm\..*)$", r"video_encoder.\1"),
    (r"audio_model\.(cls_token|pos_embed|patch_embed\..*|blocks\..*|norm\..*)$", r"audio_encoder.\1"),
    (r"image_encoder\.learnable_prompts_init$", r"video_prompts.init"),
    (r"audio_model\.learnable_prompts_init$", r"audio_prompts.init"),
    (r"image_encoder\.learnable_prompts_progr\.(\d+)$", r"video_prompts.progressive.\1"),
    (r"audio_model\.learnable_prompts_progr\.(\d+)$", r"audio_prompts.progressive.\1"),
    (r"image_encoder\.temporal_pre\.(\d+)\.(weight|bias)$", r"fusion.\1.video_down.0.\2"),
    (r"image_encoder\.temporal_pre_norm\.(\d+)\.(weight|bias)$", r"fusion.\1.video_down.1.\2"),
    (r"image_encoder\.audio_proj_pre\.(\d+)\.([01])\.(weight|bias)$", r"fusion.\1.audio_down.\2.\3"),
    (r"image_encoder\.temporal_att_post\.(\d+)\.0\.(weight|bias)$", r"fusion.\1.video_up.0.\2"),
    (r"audio_model\.temporal_att_post\.(\d+)\.0\.(weight|bias)$", r"fusion.\1.audio_up.0.\2"),
    (r"image_encoder\.all_gate\.(\d+)$", r"fusion.\1.video_gate"),
    (r"audio_model\.all_gate\.(\d+)$", r"fusion.\1.audio_gate"),
    (r"vision_proj\.(weight|bias)$", r"jam.\1"),
    (r"our_classifier\.(weight|bias)$", r"head.\1"),
    (r"temporal_net\.cls_token$", r"mtt.cls_token"),
    (r"temporal_net\.pos_embedding$", r"mtt.pos_embed"),
    (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.norm\.(weight|bias)$", r"mtt.layers.\1.attn_norm.\2"),
    (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.fn\.to_q\.weight$", r"mtt.layers.\1.attn.to_q.weight"),
    (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.fn\.to_kv\.weight$", r"mtt.layers.\1.attn.to_kv.weight"),
    (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.0\.fn\.fn\.to_out\.0\.(weight|bias)$", r"mtt.layers.\1.attn.to_out.\2"),
    (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.norm\.(weight|bias)$", r"mtt.layers.\1.ff_norm.\2"),
    (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.fn\.net\.0\.(weight|bias)$", r"mtt.layers.\1.ff.fc1.\2"),
    (r"temporal_net\.temporal_transformer\.layers\.(\d+)\.1\.fn\.fn\.net\.3\.(weight|bias)$", r"mtt.layers.\1.ff.fc2.\2"),
]
# Present in the authors' state dict, never used by their forward pass: the frozen heads
# (image 768->12, audio 768->1000) and each PreNorm's ``norm2``.
_AUTHORS_UNUSED = re.compile(r"^((image_encoder|audio_model)\.head\..*|temporal_net\..*\.fn\.norm2\..*)$")


def authors_to_project(state: dict, path: Path) -> dict:
    """Rename an authors' ``GenerateModel`` state dict (``module.`` prefix allowed) to ours."""
    rules = [(re.compile(a), b) for a, b in _AUTHORS_RULES]
    out, unknown = {}, []
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if _AUTHORS_UNUSED.match(key):
            continue
        for pattern, repl in rules:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{path}: keys that are not part of the authors' GenerateModel: {_key_report(unknown)}")
    return out


def _authors_config(state: dict, path: Path) -> tuple[ModelConfig, dict]:
    """Read the architecture (classes, resolution, widths) off the checkpoint's shapes."""
    def shape(key):
        if key not in state:
            raise CheckpointError(f"{path}: missing key {key!r}; not an MMA-DFER checkpoint")
        return tuple(state[key].shape)

    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("video_encoder.blocks."))
    num_prompts = shape("video_prompts.init")[0]
    updates = sum(1 for k in state if k.startswith("video_prompts.progressive."))
    embed_dim = shape("video_encoder.cls_token")[-1]
    patch = shape("video_encoder.patch_embed.proj.weight")[-1]
    mel_bins = 128
    v_patches = shape("video_encoder.pos_embed")[1] - 1 - num_prompts
    a_patches = shape("audio_encoder.pos_embed")[1] - 1 - num_prompts
    side = math.isqrt(v_patches)
    if side * side != v_patches or a_patches % (mel_bins // patch):
        raise CheckpointError(f"{path}: pos_embed shapes do not fit a square frame grid and a "
                              f"{mel_bins}-bin fbank ({v_patches} / {a_patches} patch rows)")
    temporal_dim, _ = shape("jam.weight")
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("mtt.layers."))
    inner = shape("mtt.layers.0.attn.to_q.weight")[0]
    cfg = ModelConfig(
        embed_dim=embed_dim, depth=depth, num_heads=embed_dim // 64, patch_size=patch,
        num_prompts=num_prompts, prompt_updates=updates, fusion_dim=shape("fusion.0.video_down.0.weight")[0],
        temporal_dim=temporal_dim, temporal_layers=layers, temporal_heads=inner // 64, temporal_head_dim=64,
        temporal_mlp_dim=shape("mtt.layers.0.ff.fc1.weight")[0], num_classes=shape("head.weight")[0])
    geometry = dict(image_size=side * patch, num_frames=shape("mtt.pos_embed")[1] - 1,
                    audio_frames=a_patches // (mel_bins // patch) * patch, mel_bins=mel_bins)
    return cfg, geometry


def load_authors_state(path: str | Path) -> tuple[dict, Optional[int]]:
    """The authors' fine-tuned state dict renamed to this project's keys, and its epoch."""
    path = Path(path)
    container = safe_load(path, AUTHORS_GLOBALS)
    raw = _unwrap(container, path, keys=("state_dict", "model"))
    epoch = container.get("epoch")
    return authors_to_project(raw, path), int(epoch) if isinstance(epoch, (int, torch.Tensor)) else None


def from_authors_checkpoint(path: str | Path, label_order: str = "authors"):
    """Build MMA-DFER from an authors' released fine-tuned checkpoint alone; eval mode.

    ``label_order="authors"`` keeps the logits in the authors' class order (identical logits to
    their code); ``"canonical"`` permutes the classifier rows into this project's order (only
    MAFW differs; see :mod:`mma_dfer.labels`)."""
    path = Path(path)
    state, epoch = load_authors_state(path)
    cfg, geometry = _authors_config(state, path)
    model = MMADFER(cfg, cfg.num_classes, **geometry)
    dataset = paper_dataset(cfg.num_classes)
    if label_order == "canonical" and dataset:
        perm = to_canonical(dataset, "mma")  # authors' row i is canonical class perm[i]
        for key in ("head.weight", "head.bias"):
            rows = torch.empty_like(state[key])
            rows[perm] = state[key]
            state[key] = rows
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{path}: does not fit the model read from its shapes. Missing: "
                              f"{_key_report(result.missing_keys)}; unexpected: {_key_report(result.unexpected_keys)}")
    if dataset:
        model.class_names = list(CLASS_NAMES[dataset] if label_order == "canonical" else LIST_ORDERS[dataset]["mma"])
    model.checkpoint_epoch = epoch
    return model.eval()
