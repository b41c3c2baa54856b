"""What the autoregressive image families (``pixelcnn``, ``pixelrnn``, ``igpt``) share.

Images are sequences of sub-pixels in raster order (row, column, then channel): position
p = (h W + w) C + c of D = C H W. A family returns, for every position, log-probabilities over the
256 pixel levels given the earlier positions (``level_log_probs``); everything else is here:

* training: maximum likelihood of the 8-bit levels of the training images, round((x + 1) 127.5);
* ``log_likelihood(x)``: x arrives uniformly dequantised, (u + U) / 128 - 1, and is mapped back to
  its level u = floor((x + 1) 128) clamped to 0..255 (floor, not round: round would move half of
  each bin to the next level). It returns log P(u) + D ln 128, the log-density of the dequantised
  data on [-1, 1] (256 bins of width 2/256), so bits/dim = -log2 P(u) / D exactly: the exact NLL
  of the 8-bit data (kind ``exact``), the convention MADE (``autoregressive``) uses too;
* sampling: D sequential draws, each level by the inverse CDF of its 256-way distribution at a
  per-sample uniform, with log P of the drawn sequence accumulated on the way (NFE = D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genbench.data.base import IMAGES, Samples, dequantised_to_uint8
from genbench.errors import UsageError
from genbench.models.base import NATIVE, GenerativeModel, Progress, TrainBudget
from genbench.models.nets.training import init_parameters, train_with_adam
from genbench.registry import check_choice
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise

N_LEVELS = 256


def levels_of_grid_images(x: torch.Tensor) -> torch.Tensor:
    """Images on the 8-bit grid k / 127.5 - 1 -> levels k (long)."""
    return torch.round((x + 1) * 127.5).clamp(0, N_LEVELS - 1).long()


def levels_of_dequantised(x: torch.Tensor) -> torch.Tensor:
    """Dequantised x = (k + U[0, 1)) / 128 - 1 -> k = floor((x + 1) 128) clamped to 0..255 (in float64)."""
    return dequantised_to_uint8(x).long()


def levels_to_images(k: torch.Tensor) -> torch.Tensor:
    """Levels -> the 8-bit grid of [-1, 1] (float)."""
    return k.float() / 127.5 - 1


def to_sequence(k: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, D] in raster order (row, column, channel)."""
    return k.permute(0, 2, 3, 1).reshape(k.shape[0], -1)


def from_sequence(s: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """[B, D] -> [B, C, H, W]; the inverse of ``to_sequence``."""
    c, h, w = shape
    return s.reshape(s.shape[0], h, w, c).permute(0, 3, 1, 2)


def draw_level(log_probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: log-probabilities [B, 256], u [B] in [0, 1) -> level [B]."""
    cdf = log_probs.double().exp().cumsum(1)
    cdf = cdf / cdf[:, -1:]  # exact normalisation, so u < 1 always lands on a level
    return torch.searchsorted(cdf, u.double()[:, None].contiguous()).clamp(max=log_probs.shape[1] - 1).squeeze(1)


def channel_groups(n: int, c: int) -> torch.Tensor:
    """Which sub-pixel (colour channel) each of ``n`` feature channels belongs to: contiguous blocks."""
    return torch.arange(n) * c // n


def centre_channel_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, mask_type: str) -> torch.Tensor:
    """[out, in] connectivity at the current pixel: type A sees earlier sub-pixels only, type B also its own."""
    if mask_type == "A":
        return (in_groups[None, :] < out_groups[:, None]).float()
    return (in_groups[None, :] <= out_groups[:, None]).float()


class PixelAutoregressive(GenerativeModel):
    """Base of the discrete autoregressive image families (see the module docstring)."""

    likelihood_kind = "exact"
    modalities = (IMAGES,)

    def __init__(self, data_shape, modality, num_classes=None, **config):
        super().__init__(data_shape, modality, num_classes, **config)
        if len(self.data_shape) != 3:
            raise UsageError(f"{self.family} needs images [C, H, W], got data of shape {list(self.data_shape)}")
        self.d = math.prod(self.data_shape)

    def level_log_probs(self, k: torch.Tensor) -> torch.Tensor:
        """log P(level at p = v | levels before p) [B, D, 256] for levels k [B, C, H, W]; position p may
        depend on k only at positions before p."""
        raise NotImplementedError

    def log_prob_levels(self, k: torch.Tensor) -> torch.Tensor:
        """log P(k) [B] in nats, the exact probability of the 8-bit image."""
        lp = self.level_log_probs(k)
        return lp.gather(2, to_sequence(k)[..., None]).squeeze(2).sum(1)

    def init_weights(self, generator: torch.Generator) -> None:
        """Fresh weights drawn from the training generator (convolutions and linear layers as torch's default)."""
        init_parameters(self, generator)

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Maximum likelihood of the training images' 8-bit levels (loss: nats per sub-pixel)."""
        self.init_weights(generator)
        k = levels_of_grid_images(data.x.to(self.device).float())

        def nll(batch: torch.Tensor) -> torch.Tensor:
            return -self.log_prob_levels(batch).mean() / self.d

        return train_with_adam(self, nll, k, budget, generator, progress, grad_clip=10.0)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """log P(u) + D ln 128 at the levels u = floor((x + 1) 128) of the caller's dequantised x."""
        return self.log_prob_levels(levels_of_dequantised(x.to(self.device))) + self.d * math.log(128.0)

    @torch.no_grad()
    def sample_levels(self, noise: SeededNoise) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Levels [N, C, H, W], log P of each drawn image [N] and the NFE; subclasses may cache."""
        return self.sample_levels_uncached(noise)

    @torch.no_grad()
    def sample_levels_uncached(self, noise: SeededNoise) -> tuple[torch.Tensor, torch.Tensor, float]:
        """D full network passes, position p drawn from the p-th output of the pass over the image so far."""
        u = noise.rand(self.d).to(self.device)
        k = torch.zeros(len(noise), *self.data_shape, dtype=torch.long, device=self.device)
        seq = to_sequence(k)
        log_p = torch.zeros(len(noise), dtype=torch.float64, device=self.device)
        net = CountingDenoiser(lambda k_, _: self.level_log_probs(k_))
        for p in range(self.d):
            lp = net(from_sequence(seq, self.data_shape), None)[:, p]
            seq[:, p] = draw_level(lp, u[:, p])
            log_p += lp.gather(1, seq[:, p:p + 1]).squeeze(1).double()
        return from_sequence(seq, self.data_shape).contiguous(), log_p, float(net.calls)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        check_choice(sampler, self.supported_samplers(), f"sampler for the {self.family} family")
        k, _, nfe = self.sample_levels(noise)
        return levels_to_images(k), nfe


def log_softmax_levels(logits: torch.Tensor) -> torch.Tensor:
    """Logits [B, C*256, H, W] (channel-major blocks of 256) -> log-probabilities [B, D, 256] in raster order."""
    b, _, h, w = logits.shape
    lp = F.log_softmax(logits.reshape(b, -1, N_LEVELS, h, w), dim=2)  # [B, C, 256, H, W]
    return lp.permute(0, 3, 4, 1, 2).reshape(b, -1, N_LEVELS)
