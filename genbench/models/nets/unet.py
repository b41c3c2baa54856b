"""A small UNet for images, conditioned on a scalar (noise level or time).

The layout follows Ho et al. 2020 (DDPM) and Dhariwal & Nichol 2021 (ADM), scaled down:
residual blocks (GroupNorm, SiLU, 3x3 conv, additive time embedding), optional single-head
self-attention at chosen levels and in the middle, stride-2 conv downsampling, nearest
upsampling to the skip's size (so odd sizes such as 28 -> 14 -> 7 work), skip connections
by concatenation, and zero-initialised output convolutions so every block starts as identity.
With ``num_classes`` > 0 a class label's embedding is added to the time embedding (ADM's class
conditioning), with a null class for unconditional passes (classifier-free guidance).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genbench.models.nets.embeddings import ClassEmbedding, SinusoidalEmbedding, add_class_embedding, broadcast_rows


def group_norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero the weights and bias and mark the module so re-initialisation keeps them zero."""
    for p in module.parameters():
        nn.init.zeros_(p)
    module.zero_init = True
    return module


class ResBlock(nn.Module):
    """[N, c_in, H, W], emb [N, E] -> [N, c_out, H, W]."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.dropout = group_norm(c_out), nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        # add the embedding per channel: [N, c_out, 1, 1]
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        # [N, 3, C, HW] -> three [N, HW, C]
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).transpose(2, 3).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(n, c, h, w))


class UNet(nn.Module):
    """x [N, C, H, W], t [N] (or scalar)[, y [N]] -> [N, out_channels, H, W].

    ``channel_mult`` gives one level per entry (width ``channels * mult``); levels after the first
    halve the resolution. ``attn_levels`` lists level indices that get self-attention. With
    ``num_classes`` > 0, y (``num_classes`` = the null class, also taken when y is None) conditions every block.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, channels: int = 64,
                 channel_mult: Sequence[int] = (1, 2), num_res_blocks: int = 2, attn_levels: Sequence[int] = (),
                 emb_dim: int | None = None, t_scale: float = 1000.0, dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        emb_dim = emb_dim or 4 * channels
        self.embed = SinusoidalEmbedding(channels, emb_dim, scale=t_scale)
        self.label_embed = ClassEmbedding(num_classes, emb_dim) if num_classes else None
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down, skip_ch, ch = nn.ModuleList(), [channels], channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                self.down.append(self._stage(ch, channels * mult, emb_dim, dropout, level in attn_levels))
                ch = channels * mult
                skip_ch.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_ch.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), AttnBlock(ch), ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(self._stage(ch + skip_ch.pop(), channels * mult, emb_dim, dropout, level in attn_levels))
                ch = channels * mult
            if level > 0:
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))  # after nearest upsampling
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, out_channels or in_channels, 3, padding=1)))

    @staticmethod
    def _stage(c_in: int, c_out: int, emb_dim: int, dropout: float, attn: bool) -> nn.ModuleList:
        return nn.ModuleList([ResBlock(c_in, c_out, emb_dim, dropout)] + ([AttnBlock(c_out)] if attn else []))

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = add_class_embedding(self.label_embed, self.embed(broadcast_rows(t, x.shape[0], x.device)), y)  # [N, E]
        h = self.inp(x)
        skips = [h]
        for block in self.down:
            h = block(h) if isinstance(block, nn.Conv2d) else _run_stage(block, h, emb)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            if isinstance(block, nn.Conv2d):
                # upsample to the size of the skip it will meet next
                h = block(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
            else:
                h = _run_stage(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def _run_stage(stage: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    for block in stage:
        h = block(h, emb)
    return h
