"""Multilayer perceptrons for points and flattened small images.

``MLP``: ``depth`` hidden layers of width ``hidden`` with SiLU (and optional dropout after
each activation); hidden-to-hidden layers are residual; an optional conditioning vector
(``cond_dim`` > 0) is projected per hidden layer and enters its pre-activation. ``conditioning``
says how: ``shift`` adds it (as the time embedding of Ho et al.'s DDPM blocks); ``scale_shift``
layer-normalises the pre-activation and applies (1 + scale) * h + shift, the scale-shift norm of
Dhariwal and Nichol 2021 ("use_scale_shift_norm", their Sec. 3) with LayerNorm in place of GroupNorm.
Scale-shift lets a denoiser's gain vary with the noise level: measured on mnist5k (784 inputs,
width 1024, 1,500 steps, v-prediction DDPM, DDIM 50 steps, 500 samples, domain features) FID 449
against 667 with ``shift``.
``TimeConditionedMLP``: an ``MLP`` conditioned on a scalar per example (diffusion noise level,
flow time) through ``SinusoidalEmbedding``, and optionally on a class label (``num_classes`` > 0:
``ClassEmbedding`` added to the time embedding, with a null class for unconditional passes).
"""

from __future__ import annotations

import torch
from torch import nn

from genbench.models.nets.embeddings import ClassEmbedding, SinusoidalEmbedding, add_class_embedding, broadcast_rows
from genbench.registry import check_choice


CONDITIONINGS = ("shift", "scale_shift")


class MLP(nn.Module):
    """x [N, in_dim] (+ cond [N, cond_dim]) -> [N, out_dim]."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3, cond_dim: int = 0,
                 dropout: float = 0.0, conditioning: str = "shift"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"MLP depth must be >= 1, got {depth}")
        check_choice(conditioning, list(CONDITIONINGS), "MLP conditioning")
        self.cond_dim = cond_dim
        self.conditioning = conditioning
        self.layers = nn.ModuleList([nn.Linear(in_dim, hidden)] + [nn.Linear(hidden, hidden) for _ in range(depth - 1)])
        # one projection of the condition for all layers (a shift, or a scale and a shift, per layer), split in forward
        per_layer = 2 if conditioning == "scale_shift" else 1
        self.cond = nn.Linear(cond_dim, per_layer * hidden * depth) if cond_dim else None
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False) if conditioning == "scale_shift" and cond_dim else None
        self.out = nn.Linear(hidden, out_dim)
        self.act = nn.SiLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if (cond is None) != (self.cond is None):
            raise ValueError("pass cond exactly when the MLP was built with cond_dim > 0")
        n = len(self.layers)
        mods = self.cond(cond).chunk(n * (2 if self.norm is not None else 1), dim=-1) if self.cond is not None else None
        h = None
        for i, layer in enumerate(self.layers):
            # [N, hidden] pre-activation, with the projected condition: + shift, or normalised, * (1 + scale) + shift
            pre = layer(x if h is None else h)
            if self.norm is not None:
                pre = self.norm(pre) * (1.0 + mods[2 * i]) + mods[2 * i + 1]
            elif mods is not None:
                pre = pre + mods[i]
            act = self.dropout(self.act(pre))
            h = act if h is None else h + act
        return self.out(h)


class TimeConditionedMLP(nn.Module):
    """x [N, in_dim], t [N] (or scalar)[, y [N]] -> [N, out_dim], t embedded sinusoidally (scaled by ``t_scale``).

    With ``num_classes`` > 0 a class label y (``num_classes`` = the null class, also taken when y is None)
    adds its embedding to the time embedding. ``conditioning``: how the embedding enters (``MLP``).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3, emb_dim: int = 64,
                 t_scale: float = 1000.0, dropout: float = 0.0, num_classes: int = 0, conditioning: str = "shift"):
        super().__init__()
        self.embed = SinusoidalEmbedding(emb_dim, scale=t_scale)
        self.label_embed = ClassEmbedding(num_classes, emb_dim) if num_classes else None
        self.mlp = MLP(in_dim, out_dim, hidden, depth, cond_dim=emb_dim, dropout=dropout, conditioning=conditioning)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        t = broadcast_rows(t, x.shape[0], x.device)
        return self.mlp(x, add_class_embedding(self.label_embed, self.embed(t), y))
