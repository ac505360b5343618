"""Progressive learnable prompts (paper section 3.2, eq. 1)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class ProgressivePrompts(nn.Module):
    """M prompt tokens concatenated after the embedding, plus L sets of M/L tokens that are
    *added* to successive slices of them at evenly spaced depths.

    With the paper's M=6, L=2 on a 12-block encoder: slots 1-3 get ``progressive[0]`` after
    block 1 and slots 4-6 get ``progressive[1]`` after block 7 (1-indexed), as in the authors'
    code. ``num_updates=0`` is the non-progressive variant (Table 4 "Pr."); ``num_prompts=0``
    turns prompts off (Table 7 "0").

    Args:
        num_prompts: M, the prompt tokens of the sequence.
        num_updates: L, how many progressive updates.
        depth: encoder blocks; updates happen after blocks 0, depth/L, 2*depth/L, ... (0-indexed).
        dim: token width.
    """

    def __init__(self, num_prompts: int, num_updates: int, depth: int, dim: int):
        super().__init__()
        if num_updates and (num_prompts % num_updates or depth % num_updates):
            raise ValueError(f"num_prompts={num_prompts} and depth={depth} must be multiples of "
                             f"num_updates={num_updates}")
        self.num_prompts = num_prompts
        self.num_updates = num_updates
        self.tokens_per_update = num_prompts // num_updates if num_updates else 0
        self.every = depth // num_updates if num_updates else 0
        scale = dim ** -0.5
        self.init = nn.Parameter(torch.randn(num_prompts, dim) * scale) if num_prompts else None
        self.progressive = nn.ParameterList(
            nn.Parameter(torch.randn(self.tokens_per_update, dim) * scale) for _ in range(num_updates))

    def tokens(self) -> Optional[torch.Tensor]:
        """The initial prompt tokens, (1, M, D), or None when prompts are off."""
        return None if self.init is None else self.init.unsqueeze(0)

    def update_index(self, block: int) -> Optional[int]:
        """Which progressive set is added after ``block`` (0-indexed), or None."""
        if not self.num_updates or block % self.every:
            return None
        return block // self.every

    def update(self, block: int, x: torch.Tensor, offset: int) -> torch.Tensor:
        """Add the progressive set due after ``block`` to its slice of the prompt slots.

        ``offset`` is the sequence index of the first prompt slot. The set is zero-padded to the
        sequence length and added, which leaves every other token bit-identical and keeps the
        op out-of-place (safe for autograd and activation checkpointing).
        """
        k = self.update_index(block)
        if k is None:
            return x
        start = offset + k * self.tokens_per_update
        end = start + self.tokens_per_update
        delta = F.pad(self.progressive[k], (0, 0, start, x.shape[1] - end))
        return x + delta.to(x.dtype)
