"""``igpt``: a small image GPT (Chen, Radford, Child, Wu, Jun, Luan & Sutskever 2020, "Generative
Pretraining from Pixels").

A decoder-only transformer (GPT-2 blocks: pre-LayerNorm, causal multi-head self-attention, GELU
MLP of width 4 d, learned position embeddings) over the image as a sequence of sub-pixels in
raster order, predicting token p from a start token and tokens < p.

Tokens: on 8x8 digits the raw 8-bit values (``palette: 256``). iGPT shrinks its vocabulary with a
9-bit colour palette; here ``palette: K < 256`` groups the levels into K bins: 0 and 255 alone
(the background and ink of digit and clothing images), 1..254 cut into K - 2 contiguous bins of
near-equal width. A bin's probability is spread uniformly over its levels, so the model still
gives the exact probability of every 8-bit image (costing log2(bin width) bits on the pixels
inside a wide bin), and samples are drawn level by level from that same distribution. The
sequence stays H W C long (784 on 28x28): the palette shrinks the output layer, not the
attention; the recipes keep d and the depth small for that reason.

Sampling uses a key-value cache: each of the D steps runs the blocks on one new token and
attends over the cached keys and values (NFE = D); ``sample_levels_uncached`` (D full passes)
gives the same draws and is kept for the tests.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import UsageError
from genbench.models.base import MODELS
from genbench.models.nets.pixel_ar import N_LEVELS, PixelAutoregressive, draw_level, from_sequence, to_sequence
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per block: keys, values [B, heads, t, d_head]


def palette_bins(k: int) -> torch.Tensor:
    """Bin of each of the 256 levels [256]: identity for k = 256; else {0}, 1..254 in k - 2 bins, {255}."""
    if k == N_LEVELS:
        return torch.arange(N_LEVELS)
    middle = 1 + torch.arange(N_LEVELS - 2) * (k - 2) // (N_LEVELS - 2)
    return torch.cat([torch.tensor([0]), middle, torch.tensor([k - 1])])


class Block(nn.Module):
    """GPT-2 block: x + attn(LN(x)), then x + MLP(LN(x)); attention optionally over a key-value cache."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.reshape(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)  # [B, heads, T, d_head]

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x [B, T, d] -> [B, T, d]; with ``cache`` (keys, values of earlier positions), x holds the new positions
        and the updated cache is returned too."""
        q, k, v = (self._heads(t) for t in self.qkv(self.ln1(x)).chunk(3, dim=2))
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            # one new position attends to every cached one (all earlier)
            a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(x.shape))
        x = x + self.mlp(self.ln2(x))
        return x if cache is None else (x, (k, v))


@MODELS.register("igpt", description="small image GPT: decoder-only transformer over pixels, KV-cache sampling (Chen et al. 2020); exact likelihood, NFE = D")
class ImageGPT(PixelAutoregressive):
    family = "igpt"

    def __init__(self, data_shape, modality, num_classes=None, d_model: int = 64, n_layers: int = 4, n_heads: int = 4,
                 palette: int = 256):
        super().__init__(data_shape, modality, num_classes, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                         palette=palette)
        type(self).check_fits(self.data_shape, modality, self.num_classes, self.config)
        self.register_buffer("bin_of_level", palette_bins(palette), persistent=False)
        sizes = torch.bincount(self.bin_of_level, minlength=palette).float()
        self.register_buffer("log_bin_size", torch.log(sizes), persistent=False)
        self.sos = palette  # the start token's id
        self.tok = nn.Embedding(palette + 1, d_model)
        self.pos = nn.Embedding(self.d, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, palette)

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config: dict[str, Any]) -> None:
        d_model, n_heads, palette = int(config.get("d_model", 64)), int(config.get("n_heads", 4)), int(config.get("palette", 256))
        if n_heads < 1 or d_model % n_heads or int(config.get("n_layers", 4)) < 1:
            raise UsageError(f"igpt needs n_layers >= 1 and d_model divisible by n_heads (got {d_model}, {n_heads})")
        if not 3 <= palette <= N_LEVELS:
            raise UsageError(f"igpt palette must be between 3 and 256 levels (got {palette})")

    def init_weights(self, generator: torch.Generator) -> None:
        """Linear layers as torch's default; token and position embeddings N(0, 0.02^2) as GPT-2."""
        super().init_weights(generator)
        for emb in (self.tok, self.pos):
            emb.weight.data.copy_(0.02 * torch.randn(emb.weight.shape, generator=generator))

    def embed(self, tokens_in: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Input tokens [B, T] at positions start.. -> [B, T, d]."""
        pos = torch.arange(start, start + tokens_in.shape[1], device=tokens_in.device)
        return self.tok(tokens_in) + self.pos(pos)[None]

    def transformer(self, h: torch.Tensor) -> torch.Tensor:
        """Embedded inputs [B, T, d] -> log-probabilities over the palette [B, T, K] (causal)."""
        for block in self.blocks:
            h = block(h)
        return F.log_softmax(self.head(self.ln_f(h)), -1)

    def bins_to_levels(self, lp_bins: torch.Tensor) -> torch.Tensor:
        """Palette log-probabilities [..., K] -> level log-probabilities [..., 256] (uniform within a bin)."""
        return lp_bins[..., self.bin_of_level] - self.log_bin_size[self.bin_of_level]

    def inputs_of(self, k: torch.Tensor) -> torch.Tensor:
        """Levels [B, C, H, W] -> input tokens [B, D]: the start token, then the bins of positions 0..D-2."""
        bins = self.bin_of_level[to_sequence(k)]
        return torch.cat([torch.full_like(bins[:, :1], self.sos), bins[:, :-1]], 1)

    def level_log_probs(self, k: torch.Tensor) -> torch.Tensor:
        return self.bins_to_levels(self.transformer(self.embed(self.inputs_of(k))))

    def step(self, token: torch.Tensor, p: int, cache: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        """Input token [B] at position p, with the cache of positions < p -> level log-probs [B, 256] and the new cache."""
        h = self.embed(token[:, None], start=p)
        new_cache = []
        for i, block in enumerate(self.blocks):
            if cache is None:
                b, _, d = h.shape
                empty = h.new_zeros(b, block.n_heads, 0, d // block.n_heads)
                h, kv = block(h, (empty, empty))
            else:
                h, kv = block(h, cache[i])
            new_cache.append(kv)
        return self.bins_to_levels(F.log_softmax(self.head(self.ln_f(h[:, 0])), -1)), new_cache

    @torch.no_grad()
    def sample_levels(self, noise: SeededNoise) -> tuple[torch.Tensor, torch.Tensor, float]:
        """KV-cached sampling: D one-token steps."""
        u = noise.rand(self.d).to(self.device)
        n = len(noise)
        seq = torch.zeros(n, self.d, dtype=torch.long, device=self.device)
        log_p = torch.zeros(n, dtype=torch.float64, device=self.device)
        token = torch.full((n,), self.sos, dtype=torch.long, device=self.device)
        cache: KVCache | None = None
        net = CountingDenoiser(lambda t_, p_: self.step(t_, p_, cache))
        for p in range(self.d):
            lp, cache = net(token, p)
            seq[:, p] = draw_level(lp, u[:, p])
            log_p += lp.gather(1, seq[:, p : p + 1]).squeeze(1).double()
            token = self.bin_of_level[seq[:, p]]
        return from_sequence(seq, self.data_shape).contiguous(), log_p, float(net.calls)
