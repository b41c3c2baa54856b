"""Second-order samplers of Karras et al. 2022 (EDM): ``heun`` (Algorithm 1) and ``edm_stochastic`` (Algorithm 2)."""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from genbench.samplers._common import as_floats, denoise, pf_ode_slope, require_noise
from genbench.samplers.base import Denoiser, register_sampler
from genbench.seeding import SeededNoise


def heun_step(denoiser: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One step sigma -> sigma_next: Euler, then the trapezoidal correction unless sigma_next = 0 (EDM Alg. 1, lines 4-8)."""
    d = pf_ode_slope(x, denoise(denoiser, x, sigma), sigma)
    x_next = x + (sigma_next - sigma) * d
    if sigma_next > 0:
        # average the slopes at both ends
        d_next = pf_ode_slope(x_next, denoise(denoiser, x_next, sigma_next), sigma_next)
        x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
    return x_next


@register_sampler("heun", stochastic=False)
def sample_heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, "Elucidating the Design Space...", Algorithm 1).

    Deterministic; the last step (to sigma = 0) is a plain Euler step, so NFE = 2 * steps - 1.
    ``noise`` is unused.
    """
    s = as_floats(sigmas)
    for sigma, sigma_next in pairwise(s):
        x = heun_step(denoiser, x, sigma, sigma_next)
    return x


@register_sampler("edm_stochastic", stochastic=True)
def sample_edm_stochastic(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: SeededNoise | None = None,
                          s_churn: float = 40.0, s_tmin: float = 0.05, s_tmax: float = 50.0,
                          s_noise: float = 1.003) -> torch.Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): churn noise in, then a Heun step.

    At each sigma_i in [s_tmin, s_tmax] the noise level is raised to sigma_hat = (1 + gamma) sigma_i,
    gamma = min(s_churn / steps, sqrt(2) - 1), by adding N(0, (sigma_hat^2 - sigma_i^2) s_noise^2)
    drawn per sample from ``noise``; a Heun step then goes sigma_hat -> sigma_{i+1} (Euler on the
    last step), so NFE = 2 * steps - 1. Defaults are EDM's ImageNet-64 settings (Table 5), whose
    s_tmin / s_tmax are absolute noise levels for data with sigma_data = 0.5.
    """
    noise = require_noise(noise, "edm_stochastic")
    s = as_floats(sigmas)
    steps = len(s) - 1
    for sigma, sigma_next in pairwise(s):
        gamma = min(s_churn / steps, math.sqrt(2.0) - 1.0) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1.0 + gamma)
        if gamma > 0:
            # x_hat = x + sqrt(sigma_hat^2 - sigma^2) * s_noise * eps
            eps = noise.randn(*x.shape[1:]).to(device=x.device, dtype=x.dtype)
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * eps
        x = heun_step(denoiser, x, sigma_hat, sigma_next)
    return x
