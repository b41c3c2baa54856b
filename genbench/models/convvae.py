"""``convvae``: convolutional VAE with a discretised logistic decoder (Kingma & Welling 2014; decoder
likelihood of Salimans et al. 2017, "PixelCNN++", eq. 2, with one logistic per sub-pixel).

Encoder q(z | x) = N(mu(x), diag sigma(x)^2): 4x4 stride-2 convolutions with LeakyReLU (the
DCGAN discriminator's body) and a linear head. Decoder: the DCGAN generator's transposed
convolutions (no batch norm), giving per sub-pixel a location m and a log scale log s. The
decoder is a distribution over the 256 levels u of each 8-bit sub-pixel, whose bin centres are
c_u = u / 127.5 - 1 (width 2 / 255)::

    P(u | z) = sigmoid((c_u + 1/255 - m) / s) - sigmoid((c_u - 1/255 - m) / s)

with the lowest bin extended to -inf and the highest to +inf, so the 256 probabilities sum to 1.
The likelihood is therefore exact and discrete: training maximises the ELBO of log P(u) on the
8-bit data themselves (no dequantisation), and ``log_likelihood`` returns a lower bound on
log P(u) + D ln 128, the log-density of the piecewise-constant density that P puts on the
dequantisation cells of width 1/128 in [-1, 1]. That is the uniform-dequantisation convention of
the other families, so bits/dim = -log P(u) / (D ln 2) are comparable (the bound of this kind).

Bounds (``likelihood_bound``): ``elbo`` averages log P(u | z_k) + log p(z_k) - log q(z_k | u) over
K = ``likelihood_samples`` draws (kind "elbo"); ``iwae`` is log (1/K) sum_k of its exponential
(Burda et al. 2016, "Importance Weighted Autoencoders"; kind "iwae-K"), tighter in expectation.
Sampling (``native``): z ~ N(0, I), then the decoder's location m clamped to [-1, 1] (one decoder
call, NFE 1); ``decoder_noise: true`` samples u from P(u | z) instead. Images only.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import IMAGES, Samples
from genbench.errors import UsageError
from genbench.models.base import MODELS, NATIVE, GenerativeModel, Progress, TrainBudget, likelihood_noise
from genbench.models.dcgan import upsampling_plan_of
from genbench.models.nets.conv import ConvDiscriminator, ConvGenerator
from genbench.models.nets.training import init_parameters, train_with_adam
from genbench.registry import check_choice
from genbench.seeding import SeededNoise

BOUNDS = ("elbo", "iwae")
LEVELS = 256
HALF_BIN = 1.0 / 255.0  # half the width of a bin on the [-1, 1] scale
LOG_2PI = math.log(2 * math.pi)


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Images on the grid (u / 127.5 - 1) or uniformly dequantised ((u + U[0, 1)) / 128 - 1) -> levels u in 0..255 (long).

    floor((x + 1) 128) recovers u from both: on the grid it is floor(u + u / 255) = u for u <= 254 (255 clamps).
    """
    return torch.floor((x + 1.0) * 128.0).clamp(0, LEVELS - 1).long()


