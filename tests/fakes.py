"""Random-weight checkpoints in the *real* key layouts of the published files.

No model hub is reachable from the machines this project is tested on, so the loaders are
exercised on files with the exact structure of the real ones: MAE-Face's and AudioMAE's
pre-training checkpoints (``{'model': ..., 'args': Namespace}``, timm-ViT keys, AudioMAE's
decoder keys) at any width and depth."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def mae_state_dict(kind: str, embed_dim: int = 768, depth: int = 12, mlp_ratio: float = 4.0,
                   patch_size: int = 16, grid: tuple = (14, 14), decoder_dim: int = 0,
                   decoder_depth: int = 0, seed: int = 0) -> dict:
    """A MAE ViT encoder state dict (random), plus AudioMAE-style decoder keys when asked."""
    g = torch.Generator().manual_seed(seed)
    in_chans = 3 if kind == "video" else 1
    hidden = int(embed_dim * mlp_ratio)

    def rnd(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    sd = {"cls_token": rnd(1, 1, embed_dim), "pos_embed": rnd(1, 1 + grid[0] * grid[1], embed_dim, std=0.5),
          "patch_embed.proj.weight": rnd(embed_dim, in_chans, patch_size, patch_size),
          "patch_embed.proj.bias": rnd(embed_dim)}
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update({
            b + "norm1.weight": 1 + rnd(embed_dim), b + "norm1.bias": rnd(embed_dim),
            b + "attn.qkv.weight": rnd(3 * embed_dim, embed_dim), b + "attn.qkv.bias": rnd(3 * embed_dim),
            b + "attn.proj.weight": rnd(embed_dim, embed_dim), b + "attn.proj.bias": rnd(embed_dim),
            b + "norm2.weight": 1 + rnd(embed_dim), b + "norm2.bias": rnd(embed_dim),
            b + "mlp.fc1.weight": rnd(hidden, embed_dim), b + "mlp.fc1.bias": rnd(hidden),
            b + "mlp.fc2.weight": rnd(embed_dim, hidden), b + "mlp.fc2.bias": rnd(embed_dim),
        })
    sd["norm.weight"], sd["norm.bias"] = 1 + rnd(embed_dim), rnd(embed_dim)
    if decoder_dim:
        sd["mask_token"] = rnd(1, 1, decoder_dim)
        sd["decoder_embed.weight"], sd["decoder_embed.bias"] = rnd(decoder_dim, embed_dim), rnd(decoder_dim)
        sd["decoder_pos_embed"] = rnd(1, 1 + grid[0] * grid[1], decoder_dim)
        for i in range(decoder_depth):
            sd[f"decoder_blocks.{i}.norm1.weight"] = 1 + rnd(decoder_dim)
            sd[f"decoder_blocks.{i}.attn.qkv.weight"] = rnd(3 * decoder_dim, decoder_dim)
        sd["decoder_norm.weight"], sd["decoder_norm.bias"] = 1 + rnd(decoder_dim), rnd(decoder_dim)
        sd["decoder_pred.weight"] = rnd(patch_size ** 2 * in_chans, decoder_dim)
        sd["decoder_pred.bias"] = rnd(patch_size ** 2 * in_chans)
    return sd


def write_mae_checkpoint(path: str | Path, kind: str, **kwargs) -> Path:
    """Save like MAE's ``misc.save_model``: ``{'model', 'epoch', 'args'}`` with an argparse Namespace.

    ``kind="video"`` is MAE-Face's layout (224 px, 14x14 grid); ``kind="audio"`` AudioMAE's
    (1 channel, 64x8 grid for 1024 x 128 fbanks, decoder keys included)."""
    if kind == "audio":
        kwargs.setdefault("grid", (64, 8))
        kwargs.setdefault("decoder_dim", 16)
        kwargs.setdefault("decoder_depth", 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(model=f"mae_vit_base_patch16_{kind}", epoch=0, norm_pix_loss=True)
    torch.save({"model": mae_state_dict(kind, **kwargs), "epoch": 99, "args": args}, path)
    return path
