"""``flow``: RealNVP, an affine coupling flow with exact log-likelihood.

Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP": each coupling layer
keeps the masked half x_a of its input and transforms the other half,
y_b = x_b * exp(s(x_a)) + t(x_a), with log|det| = sum s(x_a); masks alternate parity so
every coordinate is transformed. Each coupling is preceded by an ActNorm layer (Kingma &
Dhariwal 2018, Glow) initialised from the first training batch, which is deterministic,
unlike batch norm. The base is N(0, I); sampling is one inverse pass (NFE 1).

Images are flattened; 8-bit pixels are uniformly dequantised and logit-transformed
(RealNVP section 4.1). ``log_likelihood`` is the density of the dequantised data on the
[-1, 1] scale (nats), so bits/dim = -ll / (D ln 2) + 7 (= the [0, 1] convention + 8).
Image samples are the inverse logit in [-1, 1], dequantised pixels like the training data, so the
family declares ``sample_quantisation = "floor"`` and the runner floors them back to 8 bits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.data.base import FLOOR, IMAGES, Samples
from genbench.errors import UsageError
from genbench.models.base import MODELS, NATIVE, GenerativeModel, Progress, TrainBudget
from genbench.models.nets.mlp import MLP
from genbench.models.nets.training import (
    dequantise_images,
    init_parameters,
    train_with_adam,
)
from genbench.registry import check_choice
from genbench.samplers.base import CountingDenoiser
from genbench.seeding import SeededNoise

LOG_2PI = math.log(2 * math.pi)


class ActNorm(nn.Module):
    """y = (x + b) * exp(log_s), with b and log_s set from the first batch (Glow, section 3.1)."""

    def __init__(self, d: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(d))
        self.log_scale = nn.Parameter(torch.zeros(d))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        # zero mean, unit variance per coordinate on this batch
        self.bias.copy_(-x.mean(0))
        self.log_scale.copy_(-torch.log(x.std(0) + 1e-6))
        self.initialised.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and torch.is_grad_enabled() and not bool(self.initialised):
            self.initialise(x)
        # [B, D], log|det| [B]
        return (x + self.bias) * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class AffineCoupling(nn.Module):
    """RealNVP coupling: x_b -> x_b * exp(s(x_a)) + t(x_a) on the coordinates where mask == 0."""

    def __init__(self, mask: torch.Tensor, hidden: int, depth: int):
        super().__init__()
        d = mask.numel()
        self.register_buffer("mask", mask.float(), persistent=False)
        self.net = MLP(d, 2 * d, hidden, depth)
        # start as the identity map (init_parameters keeps modules marked zero_init at zero)
        nn.init.zeros_(self.net.out.weight)
        nn.init.zeros_(self.net.out.bias)
        self.net.out.zero_init = True
        self.scale = nn.Parameter(torch.ones(d))

    def shift_and_log_scale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x_a)
        s, t = h.chunk(2, dim=1)
        # bounded log-scale (RealNVP's scale * tanh), zero on the kept coordinates
        s = self.scale * torch.tanh(s) * (1 - self.mask)
        return s, t * (1 - self.mask)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.shift_and_log_scale(x * self.mask)
        return x * torch.exp(s) + t, s.sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        s, t = self.shift_and_log_scale(y * self.mask)
        return (y - t) * torch.exp(-s)


def parity_mask(d: int, k: int) -> torch.Tensor:
    """Coordinates i with (i + k) even are kept by coupling layer k."""
    return ((torch.arange(d) + k) % 2 == 0).float()


def logit_with_logdet(x: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantised pixels x in [-1, 1) -> s = logit(alpha + (1 - 2 alpha) (x + 1) / 2), and log|ds/dx| [B]."""
    p = alpha + (1 - 2 * alpha) * (x + 1) / 2
    s = torch.log(p) - torch.log1p(-p)
    # dp/dx = (1 - 2 alpha) / 2, ds/dp = 1 / (p (1 - p))
    logdet = math.log((1 - 2 * alpha) / 2) - torch.log(p) - torch.log1p(-p)
    return s, logdet.sum(1)


