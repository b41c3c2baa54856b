"""``adaptive_sde``: the adaptive step-size SDE solver of Jolicoeur-Martineau et al. 2021, "Gotta Go Fast When
Generating Data with Score-Based Models", Algorithm 1.

The reverse SDE is solved in u = log sigma (EDM parameterisation x = x_0 + sigma eps, sigma(t) = t):
dx/dsigma = 2 (x - D(x; sigma)) / sigma with noise of variance 2 sigma |dsigma|, i.e. for a step h > 0
downwards in u::

    f(x, sigma) = -2 (x - D(x; sigma)),   g(sigma) = sigma sqrt(2)
    x'  = x + h f(x, sigma) + sqrt(h) g(sigma) z                                    (Euler-Maruyama)
    x'' = x + h/2 (f(x, sigma) + f(x', sigma')) + sqrt(h)/2 (g(sigma) + g(sigma')) z   (improved Euler, same z)

with sigma' = sigma e^{-h}. The local error E = || (x' - x'') / delta ||_2 / sqrt(n), delta =
max(eps_abs, eps_rel max(|x'|, |x_prev|)), accepts x'' when E <= 1 and sets the next step to
h theta E^{-r} (theta = 0.9, r = 0.9, the paper's choices). The step sizes are shared by the batch
(E is the largest over the batch), so every sample sees the same calls and NFE = calls is the real
cost; a sample's path therefore depends on the batch it is drawn in (its noise is its own, but
which draw meets which step is the batch's), like ``ode``. A rejected step draws fresh noise; with
per-sample steps that would select small draws and shrink the variance (no Brownian bridge), which
the batch maximum avoids for batches of more than a few samples (checked on 200k 2-D samples).

The tolerance is swept like a step count: ``steps`` S (len(sigmas) - 1) sets eps_rel = 0.1 / sqrt(S)
and eps_abs = eps_rel / 6.4 (the paper's ratio 0.0078 / 0.05), so S = 1 ... 100 spans the paper's range
of eps_rel, 0.1 ... 0.01; the NFE grows about as sqrt(S) (measured on a 2-D Gaussian: 171 at S = 2). Only
the ends of ``sigmas`` are used; the last step to sigma = 0 returns D(x; sigma_min). NFE = 2 per
attempted step + 1, counted.
"""

from __future__ import annotations

import math

import torch

from genbench.samplers._common import as_floats, denoise, require_noise
from genbench.samplers.base import Denoiser, register_sampler
from genbench.seeding import SeededNoise

REL_TOL_AT_ONE_STEP = 0.1  # eps_rel = 0.1 / sqrt(steps): the paper's range 0.1 ... 0.01 over 1 ... 100 steps
ABS_PER_REL = 1 / 6.4  # eps_abs / eps_rel: the paper's 0.0078 / 0.05
THETA, R = 0.9, 0.9  # safety factor and exponent of the step-size update (paper, Sec. 3.2)
H_INIT_FRACTION = 0.01  # first step: 1% of the log-sigma range (the paper's h_init = 0.01 on t in [0, 1])


class NoiseStream:
    """Per-sample standard normal draws taken from each sample's generator in blocks of ``block`` (one call per
    generator per block instead of per step; row i's sequence depends on its own generator only)."""

    def __init__(self, noise: SeededNoise, shape: tuple[int, ...], dtype: torch.dtype, block: int = 64):
        self.noise, self.shape, self.dtype, self.block = noise, shape, dtype, block
        self.buffer: torch.Tensor | None = None
        self.used = block

    def next(self) -> torch.Tensor:
        if self.used == self.block:
            # [N, block, *shape]
            self.buffer = self.noise.randn(self.block, *self.shape, dtype=self.dtype)
            self.used = 0
        self.used += 1
        return self.buffer[:, self.used - 1]


def reverse_sde_drift(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """f(x, sigma) = -2 (x - D(x; sigma)): the reverse SDE's drift per unit of decreasing log sigma."""
    return -2.0 * (x - denoise(denoiser, x, sigma))


def scaled_error(x_em: torch.Tensor, x_ie: torch.Tensor, x_prev: torch.Tensor, eps_abs: float, eps_rel: float) -> float:
    """max over the batch of || (x' - x'') / delta ||_2 / sqrt(n) (Jolicoeur-Martineau et al. Eq. 7); inf if not finite."""
    delta = torch.clamp(eps_rel * torch.maximum(x_em.abs(), x_prev.abs()), min=eps_abs)
    err = float(((x_em - x_ie) / delta).flatten(1).pow(2).mean(1).sqrt().max())
    return err if math.isfinite(err) else math.inf


@register_sampler("adaptive_sde", stochastic=True, adaptive=True)
def sample_adaptive_sde(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: SeededNoise | None = None,
                        eps_rel: float | None = None) -> torch.Tensor:
    """Adaptive EM / improved-Euler SDE solver (Jolicoeur-Martineau et al. 2021, Algorithm 1); steps set the tolerance."""
    noise = require_noise(noise, "adaptive_sde")
    s = as_floats(sigmas)
    positive = [v for v in s if v > 0]
    eps_rel = eps_rel if eps_rel is not None else REL_TOL_AT_ONE_STEP / math.sqrt(len(s) - 1)
    eps_abs = eps_rel * ABS_PER_REL
    u, u_end = math.log(positive[0]), math.log(positive[-1])
    h = H_INIT_FRACTION * (u - u_end)
    h_min = 1e-9 * (u - u_end)
    stream = NoiseStream(noise, tuple(x.shape[1:]), x.dtype)
    while u - u_end > 1e-12:
        if h < h_min:
            raise RuntimeError("adaptive_sde: the step size underflowed (the denoiser returned non-finite values?)")
        h = min(h, u - u_end)
        sigma, sigma_next = math.exp(u), math.exp(u - h)
        z = stream.next().to(device=x.device, dtype=x.dtype)
        f = reverse_sde_drift(denoiser, x, sigma)
        # Euler-Maruyama and improved Euler with the same noise
        x_em = x + h * f + math.sqrt(2.0 * h) * sigma * z
        f_next = reverse_sde_drift(denoiser, x_em, sigma_next)
        x_ie = x + 0.5 * h * (f + f_next) + math.sqrt(2.0 * h) * 0.5 * (sigma + sigma_next) * z
        # delta uses the state stepped from (the paper's x'_prev)
        err = scaled_error(x_em, x_ie, x, eps_abs, eps_rel)
        if err <= 1.0:
            u, x = u - h, x_ie
        h = h * THETA * min(max(err, 1e-10), 1e10) ** (-R)
    return denoise(denoiser, x, positive[-1]) if s[-1] == 0 else x
