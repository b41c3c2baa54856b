"""Noise-level schedules: ``steps`` decreasing sigmas from sigma_max to sigma_min, then a final 0.

A sampler with ``steps`` steps walks the ``steps + 1`` values returned here (k-diffusion's
``get_sigmas_*`` convention). ``karras`` is EDM's schedule (Karras et al. 2022, Eq. 5):

    sigma_i = (sigma_max^(1/rho) + i / (N - 1) * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  i < N

with rho = 7 spending more steps at low noise; ``loglinear`` is uniform in log sigma (rho -> inf,
the VE schedule of Song et al. 2021); ``linear`` is uniform in sigma (rho = 1).
"""

from __future__ import annotations

import math

import torch

from genbench.errors import UsageError
from genbench.registry import check_choice


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM schedule (Karras et al. 2022, Eq. 5): [steps + 1] float64, uniform in sigma^(1/rho), ending in 0."""
    _check(steps, sigma_min, sigma_max)
    # [steps] ramp from 0 to 1 (a single step takes sigma_max alone)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return _append_zero(sigmas)


def loglinear_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Uniform in log sigma (Song et al. 2021, VE SDE): [steps + 1] float64 ending in 0; ``rho`` unused."""
    _check(steps, sigma_min, sigma_max)
    sigmas = torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64))
    return _append_zero(sigmas)


def linear_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Uniform in sigma: [steps + 1] float64 ending in 0; ``rho`` unused."""
    _check(steps, sigma_min, sigma_max)
    return _append_zero(torch.linspace(sigma_max, sigma_min, steps, dtype=torch.float64))


SCHEDULES = {"karras": karras_sigmas, "loglinear": loglinear_sigmas, "linear": linear_sigmas}


def build_sigmas(schedule: str, steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """The named schedule (``karras``, ``loglinear`` or ``linear``) as [steps + 1] float64 sigmas."""
    check_choice(schedule, sorted(SCHEDULES), "sigma schedule")
    return SCHEDULES[schedule](steps, sigma_min, sigma_max, rho)


def _check(steps: int, sigma_min: float, sigma_max: float) -> None:
    if int(steps) != steps or steps < 1:
        raise UsageError(f"the number of sampling steps must be a positive integer, got {steps!r}; use steps of 1 or more (a suite grid's `steps:`)")
    if not 0 < sigma_min < sigma_max:
        raise UsageError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}; "
                         "fix the model's noise range")


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])