def logit_to_data(s: torch.Tensor, alpha: float) -> torch.Tensor:
    """Inverse of the logit transform: s -> dequantised pixels x in [-1, 1] (clamped)."""
    y = (torch.sigmoid(s) - alpha) / (1 - 2 * alpha)
    return (2 * y - 1).clamp(-1.0, 1.0)


@MODELS.register("flow", description="RealNVP affine coupling flow with ActNorm (Dinh et al. 2017); exact likelihood, NFE 1")
class RealNVP(GenerativeModel):
    """Alternating-mask affine couplings with ActNorm over flattened data; base N(0, I)."""

    family = "flow"
    likelihood_kind = "exact"
    sample_quantisation = FLOOR  # trained on uniformly dequantised pixels

    def __init__(self, data_shape, modality, num_classes=None, n_layers: int = 8, hidden: int = 128, depth: int = 2,
                 logit_alpha: float = 0.05):
        super().__init__(data_shape, modality, num_classes, n_layers=n_layers, hidden=hidden, depth=depth,
                         logit_alpha=logit_alpha)
        if n_layers < 2 or not 0 < logit_alpha < 0.5:
            raise UsageError("flow needs n_layers >= 2 and 0 < logit_alpha < 0.5; fix the recipe's config")
        d = math.prod(self.data_shape)
        self.norms = nn.ModuleList(ActNorm(d) for _ in range(n_layers))
        self.couplings = nn.ModuleList(AffineCoupling(parity_mask(d, k), hidden, depth) for k in range(n_layers))

    def to_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat data [B, D] (logit space for images) -> z [B, D] and log|det dz/dx| [B]."""
        logdet = torch.zeros(x.shape[0], device=x.device)
        for norm, coupling in zip(self.norms, self.couplings):
            x, ld_norm = norm(x)
            x, ld_coupling = coupling(x)
            logdet = logdet + ld_norm + ld_coupling
        return x, logdet

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D] -> flat data [B, D]: the inverse pass."""
        for norm, coupling in zip(reversed(self.norms), reversed(self.couplings)):
            z = norm.inverse(coupling.inverse(z))
        return z

    def _flat_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) [B] for flat data x [B, D] in the flow's input space."""
        z, logdet = self.to_latent(x)
        # standard normal base: -0.5 (|z|^2 + D log 2 pi)
        return -0.5 * (z.pow(2).sum(1) + z.shape[1] * LOG_2PI) + logdet

    def _log_prob_on_data_scale(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """log-density [B] of data x [B, *data_shape] on the [-1, 1] scale.

        With a generator, 8-bit images are uniformly dequantised first (training); without one,
        x is taken as already dequantised (``log_likelihood``: the caller dequantises).
        """
        flat = x.reshape(x.shape[0], -1).to(self.device)
        if self.modality != IMAGES:
            return self._flat_log_prob(flat)
        if generator is not None:
            flat = dequantise_images(flat, generator)
        s, logdet = logit_with_logdet(flat, self.config["logit_alpha"])
        return self._flat_log_prob(s) + logdet

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Maximum likelihood with Adam; ActNorm is initialised from the first minibatch."""
        init_parameters(self, generator)
        # ActNorm re-initialises from the first minibatch; couplings start with unit scale bounds
        for norm, coupling in zip(self.norms, self.couplings):
            norm.initialised.fill_(False)
            coupling.scale.data.fill_(1.0)
        x = data.x.to(self.device).float()
        self.train()

        def nll(batch: torch.Tensor) -> torch.Tensor:
            return -self._log_prob_on_data_scale(batch, generator).mean()

        report = train_with_adam(self, nll, x, budget, generator, progress)
        self.eval()
        return report

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """Exact log-density in nats per example at x as given (images: already dequantised by the caller,
        ``genbench.metrics.likelihood.dequantise``, as for every continuous family)."""
        return self._log_prob_on_data_scale(x, None)

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        check_choice(sampler, self.supported_samplers(), "sampler for the flow family")
        d = math.prod(self.data_shape)
        z = noise.randn(d).to(self.device)
        # one inverse pass through the flow, counted by wrapping it
        net = CountingDenoiser(lambda z_, _: self.from_latent(z_))
        x = net(z, None)
        if self.modality == IMAGES:
            x = logit_to_data(x, self.config["logit_alpha"])
        return x.reshape(len(noise), *self.data_shape), float(net.calls)
