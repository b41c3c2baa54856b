"""Embeddings of a scalar (time, noise level) for conditioning networks.

``sinusoidal_embedding`` is the transformer positional encoding used for diffusion time steps
by Ho et al. 2020 (DDPM) and Dhariwal & Nichol 2021 (ADM): half cosines, half sines over a
geometric ladder of frequencies from 1 down to 1 / max_period.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """[N] scalars -> [N, dim] features [cos(t w_k), sin(t w_k)], w_k = max_period^(-k / (dim/2))."""
    half = dim // 2
    t = t.reshape(-1).float()
    # [half] frequencies, geometric from 1 to 1/max_period
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    # [N, half] phases
    args = t[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class SinusoidalEmbedding(nn.Module):
    """Scalar -> sinusoidal features -> two-layer MLP (the time-embedding block of DDPM/ADM).

    ``scale`` multiplies the scalar first: a time in [0, 1] or an EDM ``c_noise = ln(sigma) / 4``
    wants a scale near 1000 so that the high frequencies resolve it, as DDPM's t in [0, 1000] does.
    """

    def __init__(self, dim: int, out_dim: int | None = None, scale: float = 1.0, max_period: float = 10_000.0):
        super().__init__()
        self.dim, self.scale, self.max_period = dim, scale, max_period
        out_dim = out_dim or dim
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # [N] -> [N, out_dim]
        return self.mlp(sinusoidal_embedding(t * self.scale, self.dim, self.max_period))


def broadcast_rows(t: torch.Tensor | float, n: int, device: torch.device) -> torch.Tensor:
    """A scalar, [1] or [N] tensor -> [N] float tensor on ``device``."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1)
    return t.expand(n) if t.numel() == 1 else t


class ClassEmbedding(nn.Module):
    """Class label -> [N, dim] learned vector, with one extra row for the null class (index ``num_classes``),
    the "no label" input of classifier-free guidance (Ho and Salimans 2022, Sec. 3.2)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = int(num_classes)
        self.table = nn.Embedding(self.num_classes + 1, dim)

    def forward(self, y: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
        """y [N] int64 in 0..num_classes (num_classes = null), or None (all null) -> [N, dim]."""
        if y is None:
            y = torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        return self.table(y.to(device=device, dtype=torch.long).reshape(-1).expand(n))


def add_class_embedding(label_embed: ClassEmbedding | None, emb: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """emb [N, E] plus the class embedding of y when the network is class-conditional; a label given to a
    network without classes is an error (it would be silently ignored)."""
    if label_embed is None:
        if y is not None:
            raise ValueError("class labels given to a network built without num_classes")
        return emb
    return emb + label_embed(y, emb.shape[0], emb.device)
