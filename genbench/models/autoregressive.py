"""``autoregressive``: MADE, a masked autoencoder with exact autoregressive likelihood.

Germain, Gregor, Murray & Larochelle 2015, "MADE: Masked Autoencoder for Distribution
Estimation": the weight masks of an MLP make output d depend only on inputs 1..d-1, so
one pass gives every conditional p(x_d | x_<d) and log p(x) = sum_d log p(x_d | x_<d).
Degrees are assigned cyclically (no random state, so a checkpoint rebuilds the same masks).

Conditionals:
  points: a K-component Gaussian mixture per dimension (a continuous density, nats);
  images: a K-component discretised logistic mixture over the 256 pixel values
    (Salimans et al. 2017, PixelCNN++, eq. 2) -- an exact discrete likelihood P(k).
    ``log_likelihood`` takes uniformly dequantised pixels x = (k + U[0, 1)) / 128 - 1 (as the
    runner sends them), recovers k = floor((x + 1) * 128), and returns log P(k) + D ln 128, the
    log-density of the dequantised pixels on the [-1, 1] scale (256 bins of width 2/256), so
    bits/dim = -ll / (D ln 2) + 7 = -log2 P(k) / D exactly, whatever the dequantisation noise.

Sampling is sequential: D network passes (NFE = D), each fixing one more coordinate.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import IMAGES, ROUND, Samples, dequantised_to_uint8, images_to_uint8, uint8_to_images
from genbench.errors import UsageError
from genbench.models.base import MODELS, NATIVE, GenerativeModel, Progress, TrainBudget
from genbench.models.nets.training import init_parameters, train_with_adam
from genbench.registry import check_choice
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise

LOG_2PI = math.log(2 * math.pi)
HALF_BIN = 1.0 / 255.0  # half the spacing of the 8-bit grid k / 127.5 - 1
MIN_LOG_SCALE = -7.0  # lower bound on the logistic log-scale (as PixelCNN++)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 connectivity mask [out, in]."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_degrees(d: int, hidden: int, depth: int) -> list[torch.Tensor]:
    """Degrees of the input (1..D) and of each hidden layer (cyclic over 1..D-1)."""
    hidden_degrees = torch.arange(hidden) % max(d - 1, 1) + 1
    return [torch.arange(1, d + 1)] + [hidden_degrees] * depth


def made_masks(d: int, hidden: int, depth: int, n_params: int) -> list[torch.Tensor]:
    """Masks [out, in] of every layer; the output holds n_params values per dimension (param-major)."""
    degrees = made_degrees(d, hidden, depth)
    # hidden unit k sees input/unit j when m_k >= m_j
    masks = [(m_out[:, None] >= m_in[None, :]) for m_in, m_out in itertools.pairwise(degrees)]
    # output for dimension i sees hidden unit j when i > m_j
    out_degrees = torch.arange(1, d + 1).repeat(n_params)
    masks.append(out_degrees[:, None] > degrees[-1][None, :])
    return masks


class MADE(nn.Module):
    """Masked MLP: x [B, D] -> conditional parameters [B, n_params, D]; param[:, :, d] depends on x[:, :d]."""

    def __init__(self, d: int, hidden: int, depth: int, n_params: int):
        super().__init__()
        self.d, self.n_params = d, n_params
        layers: list[nn.Module] = []
        for mask in made_masks(d, hidden, depth, n_params):
            layers += [MaskedLinear(mask), nn.SiLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0], self.n_params, self.d)


def gaussian_mixture_log_prob(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x_d | x_<d) [B, D] for mixture parameters [B, 3K, D] (logits, mu, log sigma)."""
    logits, mu, log_sigma = params.chunk(3, dim=1)
    # [B, K, D] component log-densities
    z = (x[:, None, :] - mu) * torch.exp(-log_sigma)
    log_comp = -0.5 * (z.pow(2) + LOG_2PI) - log_sigma
    return torch.logsumexp(F.log_softmax(logits, dim=1) + log_comp, dim=1)


