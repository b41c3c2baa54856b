"""``dpmpp_2m``: DPM-Solver++(2M), the multistep second-order data-prediction solver."""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from genbench.samplers._common import as_floats, denoise
from genbench.samplers.base import Denoiser, register_sampler
from genbench.seeding import SeededNoise


@register_sampler("dpmpp_2m", stochastic=False)
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling...", Algorithm 2).

    In the EDM parameterisation (alpha = 1, lambda = -log sigma) with h_i = lambda_{i+1} - lambda_i:
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (exp(-h_i) - 1) D_i, where D_i is the denoised estimate
    extrapolated with the previous one, D_i = (1 + 1/(2 r_i)) D(x_i) - 1/(2 r_i) D(x_{i-1}),
    r_i = h_{i-1} / h_i; the first step is first order (DDIM) and the step to sigma = 0 returns the
    denoised estimate. One denoiser call per step (NFE = steps). ``noise`` is unused.
    """
    s = as_floats(sigmas)
    old_denoised, h_last = None, None
    for sigma, sigma_next in pairwise(s):
        denoised = denoise(denoiser, x, sigma)
        if sigma_next == 0:
            return denoised
        # step size in lambda = -log sigma
        h = math.log(sigma) - math.log(sigma_next)
        d = denoised
        if old_denoised is not None:
            # second-order (multistep) correction of the data prediction
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (sigma_next / sigma) * x - math.expm1(-h) * d
        old_denoised, h_last = denoised, h
    return x
