"""``nice``: NICE, additive coupling layers and a diagonal scaling (Dinh, Krueger & Bengio 2015).

Each coupling layer splits the flattened input into odd and even coordinates (alternating which
half is kept) and shifts the other half: y_b = x_b + m(x_a), with log|det| = 0 (paper eq. 7). A
final diagonal scaling y = exp(s) * h carries the whole log-determinant, sum(s) (section 3.3).
The coupling functions m are MLPs (genbench's residual SiLU MLP, ``depth`` layers of width
``hidden``; the paper used 5 ReLU layers of 1000 units with 4 couplings). The prior is the
standard logistic (the paper's choice for MNIST) or N(0, I) (``prior: gaussian``). Departure
from the paper, for short budgets: training starts from identity couplings and a scaling set
from the data's per-coordinate spread (``initialise_scaling``), like Glow's ActNorm.

Points are modelled directly (density in nats). Images are flattened; 8-bit pixels are uniformly
dequantised on [-1, 1] (the paper rescales to [0, 1] with noise of width 1/256: the same up to an
affine map) and ``log_likelihood`` is the exact density of the dequantised data on [-1, 1]
(kind ``exact``). Sampling is one inverse pass (NFE 1); image samples are dequantised pixels
(clamped to [-1, 1]), which the runner floors back to 8 bits (``sample_quantisation = "floor"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.base import FLOOR, IMAGES, Samples
from genbench.errors import UsageError
from genbench.models.base import MODELS, NATIVE, GenerativeModel, Progress, TrainBudget
from genbench.models.nets.mlp import MLP
from genbench.models.nets.training import dequantise_images, init_parameters, train_with_adam
from genbench.registry import check_choice
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise

LOG_2PI = math.log(2 * math.pi)
PRIORS = ("logistic", "gaussian")


class AdditiveCoupling(nn.Module):
    """y_a = x_a, y_b = x_b + m(x_a), where x_a are the coordinates i with i % 2 == parity."""

    def __init__(self, d: int, parity: int, hidden: int, depth: int):
        super().__init__()
        idx = torch.arange(d)
        self.register_buffer("keep", idx[idx % 2 == parity], persistent=False)
        self.register_buffer("change", idx[idx % 2 != parity], persistent=False)
        self.m = MLP(len(self.keep), len(self.change), hidden, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[:, self.change] = x[:, self.change] + self.m(x[:, self.keep])
        return y

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        x = y.clone()
        x[:, self.change] = y[:, self.change] - self.m(y[:, self.keep])
        return x


def prior_log_prob(z: torch.Tensor, prior: str) -> torch.Tensor:
    """log p(z) [B] for z [B, D] under the standard logistic or normal prior."""
    if prior == "logistic":
        # log sigma(z) + log(1 - sigma(z)) = -(softplus(z) + softplus(-z))
        return -(F.softplus(z) + F.softplus(-z)).sum(1)
    return -0.5 * (z.pow(2).sum(1) + z.shape[1] * LOG_2PI)


@MODELS.register("nice", description="NICE: additive couplings and a diagonal scaling (Dinh et al. 2015); exact likelihood, NFE 1")
class NICE(GenerativeModel):
    """Additive couplings over flattened data, then exp(s) scaling; logistic or Gaussian prior."""

    family = "nice"
    likelihood_kind = "exact"
    sample_quantisation = FLOOR  # images: trained on uniformly dequantised pixels, samples fill the bins

    def __init__(self, data_shape, modality, num_classes=None, n_couplings: int = 4, hidden: int = 256, depth: int = 4,
                 prior: str = "logistic"):
        super().__init__(data_shape, modality, num_classes, n_couplings=n_couplings, hidden=hidden, depth=depth,
                         prior=prior)
        type(self).check_fits(self.data_shape, modality, self.num_classes, self.config)
        d = math.prod(self.data_shape)
        self.couplings = nn.ModuleList(AdditiveCoupling(d, k % 2, hidden, depth) for k in range(n_couplings))
        self.log_scale = nn.Parameter(torch.zeros(d))

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config) -> None:
        if int(config.get("n_couplings", 4)) < 2 or math.prod(data_shape) < 2:
            raise UsageError("nice needs n_couplings >= 2 (so every coordinate is changed) and data of >= 2 dimensions")
        check_choice(config.get("prior", "logistic"), list(PRIORS), "nice prior")

    def to_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat x [B, D] -> z [B, D] and log|det dz/dx| [B] (= sum s: the couplings preserve volume)."""
        for coupling in self.couplings:
            x = coupling(x)
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.exp(-self.log_scale)
        for coupling in reversed(self.couplings):
            x = coupling.inverse(x)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) [B] at x [B, *data_shape] as given (images: dequantised, [-1, 1] scale)."""
        z, logdet = self.to_latent(x.reshape(x.shape[0], -1).to(self.device))
        return prior_log_prob(z, self.config["prior"]) + logdet

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Maximum likelihood with Adam (images: of uniformly dequantised pixels)."""
        init_parameters(self, generator)
        x = data.x.to(self.device).float()
        d = math.prod(self.data_shape)
        images = self.modality == IMAGES
        self.initialise_scaling(x[:512], generator, images)

        def nll(batch: torch.Tensor) -> torch.Tensor:
            batch = dequantise_images(batch, generator) if images else batch
            return -self.log_prob(batch).mean() / d

        return train_with_adam(self, nll, x, budget, generator, progress, grad_clip=50.0)

    @torch.no_grad()
    def initialise_scaling(self, x: torch.Tensor, generator: torch.Generator, images: bool) -> None:
        """Couplings start as the identity (zero output layers) and the diagonal scaling maps the data's
        per-coordinate spread to the prior's (std pi / sqrt 3 for the logistic): a data-dependent start, as
        Glow's ActNorm, so short CPU budgets do not spend their steps learning the scale."""
        for coupling in self.couplings:
            coupling.m.out.weight.zero_()
            coupling.m.out.bias.zero_()
        flat = (dequantise_images(x, generator) if images else x).reshape(len(x), -1)
        prior_std = math.pi / math.sqrt(3) if self.config["prior"] == "logistic" else 1.0
        # a floor on the spread: pixels constant in the sample (image borders) must not get a huge scale
        self.log_scale.copy_(math.log(prior_std) - torch.log(flat.std(0).clamp(min=0.05)))

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """Exact log-density in nats per example (images: at the caller's dequantised x)."""
        return self.log_prob(x)

    def draw_prior(self, noise: SeededNoise, d: int) -> torch.Tensor:
        if self.config["prior"] == "gaussian":
            return noise.randn(d)
        # inverse CDF of the standard logistic
        u = noise.rand(d).clamp(1e-6, 1 - 1e-6)
        return torch.log(u) - torch.log1p(-u)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        check_choice(sampler, self.supported_samplers(), "sampler for the nice family")
        z = self.draw_prior(noise, math.prod(self.data_shape)).to(self.device)
        net = CountingDenoiser(lambda z_, _: self.from_latent(z_))
        x = net(z, None)
        if self.modality == IMAGES:
            x = x.clamp(-1.0, 1.0)  # dequantised pixels; the runner floors them back to 8 bits
        return x.reshape(len(noise), *self.data_shape), float(net.calls)
