"""Singlestep DPM-Solver of orders 1, 2 and 3 (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for Diffusion
Probabilistic Model Sampling in Around 10 Steps", Algorithms 1 and 2, noise prediction).

In the EDM parameterisation alpha = 1, the noise prediction is eps = (x - D(x; sigma)) / sigma and
lambda = -log sigma. A step sigma_i -> sigma_{i+1} has h = lambda_{i+1} - lambda_i; intermediate
points s sit at lambda_i + r h (sigma_s = sigma_i e^{-r h}). DPM-Solver-1 is DDIM; -2 uses r_1 = 1/2;
-3 uses r_1 = 1/3, r_2 = 2/3 (the paper's defaults). The step to sigma = 0 (lambda = inf) returns
D(x; sigma_last). NFE = order * (steps - 1) + 1.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from genbench.samplers._common import as_floats, denoise
from genbench.samplers.base import Denoiser, register_sampler
from genbench.seeding import SeededNoise


def noise_prediction(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """eps(x; sigma) = (x - D(x; sigma)) / sigma, one denoiser call."""
    return (x - denoise(denoiser, x, sigma)) / sigma


def dpm_solver_1_step(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """x_{i+1} = x_i - sigma_{i+1} (e^h - 1) eps_i (Lu et al. Eq. 3.7 with alpha = 1; = DDIM)."""
    h = math.log(sigma / sigma_next)
    return x - sigma_next * math.expm1(h) * noise_prediction(denoiser, x, sigma)


def dpm_solver_2_step(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float, r1: float = 0.5) -> torch.Tensor:
    """DPM-Solver-2 (Lu et al. Algorithm 1): a first-order step to s_1, then the step with eps(u_1, s_1)."""
    h = math.log(sigma / sigma_next)
    sigma_s1 = sigma * math.exp(-r1 * h)
    eps = noise_prediction(denoiser, x, sigma)
    # u_1 = x - sigma_s1 (e^{r1 h} - 1) eps_i
    u1 = x - sigma_s1 * math.expm1(r1 * h) * eps
    eps_s1 = noise_prediction(denoiser, u1, sigma_s1)
    # x_{i+1} = x - sigma_{i+1} (e^h - 1) eps_i - sigma_{i+1} / (2 r1) (e^h - 1) (eps_s1 - eps_i)
    return x - sigma_next * math.expm1(h) * eps - sigma_next / (2 * r1) * math.expm1(h) * (eps_s1 - eps)


def dpm_solver_3_step(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float,
                      r1: float = 1 / 3, r2: float = 2 / 3) -> torch.Tensor:
    """DPM-Solver-3 (Lu et al. Algorithm 2): points at lambda_i + r1 h and lambda_i + r2 h, then the third-order step."""
    h = math.log(sigma / sigma_next)
    sigma_s1, sigma_s2 = sigma * math.exp(-r1 * h), sigma * math.exp(-r2 * h)
    eps = noise_prediction(denoiser, x, sigma)
    u1 = x - sigma_s1 * math.expm1(r1 * h) * eps
    d1 = noise_prediction(denoiser, u1, sigma_s1) - eps
    # u_2 = x - sigma_s2 (e^{r2 h} - 1) eps_i - sigma_s2 r2 / r1 ((e^{r2 h} - 1) / (r2 h) - 1) D_1
    u2 = (x - sigma_s2 * math.expm1(r2 * h) * eps
          - sigma_s2 * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1) * d1)
    d2 = noise_prediction(denoiser, u2, sigma_s2) - eps
    # x_{i+1} = x - sigma_{i+1} (e^h - 1) eps_i - sigma_{i+1} / r2 ((e^h - 1) / h - 1) D_2
    return x - sigma_next * math.expm1(h) * eps - sigma_next / r2 * (math.expm1(h) / h - 1) * d2


def singlestep(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, step) -> torch.Tensor:
    """Walk the schedule with ``step`` between positive sigmas; the step to 0 returns D(x; sigma_last)."""
    for sigma, sigma_next in pairwise(as_floats(sigmas)):
        if sigma_next == 0:
            return denoise(denoiser, x, sigma)
        x = step(denoiser, x, sigma, sigma_next)
    return x


@register_sampler("dpm_solver_1", stochastic=False)
def sample_dpm_solver_1(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                        noise: SeededNoise | None = None) -> torch.Tensor:
    """DPM-Solver-1 (Lu et al. 2022, Eq. 3.7): the first-order exponential integrator, equal to DDIM; NFE = steps."""
    return singlestep(denoiser, x, sigmas, dpm_solver_1_step)


@register_sampler("dpm_solver_2", stochastic=False)
def sample_dpm_solver_2(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                        noise: SeededNoise | None = None) -> torch.Tensor:
    """DPM-Solver-2, singlestep (Lu et al. 2022, Algorithm 1, r_1 = 1/2); NFE = 2 (steps - 1) + 1."""
    return singlestep(denoiser, x, sigmas, dpm_solver_2_step)


@register_sampler("dpm_solver_3", stochastic=False)
def sample_dpm_solver_3(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                        noise: SeededNoise | None = None) -> torch.Tensor:
    """DPM-Solver-3, singlestep (Lu et al. 2022, Algorithm 2, r_1 = 1/3, r_2 = 2/3); NFE = 3 (steps - 1) + 1."""
    return singlestep(denoiser, x, sigmas, dpm_solver_3_step)
