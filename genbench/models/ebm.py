"""``ebm``: an energy-based model p(x) proportional to exp(-E(x) / T), trained with short-run Langevin MCMC.

Training (Nijkamp, Hill, Zhu & Wu 2019, "Learning Non-Convergent Non-Persistent Short-Run
MCMC Toward Energy-Based Model"; Du & Mordatch 2019, "Implicit Generation and Generalization
in Energy-Based Models"): negatives are K Langevin steps from uniform noise on
[-init_scale, init_scale]^D, optionally restarted from a replay buffer of past negatives with
probability ``replay`` (Du & Mordatch, section 3.1); the loss is the contrastive divergence
E(x+) - E(x-) plus alpha (E(x+)^2 + E(x-)^2), which keeps the energies near zero (Du &
Mordatch, section 3.3). The chain is not differentiated through.

Sampling: the registered ``langevin`` sampler (unadjusted Langevin, Welling & Teh 2011)
x <- x + eps grad log p(x) + sqrt(2 eps) z from the same uniform start, with
grad log p = -grad E / T; steps = Langevin steps (each one gradient evaluation, NFE = steps).
Run it with the ``langevin_steps`` it was trained with (what ``default_steps`` returns for a
recipe, so suites that name no steps use it): a short-run EBM's samples are those of its K-step
chain, not of a converged one. The density is unnormalised,
so there is no likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from genbench.data.base import IMAGES, ROUND, Samples
from genbench.errors import UsageError
from genbench.models.base import MODELS, GenerativeModel, Progress, TrainBudget
from genbench.models.nets.mlp import MLP
from genbench.models.nets.training import init_parameters, train_with_adam
from genbench.registry import check_choice
from genbench.samplers.base import (
    SAMPLERS,
    CountingDenoiser,
    register_sampler,
    samplers_of_kind,
)
from genbench.seeding import SeededNoise

KIND = "langevin"
DEFAULT_LANGEVIN_STEPS = 40

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, step size) -> grad_x log p(x)


@register_sampler("langevin", kind=KIND, stochastic=True)
def sample_langevin(score: Score, x: torch.Tensor, step_sizes: torch.Tensor, noise) -> torch.Tensor:
    """Unadjusted Langevin dynamics (Welling & Teh 2011; Du & Mordatch 2019, eq. 3).

    For each step size eps in ``step_sizes``: x <- x + eps * score(x) + sqrt(2 eps) * z,
    z ~ N(0, I) from ``noise`` (per-sample seeds; anything with ``randn(*shape)`` works).
    One score evaluation per step (NFE = len(step_sizes)).
    """
    for eps in (float(e) for e in step_sizes):
        z = noise.randn(*x.shape[1:]).to(device=x.device, dtype=x.dtype)
        x = x + eps * score(x, torch.full((x.shape[0],), eps, device=x.device)) + math.sqrt(2 * eps) * z
    return x


class BatchNoise:
    """Training-time noise: one ``generator`` for the whole batch (the ``SeededNoise`` interface, but fast)."""

    def __init__(self, n: int, generator: torch.Generator, device: torch.device):
        self.n, self.generator, self.device = n, generator, device

    def __len__(self) -> int:
        return self.n

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn((self.n, *shape), generator=self.generator).to(self.device)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand((self.n, *shape), generator=self.generator).to(self.device)


def contrastive_divergence_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, alpha: float) -> torch.Tensor:
    """E(x+) - E(x-) averaged over the batch, plus alpha (E(x+)^2 + E(x-)^2) (Du & Mordatch 2019, section 3.3)."""
    return e_pos.mean() - e_neg.mean() + alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean())


@MODELS.register("ebm", description="energy-based model, short-run Langevin training (Nijkamp et al. 2019); Langevin sampler")
class EBM(GenerativeModel):
    """An MLP energy E(x) over flattened data; samples by Langevin dynamics from uniform noise."""

    family = "ebm"
    sample_quantisation = ROUND  # trained on the 8-bit grid u / 127.5 - 1

    def __init__(self, data_shape, modality, num_classes=None, hidden: int = 128, depth: int = 3,
                 langevin_steps: int = DEFAULT_LANGEVIN_STEPS, step_size: float = 0.01, temperature: float = 1.0,
                 init_scale: float = 3.0, alpha: float = 0.1, replay: float = 0.0, buffer_size: int = 10_000):
        super().__init__(data_shape, modality, num_classes, hidden=hidden, depth=depth, langevin_steps=langevin_steps,
                         step_size=step_size, temperature=temperature, init_scale=init_scale, alpha=alpha,
                         replay=replay, buffer_size=buffer_size)
        if langevin_steps < 1 or step_size <= 0 or temperature <= 0 or init_scale <= 0 or not 0 <= replay < 1:
            raise UsageError("ebm needs langevin_steps >= 1, step_size > 0, temperature > 0, init_scale > 0 and "
                             "0 <= replay < 1; fix the recipe's config")
        self.d = math.prod(self.data_shape)
        self.energy_net = MLP(self.d, 1, hidden, depth)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) [N] for x [N, *data_shape] (or flat [N, D])."""
        return self.energy_net(x.reshape(x.shape[0], -1)).squeeze(1)

    def score(self, x: torch.Tensor, step_size: torch.Tensor | None = None) -> torch.Tensor:
        """grad_x log p(x) = -grad_x E(x) / T for flat x [N, D] (no graph kept: not differentiable)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.energy(x).sum(), x)
        return -grad / self.config["temperature"]

    def initial_points(self, noise) -> torch.Tensor:
        """Uniform on [-init_scale, init_scale]^D (images: the scale is capped at 1): [N, D]."""
        scale = min(self.config["init_scale"], 1.0) if self.modality == IMAGES else self.config["init_scale"]
        return (2 * noise.rand(self.d) - 1) * scale

    def langevin_chain(self, x: torch.Tensor, steps: int, noise, score: Score | None = None) -> torch.Tensor:
        """``steps`` Langevin steps from flat x [N, D] with the model's step size (images clamped to [-1, 1])."""
        step_sizes = torch.full((steps,), self.config["step_size"], dtype=torch.float64)
        x = sample_langevin(score or self.score, x, step_sizes, noise)
        return x.clamp(-1, 1) if self.modality == IMAGES else x

    def _negatives(self, n: int, buffer: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Short-run chains [n, D] from fresh noise, or with probability ``replay`` from the buffer."""
        noise = BatchNoise(n, generator, self.device)
        start = self.initial_points(noise)
        if len(buffer) and self.config["replay"] > 0:
            from_buffer = (torch.rand(n, generator=generator) < self.config["replay"]).to(self.device)
            picks = buffer[torch.randint(len(buffer), (n,), generator=generator).to(self.device)]
            start = torch.where(from_buffer[:, None], picks, start)
        return self.langevin_chain(start, self.config["langevin_steps"], noise).detach()

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Contrastive divergence with short-run Langevin negatives and Adam."""
        init_parameters(self, generator)
        x = data.x.to(self.device).float().reshape(len(data), -1)
        buffer = torch.empty(0, self.d, device=self.device)
        alpha = self.config["alpha"]

        def loss(x_pos: torch.Tensor) -> torch.Tensor:
            nonlocal buffer
            x_neg = self._negatives(len(x_pos), buffer, generator)
            if self.config["replay"] > 0:
                buffer = torch.cat([x_neg, buffer])[: self.config["buffer_size"]]
            return contrastive_divergence_loss(self.energy(x_pos), self.energy(x_neg), alpha)

        return train_with_adam(self, loss, x, budget, generator, progress)

    @classmethod
    def supported_samplers(cls) -> list[str]:
        return samplers_of_kind(KIND)

    @classmethod
    def default_steps(cls, sampler: str, config: Mapping[str, Any] | None = None) -> int | None:
        """The recipe's ``langevin_steps``: a short-run EBM is sampled with the chain length it was trained with."""
        return int((config or {}).get("langevin_steps", DEFAULT_LANGEVIN_STEPS))

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = "langevin", steps: int | None = None) -> tuple[torch.Tensor, float]:
        """Uniform start per sample, then ``steps`` Langevin steps (default: the training chain length)."""
        check_choice(sampler, self.supported_samplers(), "sampler for the ebm family")
        steps = self.config["langevin_steps"] if steps is None else steps
        if int(steps) != steps or steps < 1:
            raise UsageError(f"langevin sampling needs a positive integer number of steps, got {steps!r}; use steps of 1 or more (a suite grid's `steps:`)")
        counted = CountingDenoiser(self.score)
        x = self.initial_points(noise).to(self.device)
        step_sizes = torch.full((int(steps),), self.config["step_size"], dtype=torch.float64)
        x = SAMPLERS.get(sampler).fn(counted, x, step_sizes, noise)
        if self.modality == IMAGES:
            x = x.clamp(-1, 1)
        return x.reshape(len(noise), *self.data_shape), float(counted.calls)
