"""``consistency``: a consistency model trained from scratch (consistency training, no teacher).

Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models" (CM), with the improved recipe of
Song & Dhariwal 2023, "Improved Techniques for Training Consistency Models" (iCT):

  f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
  c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
  c_out  = sigma_data (sigma - sigma_min) / sqrt(sigma^2 + sigma_data^2),            (CM App. C)
  c_in   = 1 / sqrt(sigma^2 + sigma_data^2),  c_noise = ln(sigma) / 4                 (EDM)

so f(x, sigma_min) = x exactly (the boundary condition). Training (iCT, Algorithm 1 of CM with
the iCT changes): Karras noise levels sigma_1 < ... < sigma_N (rho = 7) with N doubling from
``n_start`` to ``n_end`` over training (iCT eq. 8); an interval i drawn with probability
proportional to the lognormal mass of [sigma_i, sigma_{i+1}] (P_mean = -1.1, P_std = 2.0);
loss lambda(sigma_i) d(f(x + sigma_{i+1} z, sigma_{i+1}), stopgrad f(x + sigma_i z, sigma_i)) with
lambda = 1 / (sigma_{i+1} - sigma_i) and the pseudo-Huber metric d(a, b) = sqrt(|a - b|^2 + c^2) - c,
c = 0.00054 sqrt(D); the target uses the online weights (iCT drops the EMA teacher).

Sampling: the registered ``consistency`` sampler (CM Algorithm 1, multistep consistency
sampling); steps 1, 2, 4, ... (default 1); NFE = steps.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from typing import Any

import torch

from genbench.data.base import IMAGES, Samples
from genbench.errors import UsageError
from genbench.models.base import MODELS, SAMPLE_QUANTISATION_BY_DEQUANTIZE, GenerativeModel, Progress, TrainBudget
from genbench.models.nets.mlp import TimeConditionedMLP
from genbench.models.nets.training import (
    dequantise_images,
    init_parameters,
    train_with_adam,
)
from genbench.registry import check_choice
from genbench.samplers.base import (
    SAMPLERS,
    CountingDenoiser,
    Denoiser,
    register_sampler,
    samplers_of_kind,
)
from genbench.samplers.schedules import karras_sigmas
from genbench.seeding import SeededNoise

KIND = "consistency"


@register_sampler("consistency", kind=KIND, stochastic=True)
def sample_consistency(consistency_fn: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                       noise: SeededNoise | None = None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1).

    ``sigmas`` = [tau_0 = sigma_max > tau_1 > ... > tau_{S-1} > sigma_min]: x starts as
    sigma_max * z; each tau_n is one call of the consistency function f, and between calls
    fresh noise of std sqrt(tau_n^2 - sigma_min^2) is added to the current estimate of x_0.
    NFE = S = len(sigmas) - 1; per-sample noise from ``noise``.
    """
    taus, sigma_min = [float(s) for s in sigmas[:-1]], float(sigmas[-1])
    x0 = consistency_fn(x, _rows_of(taus[0], x))
    for tau in taus[1:]:
        if noise is None:
            raise ValueError("multistep consistency sampling is stochastic: pass a SeededNoise")
        z = noise.randn(*x.shape[1:]).to(device=x.device, dtype=x.dtype)
        # x_tau = x_0 + sqrt(tau^2 - sigma_min^2) z, then back to x_0
        x_tau = x0 + math.sqrt(tau**2 - sigma_min**2) * z
        x0 = consistency_fn(x_tau, _rows_of(tau, x))
    return x0


def _rows_of(sigma: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)


def consistency_scalings(sigma: torch.Tensor, sigma_data: float, sigma_min: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) for sigma [N]: CM Appendix C boundary scalings, EDM c_in / c_noise."""
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    c_out = sigma_data * (sigma - sigma_min) / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1.0 / (sigma**2 + sigma_data**2).sqrt()
    return c_skip, c_out, c_in, sigma.log() / 4.0


def discretisation_steps(k: int, total: int, n_start: int, n_end: int) -> int:
    """N(k) of iCT eq. 8: n_start doubling every K' steps up to n_end, plus 1 (number of sigmas)."""
    doublings = math.floor(math.log2(n_end / n_start)) + 1
    k_prime = max(1, math.floor(total / doublings))
    return min(n_start * 2 ** math.floor(k / k_prime), n_end) + 1