def discretised_logistic_log_prob(u: torch.Tensor, m: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """log P(u) per sub-pixel of the discretised logistic (elementwise; u long in 0..255, m and log_s floats)."""
    c = u.to(m.dtype) / 127.5 - 1.0
    inv_s = torch.exp(-log_s)
    upper = (c + HALF_BIN - m) * inv_s
    lower = (c - HALF_BIN - m) * inv_s
    # log sigmoid(upper) for the lowest bin, log(1 - sigmoid(lower)) for the highest
    log_cdf_upper = F.logsigmoid(upper)
    log_sf_lower = F.logsigmoid(-lower)
    # middle bins: sigmoid(upper) - sigmoid(lower), computed on the side of the mean where it does not cancel;
    # log(1 - exp(d)) with d clamped below 0 so that neither branch of the where is infinite (no NaN gradients)
    above = log_sf_lower + torch.log(-torch.expm1((F.logsigmoid(-upper) - log_sf_lower).clamp(max=-1e-12)))
    below = log_cdf_upper + torch.log(-torch.expm1((F.logsigmoid(lower) - log_cdf_upper).clamp(max=-1e-12)))
    mid = torch.where(upper + lower > 0, above, below)
    # bins much narrower than the logistic's scale: density at the centre times the bin width (error < 1e-7)
    centre = (c - m) * inv_s
    log_pdf = centre - log_s - 2 * F.softplus(centre) + math.log(2 * HALF_BIN)
    mid = torch.where(upper - lower > 1e-3, mid, log_pdf)
    return torch.where(u == 0, log_cdf_upper, torch.where(u == LEVELS - 1, log_sf_lower, mid))


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag exp(log_sigma)^2) summed over the last dimension."""
    return (-0.5 * ((z - mean) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * LOG_2PI).sum(-1)


class ConvVAENet(nn.Module):
    """Encoder x [N, C, H, W] -> (mu, log_sigma) [N, Z]; decoder z [N, Z] -> (m, log_s) [N, C, H, W] each."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, width: int, n: int):
        super().__init__()
        c, h, w = shape
        self.channels = c
        self.encoder = ConvDiscriminator(c, h, w, width, n, norm=False, out_dim=2 * latent_dim)
        self.decoder = ConvGenerator(latent_dim, 2 * c, h, w, width, n, norm=False, tanh=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.encoder(x).chunk(2, dim=-1)
        return mu, log_sigma.clamp(-10.0, 5.0)

    def decode(self, z: torch.Tensor, min_log_s: float) -> tuple[torch.Tensor, torch.Tensor]:
        m, log_s = self.decoder(z).split(self.channels, dim=1)
        return m, log_s.clamp(min=min_log_s)


@MODELS.register("convvae", description="convolutional VAE, discretised logistic decoder (exact 8-bit likelihood); ELBO or IWAE-k bits/dim")
class ConvVAE(GenerativeModel):
    family = "convvae"
    likelihood_kind = "elbo"  # per instance: "elbo" or "iwae-<K>"
    modalities = (IMAGES,)

    def __init__(self, data_shape, modality, num_classes=None, latent_dim: int = 16, width: int = 32,
                 n_up: int | None = None, min_log_s: float = -7.0, decoder_noise: bool = False,
                 likelihood_bound: str = "elbo", likelihood_samples: int = 16):
        super().__init__(data_shape, modality, num_classes, latent_dim=latent_dim, width=width, n_up=n_up,
                         min_log_s=min_log_s, decoder_noise=decoder_noise, likelihood_bound=likelihood_bound,
                         likelihood_samples=likelihood_samples)
        check_choice(likelihood_bound, list(BOUNDS), "convvae likelihood bound")
        if likelihood_samples < 1 or latent_dim < 1 or width < 1:
            raise UsageError("convvae needs likelihood_samples >= 1, latent_dim >= 1 and width >= 1; fix the recipe's config")
        n = self.check_fits(self.data_shape, modality, num_classes, self.config)
        c, h, w = self.data_shape
        self.likelihood_kind = "elbo" if likelihood_bound == "elbo" else f"iwae-{likelihood_samples}"
        self.net = ConvVAENet((c, h, w), latent_dim, width, n)
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False)

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config) -> int:
        """The decoder's number of doublings; UsageError when the image size cannot be reached."""
        return upsampling_plan_of(data_shape, config.get("n_up"), "convvae's decoder")

    # -- bounds --------------------------------------------------------------------------------------

    def log_weights(self, u: torch.Tensor, eps: torch.Tensor, net: ConvVAENet) -> torch.Tensor:
        """log P(u | z_k) + log p(z_k) - log q(z_k | u) for z_k = mu + sigma eps_k: u [N, C, H, W] long, eps [K, N, Z] -> [K, N]."""
        x = u.float() / 127.5 - 1.0
        mu, log_sigma = net.encode(x)
        z = mu + torch.exp(log_sigma) * eps  # [K, N, Z]
        k, n = eps.shape[:2]
        m, log_s = net.decode(z.reshape(k * n, -1), self.config["min_log_s"])
        log_px = discretised_logistic_log_prob(u.repeat(k, 1, 1, 1), m, log_s).flatten(1).sum(1).reshape(k, n)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = gaussian_log_density(z, mu, log_sigma.expand_as(z))
        return log_px + log_pz - log_qz

    def elbo(self, u: torch.Tensor, eps: torch.Tensor, net: ConvVAENet) -> torch.Tensor:
        """Monte Carlo ELBO of log P(u), averaged over the K draws of eps [K, N, Z]: [N] nats."""
        return self.log_weights(u, eps, net).mean(0)

    def iwae(self, u: torch.Tensor, eps: torch.Tensor, net: ConvVAENet) -> torch.Tensor:
        """IWAE bound log (1/K) sum_k w_k with K = eps.shape[0] (Burda et al. 2016, eq. 8): [N] nats."""
        return torch.logsumexp(self.log_weights(u, eps, net), dim=0) - math.log(eps.shape[0])

    # -- training --------------------------------------------------------------------------------------

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Adam on the negative single-sample ELBO per sub-pixel (nats) of the 8-bit levels; EMA per ``budget.ema``."""
        init_parameters(self.net, generator)
        self.ema_net.load_state_dict(self.net.state_dict())
        u = to_levels(data.x.to(self.device).float())  # on the grid, floor((x + 1) 128) = u exactly
        dims = math.prod(self.data_shape)

        def loss(batch: torch.Tensor) -> torch.Tensor:
            eps = torch.randn(1, batch.shape[0], self.config["latent_dim"], generator=generator).to(batch.device)
            return -self.elbo(batch, eps, self.net).mean() / dims

        report = train_with_adam(self.net, loss, u, budget, generator, progress, self.ema_net)
        return {**report, "neg_elbo_bpd": report["loss"] / math.log(2)}

    # -- sampling ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        """Decode z ~ N(0, I) (one decoder call, NFE 1): the location m, or a draw from P(u | z) with ``decoder_noise``."""
        check_choice(sampler, self.supported_samplers(), "sampler for the convvae family")
        self.eval()
        z = noise.randn(self.config["latent_dim"]).to(self.device)
        m, log_s = self.ema_net.decode(z, self.config["min_log_s"])
        if self.config["decoder_noise"]:
            # inverse-CDF draw of the logistic, then the bin it falls in (u = round on the grid, clamped)
            p = noise.rand(*m.shape[1:]).to(self.device).clamp(1e-6, 1 - 1e-6)
            m = m + torch.exp(log_s) * (torch.log(p) - torch.log1p(-p))
        return m.clamp(-1.0, 1.0), 1.0

    # -- likelihood --------------------------------------------------------------------------------------

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """The configured bound on log P(u) + D ln 128 (nats per example) at the levels u of ``x`` (grid or dequantised).

        The K draws of example i come from its own generator in ``noise`` (default ``likelihood_noise``),
        so its bound does not depend on the batch it is in.
        """
        self.eval()
        u = to_levels(x.to(self.device).float())
        noise = noise if noise is not None else likelihood_noise(len(u))
        # [N, K, Z] per-example draws -> [K, N, Z]
        eps = noise.randn(self.config["likelihood_samples"], self.config["latent_dim"]).transpose(0, 1).to(self.device)
        bound = self.elbo if self.config["likelihood_bound"] == "elbo" else self.iwae
        return bound(u, eps, self.ema_net) + math.prod(self.data_shape) * math.log(128.0)
