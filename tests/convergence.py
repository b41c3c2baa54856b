"""Analytic-Gaussian helpers shared by the sampler tests: exact models in sigma and discrete VP form,
exact output moments of affine stochastic samplers, and the measured order of convergence.

For data x_0 ~ N(mu, diag s^2):
  sigma form:  D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the probability-flow ODE maps
               x at sigma_a to mu + (x - mu) sqrt((s^2 + sigma_b^2) / (s^2 + sigma_a^2)) at sigma_b;
  VP form:     x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps has E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from genbench.samplers.vp import VPSchedule


def convergence_order(steps: list[int], errors: list[float]) -> float:
    """Least-squares slope of -log(error) against log(steps): p when error ~ C steps^-p."""
    return float(-np.polyfit(np.log(np.asarray(steps, float)), np.log(np.asarray(errors, float)), 1)[0])


def gaussian_denoiser(mu: torch.Tensor, s: torch.Tensor):
    """Exact D(x; sigma) for N(mu, diag s^2), elementwise (rows never interact)."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sig = torch.as_tensor(sigma).reshape(-1, *([1] * (x.ndim - 1))).to(x)
        m, v = mu.to(x), (s**2).to(x)
        return m + v / (v + sig**2) * (x - m)

    return denoise


def ode_map(x: torch.Tensor, sigma_a: float, sigma_b: float, mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The exact probability-flow ODE map (sigma form) from noise level sigma_a to sigma_b."""
    return mu + (x - mu) * torch.sqrt((s**2 + sigma_b**2) / (s**2 + sigma_a**2))


def gaussian_eps_model(schedule: VPSchedule, mu: torch.Tensor, s: torch.Tensor):
    """Exact epsilon prediction model_output(x_t, t) of N(mu, diag s^2) under a discrete VP schedule (fractional t ok)."""

    def model_output(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = schedule.t_to_sigma(t.double().cpu()).to(x_t)
        ab = (1.0 / (1.0 + sigma**2)).reshape(-1, *([1] * (x_t.ndim - 1)))
        m, v = mu.to(x_t), (s**2).to(x_t)
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * m) / (ab * v + 1 - ab)

    return model_output


class OneHotNoise:
    """Stand-in for SeededNoise that isolates each noise draw: draw k is 1 in row k + 1, 0 elsewhere (row 0: none).

    For a sampler affine in x and in its noise (every sampler on a Gaussian denoiser), row 0 of the
    output is the noise-free result b and row k + 1 minus b is the coefficient c_k of draw k.
    """

    def __init__(self, rows: int, dtype: torch.dtype = torch.float64):
        self.rows, self.dtype, self.draws = rows, dtype, 0

    def __len__(self) -> int:
        return self.rows

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        out = torch.zeros(self.rows, *shape, dtype=self.dtype)
        self.draws += 1
        if self.draws >= self.rows:
            raise RuntimeError("OneHotNoise: more noise draws than rows; allocate more rows")
        out[self.draws] = 1.0
        return out


def affine_sampler_moments(run: Callable[[torch.Tensor, OneHotNoise], torch.Tensor], x_mean: torch.Tensor,
                           x_std: torch.Tensor, max_draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and std of run(x_T, noise) for x_T ~ N(x_mean, diag x_std^2) and standard normal noise.

    ``run`` must be affine in x_T and in each noise draw, elementwise per dimension:
    x_0 = a x_T + b + sum_k c_k z_k, so mean = a x_mean + b and var = a^2 x_std^2 + sum_k c_k^2.
    """
    rows, d = max_draws + 1, x_mean.numel()
    zero = run(torch.zeros(rows, d, dtype=torch.float64), OneHotNoise(rows))
    b, c = zero[0], zero[1:] - zero[0]
    a = run(torch.ones(rows, d, dtype=torch.float64), OneHotNoise(rows))[0] - b
    mean = a * x_mean + b
    var = a**2 * x_std**2 + (c**2).sum(0)
    return mean, var.sqrt()