def training_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras noise levels sigma_1 < ... < sigma_n (float64, increasing), as iCT trains on."""
    return karras_sigmas(n, sigma_min, sigma_max, rho)[:-1].flip(0)


def lognormal_interval_probs(sigmas: torch.Tensor, p_mean: float, p_std: float) -> torch.Tensor:
    """p(i) proportional to the N(p_mean, p_std^2) mass of [ln sigma_i, ln sigma_{i+1}] (iCT eq. 10): [n - 1]."""
    cdf = 0.5 * (1 + torch.erf((sigmas.log() - p_mean) / (math.sqrt(2) * p_std)))
    mass = cdf[1:] - cdf[:-1]
    return mass / mass.sum()


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """sqrt(|a - b|^2 + c^2) - c per example [B] (iCT section 3.3)."""
    return ((a - b).flatten(1).pow(2).sum(1) + c**2).sqrt() - c


@MODELS.register("consistency", description="consistency model by consistency training (Song et al. 2023, iCT); 1-4 steps")
class ConsistencyModel(GenerativeModel):
    """A time-conditioned MLP with the consistency boundary parameterisation, trained by iCT."""

    family = "consistency"

    def __init__(self, data_shape, modality, num_classes=None, hidden: int = 256, depth: int = 4, emb_dim: int = 64,
                 sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                 n_start: int = 10, n_end: int = 160, p_mean: float = -1.1, p_std: float = 2.0,
                 dequantize: bool = True):
        super().__init__(data_shape, modality, num_classes, hidden=hidden, depth=depth, emb_dim=emb_dim,
                         sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, n_start=n_start,
                         n_end=n_end, p_mean=p_mean, p_std=p_std, dequantize=dequantize)
        if not (sigma_data > 0 and 0 < sigma_min < sigma_max and 1 <= n_start <= n_end):
            raise UsageError("consistency needs sigma_data > 0, 0 < sigma_min < sigma_max and 1 <= n_start <= n_end; "
                             "fix the recipe's config")
        d = math.prod(self.data_shape)
        self.net = TimeConditionedMLP(d, d, hidden=hidden, depth=depth, emb_dim=emb_dim)

    def consistency_fn(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """f(x, sigma) for x [N, *data_shape] and sigma [N]; f(x, sigma_min) = x."""
        c = self.config
        c_skip, c_out, c_in, c_noise = consistency_scalings(sigma, c["sigma_data"], c["sigma_min"])
        flat = x.reshape(x.shape[0], -1)
        # [N, D] = c_skip x + c_out F(c_in x, c_noise)
        out = c_skip[:, None] * flat + c_out[:, None] * self.net(c_in[:, None] * flat, c_noise)
        return out.reshape(x.shape)

    def ct_loss(self, x0: torch.Tensor, step: int, total: int, generator: torch.Generator) -> torch.Tensor:
        """iCT loss on a minibatch x0 [B, ...] at training step ``step`` of ``total``."""
        c = self.config
        if self.modality == IMAGES and c["dequantize"]:
            x0 = dequantise_images(x0, generator)
        sigmas = training_sigmas(discretisation_steps(step, total, c["n_start"], c["n_end"]),
                                 c["sigma_min"], c["sigma_max"], c["rho"])
        # interval i ~ lognormal mass: sigma_i < sigma_{i+1}, [B] each
        probs = lognormal_interval_probs(sigmas, c["p_mean"], c["p_std"])
        i = torch.multinomial(probs, x0.shape[0], replacement=True, generator=generator)
        sigma, sigma_next = sigmas[i].float().to(x0.device), sigmas[i + 1].float().to(x0.device)
        z = torch.randn(x0.shape, generator=generator).to(x0.device)
        rows = (-1,) + (1,) * (x0.ndim - 1)
        with torch.no_grad():
            target = self.consistency_fn(x0 + sigma.view(rows) * z, sigma)
        online = self.consistency_fn(x0 + sigma_next.view(rows) * z, sigma_next)
        weight = 1.0 / (sigma_next - sigma)
        return (weight * pseudo_huber(online, target, 0.00054 * math.sqrt(x0[0].numel()))).mean()

    sample_quantisation = SAMPLE_QUANTISATION_BY_DEQUANTIZE  # floor after dequantised training

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Consistency training with Adam; the sampling weights are the EMA (``budget.ema``) or the last."""
        init_parameters(self.net, generator)
        x = data.x.to(self.device).float()
        ema_net = copy.deepcopy(self.net).requires_grad_(False)
        step = itertools.count()

        def loss(batch: torch.Tensor) -> torch.Tensor:
            return self.ct_loss(batch, next(step), budget.steps, generator)

        report = train_with_adam(self.net, loss, x, budget, generator, progress, ema_net)
        self.net.load_state_dict(ema_net.state_dict())
        return report

    @classmethod
    def supported_samplers(cls) -> list[str]:
        return samplers_of_kind(KIND)

    @classmethod
    def default_steps(cls, sampler: str, config: Mapping[str, Any] | None = None) -> int | None:
        return 1

    def sampling_sigmas(self, steps: int) -> torch.Tensor:
        """[tau_0 = sigma_max, ..., tau_{steps-1}, sigma_min]: the Karras schedule's first ``steps`` levels."""
        c = self.config
        if int(steps) != steps or steps < 1:
            raise UsageError(f"consistency sampling needs a positive integer number of steps, got {steps!r}; use steps of 1 or more (a suite grid's `steps:`)")
        taus = karras_sigmas(steps + 1, c["sigma_min"], c["sigma_max"], c["rho"])[:steps]
        return torch.cat([taus, taus.new_full((1,), c["sigma_min"])])

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = "consistency", steps: int | None = None) -> tuple[torch.Tensor, float]:
        """x_T = sigma_max z per sample, then the named consistency sampler; NFE = calls of f per sample."""
        check_choice(sampler, self.supported_samplers(), "sampler for the consistency family")
        sigmas = self.sampling_sigmas(steps if steps is not None else self.default_steps(sampler, self.config))
        x = float(sigmas[0]) * noise.randn(*self.data_shape).to(self.device)
        counted = CountingDenoiser(self.consistency_fn)
        x = SAMPLERS.get(sampler).fn(counted, x, sigmas, noise)
        if self.modality == IMAGES:
            x = x.clamp(-1.0, 1.0)
        return x, float(counted.calls)
