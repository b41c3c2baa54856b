"""``vae``: variational autoencoder with a Gaussian decoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

p(z) = N(0, I); encoder q(z | x) = N(mu(x), diag sigma(x)^2) (MLP on the flattened example);
decoder p(x | z) = N(m(z), diag s^2) with m an MLP and log s a learned vector, one scale per data
dimension, floored at ``min_log_sigma``. Training maximises the ELBO with the reparameterisation trick;
image data are uniformly dequantised first (``dequantize``), the same way the bits/dim metric
evaluates them, so the continuous density is not rewarded for collapsing onto the pixel grid; its
samples are then dequantised pixels too, and go back to 8 bits by floor (``sample_quantisation``).

Sampling (``native``): z ~ N(0, I) from each sample's own generator, then x = m(z) plus, when
``decoder_noise`` (default: on for points, off for images), s * eps; images are clamped to [-1, 1].

Likelihood (kind "elbo"): ``likelihood_bound="elbo"`` (default) is the ELBO
E_q[log p(x | z)] - KL(q || p) in nats, with the KL in closed form and the expectation averaged
over ``likelihood_samples`` reparameterised draws; ``"iwae"`` is the tighter importance-weighted
bound log (1/K) sum_k p(x, z_k) / q(z_k | x) with K = ``likelihood_samples`` (Burda et al. 2016).
Both are lower bounds on log p(x), deterministic given the seed.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from genbench.data.base import IMAGES, POINTS, Samples
from genbench.errors import UsageError
from genbench.models.base import (
    MODELS, NATIVE, SAMPLE_QUANTISATION_BY_DEQUANTIZE, GenerativeModel, Progress, TrainBudget, likelihood_noise,
)
from genbench.models.nets.mlp import MLP
from genbench.models.nets.training import dequantise_images, init_parameters, train_with_adam
from genbench.registry import check_choice
from genbench.seeding import SeededNoise

BOUNDS = ("elbo", "iwae")
LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag exp(log_sigma)^2) summed over the last dimension: [..., D] -> [...]."""
    return (-0.5 * ((x - mean) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * LOG_2PI).sum(-1)


def kl_to_standard_normal(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) in closed form (Kingma & Welling 2014, App. B): [N, Z] -> [N]."""
    return 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1.0 - 2 * log_sigma).sum(-1)


class VAENet(nn.Module):
    """Encoder x [N, D] -> (mu, log_sigma) [N, Z] each; decoder z [N, Z] -> mean [N, D]; log s [D]."""

    def __init__(self, dim: int, latent_dim: int, hidden: int, depth: int):
        super().__init__()
        self.encoder = MLP(dim, 2 * latent_dim, hidden, depth)
        self.decoder = MLP(latent_dim, dim, hidden, depth)
        self.decoder_log_sigma = nn.Parameter(torch.zeros(dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.encoder(x).chunk(2, dim=-1)
        return mu, log_sigma.clamp(-10.0, 5.0)


@MODELS.register("vae", description="Gaussian-decoder VAE (Kingma & Welling 2014), MLP encoder/decoder; ELBO likelihood")
class VAE(GenerativeModel):
    family = "vae"
    likelihood_kind = "elbo"

    def __init__(self, data_shape, modality, num_classes=None, latent_dim: int | None = None, hidden: int = 256,
                 depth: int = 3, min_log_sigma: float = -7.0, decoder_noise: bool | None = None,
                 dequantize: bool = True, likelihood_bound: str = "elbo", likelihood_samples: int = 16):
        super().__init__(data_shape, modality, num_classes, latent_dim=latent_dim, hidden=hidden, depth=depth,
                         min_log_sigma=min_log_sigma, decoder_noise=decoder_noise, dequantize=dequantize,
                         likelihood_bound=likelihood_bound, likelihood_samples=likelihood_samples)
        check_choice(likelihood_bound, list(BOUNDS), "VAE likelihood bound")
        if likelihood_samples < 1:
            raise UsageError(f"likelihood_samples must be >= 1, got {likelihood_samples}; use 1 or more")
        self.dim = math.prod(self.data_shape)
        self.latent_dim = latent_dim or (2 if self.dim <= 2 else min(32, max(2, self.dim // 4)))
        self.net = VAENet(self.dim, self.latent_dim, hidden, depth)
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False)

    def _decoder_log_sigma(self, net: VAENet) -> torch.Tensor:
        return net.decoder_log_sigma.clamp(min=self.config["min_log_sigma"])

    sample_quantisation = SAMPLE_QUANTISATION_BY_DEQUANTIZE  # floor after dequantised training

    # -- training ------------------------------------------------------------------------------

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Train from scratch (weights re-initialised from ``generator``): Adam on the negative ELBO per example."""
        init_parameters(self.net, generator)
        self.net.decoder_log_sigma.data.zero_()
        self.ema_net.load_state_dict(self.net.state_dict())
        x = data.x.to(self.device).float()

        def loss(batch: torch.Tensor) -> torch.Tensor:
            batch = self._prepare(batch, generator)
            eps = torch.randn(batch.shape[0], self.latent_dim, generator=generator).to(batch.device)
            return -self.elbo(batch, eps.unsqueeze(0), self.net).mean()

        report = train_with_adam(self.net, loss, x, budget, generator, progress, self.ema_net)
        return {**report, "neg_elbo": report["loss"]}

    def _prepare(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[N, *data_shape] -> [N, D], images uniformly dequantised when configured."""
        if self.modality == IMAGES and self.config["dequantize"]:
            x = dequantise_images(x, generator)
        return x.reshape(x.shape[0], -1)

    def elbo(self, x: torch.Tensor, eps: torch.Tensor, net: VAENet) -> torch.Tensor:
        """ELBO per example, x [N, D], eps [K, N, Z] reparameterisation noise: mean over K of log p(x|z) minus KL."""
        mu, log_sigma = net.encode(x)
        # z = mu + sigma * eps: [K, N, Z]
        z = mu + torch.exp(log_sigma) * eps
        recon = gaussian_log_density(x, net.decoder(z), self._decoder_log_sigma(net))  # [K, N]
        return recon.mean(0) - kl_to_standard_normal(mu, log_sigma)

    def iwae_bound(self, x: torch.Tensor, eps: torch.Tensor, net: VAENet) -> torch.Tensor:
        """log (1/K) sum_k p(x, z_k) / q(z_k | x) (Burda et al. 2016), x [N, D], eps [K, N, Z] -> [N]."""
        mu, log_sigma = net.encode(x)
        z = mu + torch.exp(log_sigma) * eps
        log_p_x_given_z = gaussian_log_density(x, net.decoder(z), self._decoder_log_sigma(net))
        log_p_z = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_q_z = gaussian_log_density(z, mu, log_sigma.expand_as(z))
        return torch.logsumexp(log_p_x_given_z + log_p_z - log_q_z, dim=0) - math.log(eps.shape[0])

    # -- sampling ------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        """Decode z ~ N(0, I) (one decoder call: NFE 1), adding decoder noise when configured."""
        check_choice(sampler, self.supported_samplers(), "sampler for the vae family")
        self.eval()
        z = noise.randn(self.latent_dim).to(self.device)
        x = self.ema_net.decoder(z)
        if self._adds_decoder_noise():
            x = x + torch.exp(self._decoder_log_sigma(self.ema_net)) * noise.randn(self.dim).to(self.device)
        x = x.reshape(len(noise), *self.data_shape)
        if self.modality == IMAGES:
            x = x.clamp(-1.0, 1.0)
        return x, 1.0

    def _adds_decoder_noise(self) -> bool:
        flag = self.config["decoder_noise"]
        return self.modality == POINTS if flag is None else bool(flag)

    # -- likelihood ----------------------------------------------------------------------------

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """The configured lower bound on log p(x) (ELBO or IWAE) in nats per example.

        The K reparameterisation draws of example i come from its own generator in ``noise``
        (default ``likelihood_noise``), so its bound does not depend on the batch it is in.
        """
        self.eval()
        x = x.to(self.device).float().reshape(x.shape[0], -1)
        noise = noise if noise is not None else likelihood_noise(len(x))
        # [N, K, Z] per-example draws -> [K, N, Z]
        eps = noise.randn(self.config["likelihood_samples"], self.latent_dim).transpose(0, 1).to(x.device)
        bound = self.elbo if self.config["likelihood_bound"] == "elbo" else self.iwae_bound
        return bound(x, eps, self.ema_net)
