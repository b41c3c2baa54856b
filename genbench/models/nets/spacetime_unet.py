"""A factorised space-time UNet for videos (Ho et al. 2022, "Video Diffusion Models", Section 3).

Ho et al. extend the 2-D diffusion UNet to video by factorising space and time: every 2-D
convolution and spatial attention runs on each frame alone (frames folded into the batch), and
after each spatial block a temporal block mixes the frames at every spatial position. Their
temporal block is attention over the frames with relative position embeddings; ``temporal="conv"``
uses a 1-D convolution over time instead (kernel 3, as in many later factorised video UNets), and
``temporal="none"`` drops the temporal blocks, which leaves a 2-D image UNet applied to each frame
independently (Ho et al. train that way on images by masking the temporal attention): the per-frame
baseline of the video benchmark.

``patch`` p > 1 folds each p x p block of pixels into channels first (pixel unshuffle, as patch embeddings
do) and unfolds the output, so the UNet runs at 1 / p^2 of the positions: on a CPU, a 16x16 frame costs
what an 8x8 one does.

Input [N, T, C, H, W] with one noise level per video, output of the same shape. The temporal blocks
are residual with zero-initialised outputs, so at initialisation the net is the per-frame UNet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genbench.models.nets.embeddings import broadcast_rows
from genbench.models.nets.unet import UNet, group_norm, zero_init

TEMPORAL = ("attention", "conv", "none")
HEAD_CHANNELS = 32  # channels per attention head


class TemporalAttention(nn.Module):
    """Multi-head attention over the T frames at each spatial position, with a learned relative position
    bias per head (Shaw et al. 2018, as Ho et al. 2022 use); residual. [N*T, C, H, W] -> same."""

    def __init__(self, channels: int, frames: int):
        super().__init__()
        self.frames, self.heads = frames, max(1, channels // HEAD_CHANNELS)
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))
        self.rel_bias = nn.Parameter(torch.zeros(self.heads, 2 * frames - 1))  # bias[h, (j - i) + T - 1]
        offsets = torch.arange(frames)[None, :] - torch.arange(frames)[:, None] + frames - 1  # [T, T]
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        nt, c, h, w = x.shape
        n, t, heads = nt // self.frames, self.frames, self.heads
        # [N*T, C, H, W] -> [N*H*W, T, C]: one sequence of frames per video and position
        seq = self.norm(x).reshape(n, t, c, h * w).permute(0, 3, 1, 2).reshape(n * h * w, t, c)
        # [B, T, 3C] -> three [B, heads, T, C / heads]
        q, k, v = self.qkv(seq).reshape(-1, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        bias = self.rel_bias[:, self.offsets]  # [heads, T, T]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # [B, heads, T, C / heads]
        out = self.proj(out.transpose(1, 2).reshape(-1, t, c))  # [B, T, C]
        return x + out.reshape(n, h * w, t, c).permute(0, 2, 3, 1).reshape(nt, c, h, w)


class TemporalConv(nn.Module):
    """GroupNorm, SiLU and a 1-D convolution over the T frames at each spatial position; residual."""

    def __init__(self, channels: int, frames: int, kernel: int = 3):
        super().__init__()
        self.frames = frames
        self.norm = group_norm(channels)
        self.conv = zero_init(nn.Conv1d(channels, channels, kernel, padding=kernel // 2))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        nt, c, h, w = x.shape
        n, t = nt // self.frames, self.frames
        # [N*T, C, H, W] -> [N*H*W, C, T]
        seq = F.silu(self.norm(x)).reshape(n, t, c, h * w).permute(0, 3, 2, 1).reshape(n * h * w, c, t)
        out = self.conv(seq).reshape(n, h * w, c, t).permute(0, 3, 2, 1).reshape(nt, c, h, w)
        return x + out


def temporal_block(kind: str, channels: int, frames: int) -> list[nn.Module]:
    if kind == "attention":
        return [TemporalAttention(channels, frames)]
    if kind == "conv":
        return [TemporalConv(channels, frames)]
    return []


class SpaceTimeUNet(UNet):
    """x [N, T, C, H, W], t [N] (one noise level per video) -> [N, T, out_channels, H, W].

    The 2-D UNet of ``genbench.models.nets.unet`` on the N*T frames, with a ``temporal`` block after every
    residual block (and after the middle's spatial attention)."""

    def __init__(self, frames: int, in_channels: int, channels: int = 32, channel_mult: Sequence[int] = (1, 2),
                 num_res_blocks: int = 1, attn_levels: Sequence[int] = (), temporal: str = "attention",
                 patch: int = 1, t_scale: float = 1000.0, dropout: float = 0.0):
        if temporal not in TEMPORAL:
            raise ValueError(f"temporal must be one of {TEMPORAL}, got {temporal!r}")
        # read by _stage, which UNet.__init__ calls: set before nn.Module.__init__ (plain attributes)
        object.__setattr__(self, "frames", int(frames))
        object.__setattr__(self, "temporal", temporal)
        object.__setattr__(self, "patch", int(patch))
        super().__init__(in_channels * patch**2, channels=channels, channel_mult=channel_mult, num_res_blocks=num_res_blocks,
                         attn_levels=attn_levels, t_scale=t_scale, dropout=dropout)
        mid_channels = self.mid[0].conv1.out_channels
        for i, block in enumerate(temporal_block(temporal, mid_channels, self.frames)):
            self.mid.insert(2 + i, block)

    def _stage(self, c_in: int, c_out: int, emb_dim: int, dropout: float, attn: bool) -> nn.ModuleList:
        return nn.ModuleList(list(UNet._stage(c_in, c_out, emb_dim, dropout, attn))
                             + temporal_block(self.temporal, c_out, self.frames))

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        n, frames = x.shape[:2]
        if frames != self.frames:
            raise ValueError(f"the net was built for {self.frames} frames, got {frames}")
        t_frames = broadcast_rows(t, n, x.device).repeat_interleave(frames)  # [N*T]: each frame its video's level
        # [N*T, C, H, W] -> [N*T, C p^2, H / p, W / p]: p x p patches as channels
        h = F.pixel_unshuffle(x.flatten(0, 1), self.patch) if self.patch > 1 else x.flatten(0, 1)
        out = super().forward(h, t_frames)
        out = F.pixel_shuffle(out, self.patch) if self.patch > 1 else out  # [N*T, C, H, W]
        return out.reshape(n, frames, *out.shape[1:])