def discretised_logistic_log_prob(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log P(k_d | k_<d) [B, D] for pixels x on the 8-bit grid of [-1, 1], params [B, 3K, D].

    Bin of pixel value x is [x - 1/255, x + 1/255], open-ended at -1 and 1 (PixelCNN++ eq. 2).
    """
    logits, mu, log_s = params.chunk(3, dim=1)
    inv_s = torch.exp(-log_s.clamp(min=MIN_LOG_SCALE))
    # [B, K, D] logistic CDF at the bin edges, as log-sigmoids for stability
    upper = (x[:, None, :] + HALF_BIN - mu) * inv_s
    lower = (x[:, None, :] - HALF_BIN - mu) * inv_s
    log_cdf_upper = F.logsigmoid(upper)
    log_sf_lower = F.logsigmoid(-lower)
    # log(sigmoid(u) - sigmoid(l)) = log sigmoid(u) + log(1 - exp(l - u)) + log sigmoid(-l)
    log_mid = log_cdf_upper + log_sf_lower + torch.log(-torch.expm1((lower - upper).clamp(max=-1e-6)))
    log_bin = torch.where(x[:, None, :] < -0.999, log_cdf_upper,
                          torch.where(x[:, None, :] > 0.999, log_sf_lower, log_mid))
    return torch.logsumexp(F.log_softmax(logits, dim=1) + log_bin, dim=1)


def snap_to_8bit_grid(x: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] -> the nearest of the 256 levels k / 127.5 - 1 (the ``images_to_uint8`` grid).

    The bins of ``discretised_logistic_log_prob`` are centred on these levels, so this is the map
    for a draw from a conditional and for data already on the grid, not for dequantised pixels.
    """
    return uint8_to_images(images_to_uint8(x)).to(x.dtype)


def dequantised_to_grid(x: torch.Tensor) -> torch.Tensor:
    """Dequantised pixels (k + U[0, 1)) / 128 - 1 -> their level on the grid, k / 127.5 - 1 (k = floor((x + 1) * 128))."""
    return uint8_to_images(dequantised_to_uint8(x)).to(x.dtype)


def pick_component(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw of a mixture component: logits [B, K], u [B] in [0, 1) -> index [B, 1]."""
    cdf = torch.softmax(logits, dim=1).cumsum(1)
    return torch.searchsorted(cdf, u[:, None].contiguous()).clamp(max=logits.shape[1] - 1)


def draw_coordinate(params: torch.Tensor, u: torch.Tensor, v: torch.Tensor, images: bool) -> torch.Tensor:
    """One coordinate [B] from its mixture params [B, 3K]; u picks the component, v is its noise."""
    logits, mu, log_scale = params.chunk(3, dim=1)
    k = pick_component(logits, u)
    mu, log_scale = mu.gather(1, k).squeeze(1), log_scale.gather(1, k).squeeze(1)
    if not images:
        # v ~ N(0, 1)
        return mu + torch.exp(log_scale) * v
    # v ~ U(0, 1): logistic draw, then the nearest 8-bit grid value
    v = v.clamp(1e-6, 1 - 1e-6)
    return snap_to_8bit_grid(mu + torch.exp(log_scale.clamp(min=MIN_LOG_SCALE)) * (torch.log(v) - torch.log1p(-v)))


@MODELS.register("autoregressive", description="MADE (Germain et al. 2015), mixture conditionals; exact likelihood, NFE = D")
class Autoregressive(GenerativeModel):
    """MADE over flattened data with Gaussian-mixture (points) or discretised-logistic (images) conditionals."""

    family = "autoregressive"
    sample_quantisation = ROUND  # samples are grid levels (bins centred on u / 127.5 - 1)
    likelihood_kind = "exact"

    def __init__(self, data_shape, modality, num_classes=None, hidden: int = 256, depth: int = 2,
                 n_components: int = 8):
        super().__init__(data_shape, modality, num_classes, hidden=hidden, depth=depth, n_components=n_components)
        self.d = math.prod(self.data_shape)
        if self.d < 2 or depth < 1 or n_components < 1:
            raise UsageError("autoregressive needs data of >= 2 dimensions, depth >= 1 and n_components >= 1")
        self.made = MADE(self.d, hidden, depth, 3 * n_components)

    def _conditional_log_probs(self, flat: torch.Tensor) -> torch.Tensor:
        """log p(x_d | x_<d) [B, D] for flat data [B, D]."""
        params = self.made(flat)
        if self.modality == IMAGES:
            return discretised_logistic_log_prob(params, flat)
        return gaussian_mixture_log_prob(params, flat)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) [B] in nats: the density (points) or log P(k) (images on the 8-bit grid)."""
        flat = x.reshape(x.shape[0], -1).to(self.device)
        if self.modality == IMAGES:
            flat = snap_to_8bit_grid(flat)
        return self._conditional_log_probs(flat).sum(1)

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Maximum likelihood with Adam (weights re-initialised from ``generator``)."""
        init_parameters(self, generator)
        x = data.x.to(self.device).float()

        def nll(batch: torch.Tensor) -> torch.Tensor:
            return -self._log_prob(batch).mean()

        return train_with_adam(self, nll, x, budget, generator, progress)

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """Exact log-likelihood in nats per example (images, dequantised: log P(k) + D ln 128, see the module doc)."""
        if self.modality != IMAGES:
            return self._log_prob(x)
        # the level k of each dequantised pixel, then log P(k) + D ln 128
        return self._log_prob(dequantised_to_grid(x)) + self.d * math.log(128.0)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        check_choice(sampler, self.supported_samplers(), "sampler for the autoregressive family")
        images = self.modality == IMAGES
        # per-sample noise: component choice u [N, D] and coordinate noise v [N, D]
        u = noise.rand(self.d).to(self.device)
        v = (noise.rand(self.d) if images else noise.randn(self.d)).to(self.device)
        net = CountingDenoiser(lambda x_, _: self.made(x_))
        x = torch.zeros(len(noise), self.d, device=self.device)
        # one pass per coordinate: x_d ~ p(x_d | x_<d)
        for i in range(self.d):
            params = net(x, None)[:, :, i]
            x[:, i] = draw_coordinate(params, u[:, i], v[:, i], images)
        return x.reshape(len(noise), *self.data_shape), float(net.calls)
