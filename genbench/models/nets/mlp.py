"""Multilayer perceptrons for points and flattened small images.

``MLP``: ``depth`` hidden layers of width ``hidden`` with SiLU (and optional dropout after
each activation); hidden-to-hidden layers are residual; an optional conditioning vector
(``cond_dim`` > 0) is projected and added to every hidden layer's pre-activation (additive
conditioning, as the time embedding of DDPM's blocks).
``TimeConditionedMLP``: an ``MLP`` conditioned on a scalar per example (diffusion noise level,
flow time) through ``SinusoidalEmbedding``, and optionally on a class label (``num_classes`` > 0:
``ClassEmbedding`` added to the time embedding, with a null class for unconditional passes).
"""

from __future__ import annotations

import torch
from torch import nn

from genbench.models.nets.embeddings import ClassEmbedding, SinusoidalEmbedding, add_class_embedding, broadcast_rows


class MLP(nn.Module):
    """x [N, in_dim] (+ cond [N, cond_dim]) -> [N, out_dim]."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3, cond_dim: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        if depth < 1:
            raise ValueError(f"MLP depth must be >= 1, got {depth}")
        self.cond_dim = cond_dim
        self.layers = nn.ModuleList([nn.Linear(in_dim, hidden)] + [nn.Linear(hidden, hidden) for _ in range(depth - 1)])
        # one projection of the condition for all layers, split per layer in forward
        self.cond = nn.Linear(cond_dim, hidden * depth) if cond_dim else None
        self.out = nn.Linear(hidden, out_dim)
        self.act = nn.SiLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if (cond is None) != (self.cond is None):
            raise ValueError("pass cond exactly when the MLP was built with cond_dim > 0")
        shifts = self.cond(cond).chunk(len(self.layers), dim=-1) if self.cond is not None else None
        h = None
        for i, layer in enumerate(self.layers):
            # [N, hidden] pre-activation, plus the projected condition
            pre = layer(x if h is None else h)
            if shifts is not None:
                pre = pre + shifts[i]
            act = self.dropout(self.act(pre))
            h = act if h is None else h + act
        return self.out(h)


class TimeConditionedMLP(nn.Module):
    """x [N, in_dim], t [N] (or scalar)[, y [N]] -> [N, out_dim], t embedded sinusoidally (scaled by ``t_scale``).

    With ``num_classes`` > 0 a class label y (``num_classes`` = the null class, also taken when y is None)
    adds its embedding to the time embedding.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3, emb_dim: int = 64,
                 t_scale: float = 1000.0, dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        self.embed = SinusoidalEmbedding(emb_dim, scale=t_scale)
        self.label_embed = ClassEmbedding(num_classes, emb_dim) if num_classes else None
        self.mlp = MLP(in_dim, out_dim, hidden, depth, cond_dim=emb_dim, dropout=dropout)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        t = broadcast_rows(t, x.shape[0], x.device)
        return self.mlp(x, add_class_embedding(self.label_embed, self.embed(t), y))
