"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) on the full chain or a respaced subset of timesteps.

A step t -> s (s < t, s = -1 the clean data) samples the posterior q(x_s | x_t, x_0) with x_0 the
model's prediction (Ho et al. 2020, Eqs. 6-7, with the respaced beta of Nichol and Dhariwal 2021,
"Improved DDPM", Sec. 4: beta_{t,s} = 1 - alpha_bar_t / alpha_bar_s)::

    mean = sqrt(alpha_bar_s) beta_{t,s} / (1 - alpha_bar_t) x_0 + sqrt(alpha_bar_t / alpha_bar_s) (1 - alpha_bar_s) / (1 - alpha_bar_t) x_t
    var  = beta_tilde_{t,s} = (1 - alpha_bar_s) / (1 - alpha_bar_t) beta_{t,s}   (``ddpm``, "fixed small")
           or beta_{t,s}                                                        (``ddpm_beta``, "fixed large")

The step into the clean data (s = -1) returns the mean, x_0's prediction, without noise
(Algorithm 2's z = 0 at t = 1). NFE = steps.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from genbench.samplers._common import require_noise
from genbench.samplers.base import register_sampler
from genbench.samplers.vp import VP_KIND, DiscreteVP
from genbench.seeding import SeededNoise


def posterior_coefficients(alpha_bar_t: float, alpha_bar_s: float) -> tuple[float, float, float, float]:
    """(coef_x0, coef_xt, beta_tilde, beta) of q(x_s | x_t, x_0) for a (respaced) step t -> s."""
    beta = 1.0 - alpha_bar_t / alpha_bar_s
    coef_x0 = math.sqrt(alpha_bar_s) * beta / (1.0 - alpha_bar_t)
    coef_xt = math.sqrt(alpha_bar_t / alpha_bar_s) * (1.0 - alpha_bar_s) / (1.0 - alpha_bar_t)
    beta_tilde = (1.0 - alpha_bar_s) / (1.0 - alpha_bar_t) * beta
    return coef_x0, coef_xt, beta_tilde, beta


def ancestral_chain(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor, noise: SeededNoise,
                    posterior_variance: bool) -> torch.Tensor:
    """Ho et al. Algorithm 2 over ``timesteps`` (decreasing, ending in -1) with beta_tilde or beta as the variance."""
    for t, s in pairwise(int(v) for v in timesteps):
        _, x0 = model.eps_x0(x, t)
        if s < 0:
            return x0
        coef_x0, coef_xt, beta_tilde, beta = posterior_coefficients(model.alpha_bar_at(t), model.alpha_bar_at(s))
        # x_s = mean + sqrt(var) z, z drawn per sample
        z = noise.randn(*x.shape[1:]).to(device=x.device, dtype=x.dtype)
        var = beta_tilde if posterior_variance else beta
        x = coef_x0 * x0 + coef_xt * x + math.sqrt(var) * z
    return x


@register_sampler("ddpm", kind=VP_KIND, stochastic=True)
def sample_ddpm(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
    """DDPM ancestral sampling with the posterior variance beta-tilde (Ho et al. 2020, Algorithm 2; Nichol and Dhariwal 2021 respacing).

    ``timesteps`` = the full chain T-1, ..., 0, -1 or a respaced subset; NFE = steps; per-sample noise.
    """
    return ancestral_chain(model, x, timesteps, require_noise(noise, "ddpm"), posterior_variance=True)


@register_sampler("ddpm_beta", kind=VP_KIND, stochastic=True)
def sample_ddpm_beta(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor,
                     noise: SeededNoise | None = None) -> torch.Tensor:
    """DDPM ancestral sampling with the variance beta_t, "fixed large" (Ho et al. 2020, Algorithm 2, sigma_t^2 = beta_t).

    Respaced steps use beta_{t,s} = 1 - alpha_bar_t / alpha_bar_s (Nichol and Dhariwal 2021); NFE = steps.
    """
    return ancestral_chain(model, x, timesteps, require_noise(noise, "ddpm_beta"), posterior_variance=False)
