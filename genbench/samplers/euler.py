"""First-order samplers: ``euler`` (probability-flow ODE) and ``euler_ancestral`` (stochastic)."""

from __future__ import annotations

from itertools import pairwise

import torch

from genbench.samplers._common import ancestral_split, as_floats, denoise, pf_ode_slope, require_noise
from genbench.samplers.base import Denoiser, register_sampler
from genbench.seeding import SeededNoise


@register_sampler("euler", stochastic=False)
def sample_euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
    """Euler steps on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. 2022, Eq. 3).

    One denoiser call per step (NFE = steps). With sigma as the time variable this is exactly
    deterministic DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eta = 0) run in
    the variance-exploding parameterisation x / sqrt(alpha_bar), sigma = sqrt((1 - alpha_bar) / alpha_bar)
    (Karras et al. 2022, Sec. 3). ``noise`` is unused.
    """
    s = as_floats(sigmas)
    for sigma, sigma_next in pairwise(s):
        # x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * d_i
        d = pf_ode_slope(x, denoise(denoiser, x, sigma), sigma)
        x = x + (sigma_next - sigma) * d
    return x


@register_sampler("euler_ancestral", stochastic=True)
def sample_euler_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: SeededNoise | None = None,
                           eta: float = 1.0) -> torch.Tensor:
    """Ancestral Euler (k-diffusion ``sample_euler_ancestral``, Crowson 2022): Euler to sigma_down, then noise of std sigma_up.

    sigma_down^2 + sigma_up^2 = sigma_next^2 and sigma_up is DDPM's posterior std (Ho et al. 2020)
    at eta = 1; the noise of each sample comes from its own generator in ``noise`` (per-sample
    seeds), so a sample does not depend on the batch it is drawn in. NFE = steps.
    """
    noise = require_noise(noise, "euler_ancestral")
    s = as_floats(sigmas)
    for sigma, sigma_next in pairwise(s):
        denoised = denoise(denoiser, x, sigma)
        sigma_down, sigma_up = ancestral_split(sigma, sigma_next, eta)
        # deterministic part: Euler from sigma to sigma_down
        x = x + (sigma_down - sigma) * pf_ode_slope(x, denoised, sigma)
        # stochastic part: add N(0, sigma_up^2 I)
        if sigma_up > 0:
            x = x + sigma_up * noise.randn(*x.shape[1:]).to(device=x.device, dtype=x.dtype)
    return x
