"""Frozen ViT-B/16 encoders (MAE-Face for frames, AudioMAE for fbanks) built from timm blocks.

Key names follow timm's ``VisionTransformer`` (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.*``, ``norm``), so the published checkpoints load without renaming. The forward pass
is split per block because MMA-DFER interleaves the two encoders block by block (fusion and
progressive prompts sit between blocks).
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import torch
import torch.nn as nn
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint


class ViTEncoder(nn.Module):
    """A ViT whose token sequence is ``[CLS, patches, prompt slots]`` with one learned pos-embed.

    Args:
        input_size: (H, W) of the input: the frame size, or (fbank frames, mel bins).
        in_chans: 3 for RGB frames, 1 for the fbank.
        num_prompts: prompt slots appended after the patches (their pos-embed rows are extra).
        prompt_pos_std: std of those extra pos-embed rows (authors: ``torch.randn``, std 1).
        drop_path_rate: stochastic depth, linear over the blocks (timm schedule).
    """

    def __init__(self, input_size: tuple, in_chans: int, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, patch_size: int = 16,
                 num_prompts: int = 0, prompt_pos_std: float = 1.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size=input_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim)
        self.grid_size = tuple(self.patch_embed.grid_size)
        self.num_patches = self.patch_embed.num_patches
        self.num_prompts = num_prompts
        self.embed_dim = embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches + num_prompts, embed_dim))
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # timm linear schedule
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=dpr[i], norm_layer=norm)
            for i in range(depth))
        self.norm = norm(embed_dim)
        self.grad_checkpointing = False
        self._init_weights(prompt_pos_std)

    def _init_weights(self, prompt_pos_std: float) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        with torch.no_grad():
            self.pos_embed[:, 1 + self.num_patches:].normal_(std=prompt_pos_std)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    @property
    def prompt_offset(self) -> int:
        """Index of the first prompt slot: after CLS and the patches."""
        return 1 + self.num_patches

    def embed(self, x: torch.Tensor, prompts: Optional[torch.Tensor]) -> torch.Tensor:
        """Patchify, prepend CLS, append the prompt tokens, add the positional embedding."""
        x = self.patch_embed(x)
        parts = [self.cls_token.expand(x.shape[0], -1, -1), x]
        if prompts is not None:
            parts.append(prompts.expand(x.shape[0], -1, -1))
        x = torch.cat(parts, dim=1)
        return x + self.pos_embed[:, : x.shape[1]]

    def block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Run block ``i`` in its weights' dtype and return the stream in that dtype.

        The dtype is read each call: DeepSpeed's whole-module cast and the trainer's
        :meth:`MMADFER.cast_frozen` both change it after construction. The stream is cast at
        most once (entering the first block) and never back: a cast around every block is two
        extra passes over the activations per block. Half-precision blocks run with autocast
        off, because autocast would run their LayerNorms in fp32 (casting the activations up and
        back) although a half LayerNorm already accumulates in fp32.
        """
        blk = self.blocks[i]
        dtype = blk.norm1.weight.dtype
        x = x.to(dtype)
        if dtype != torch.float32 and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self._run_block(blk, x)
        return self._run_block(blk, x)

    def _run_block(self, blk: Block, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(blk, x, use_reentrant=False)
        return blk(x)

    def cls_output(self, x: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm on token 0 (LayerNorm is per token, so norm-then-slice is the same)."""
        return self.norm(x[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain encoder pass with no prompts and no fusion: the pretrained model's CLS feature."""
        x = self.embed(x, None)
        for i in range(len(self.blocks)):
            x = self.block(i, x)
        return self.cls_output(x)
