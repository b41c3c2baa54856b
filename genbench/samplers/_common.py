"""Pieces shared by the diffusion samplers (EDM convention x = x_0 + sigma * eps)."""

from __future__ import annotations

import torch

from genbench.samplers.base import Denoiser
from genbench.seeding import SeededNoise


def sigma_rows(sigma: float, x: torch.Tensor) -> torch.Tensor:
    """The noise level as an [N] tensor, the form handed to the denoiser."""
    return torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)


def denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """D(x; sigma) for a batch [N, ...] at one scalar noise level."""
    return denoiser(x, sigma_rows(sigma, x))


def pf_ode_slope(x: torch.Tensor, denoised: torch.Tensor, sigma: float) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE, (x - D(x; sigma)) / sigma (EDM Eq. 3 with sigma(t) = t)."""
    return (x - denoised) / sigma


def ancestral_split(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up) of an ancestral step sigma -> sigma_next (k-diffusion ``get_ancestral_step``).

    The step goes deterministically to sigma_down and adds fresh noise of std sigma_up, with
    sigma_down^2 + sigma_up^2 = sigma_next^2; eta = 1 matches DDPM's posterior variance.
    """
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def as_floats(sigmas: torch.Tensor) -> list[float]:
    """A 1-D schedule as Python floats (so the step arithmetic keeps x's dtype and device)."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("sigmas must be a 1-D tensor of at least two noise levels ending in 0")
    return [float(s) for s in sigmas]


def require_noise(noise: SeededNoise | None, name: str) -> SeededNoise:
    """A stochastic sampler's per-sample noise, or a clear error when it is missing."""
    if noise is None:
        raise ValueError(f"the {name} sampler is stochastic: pass a SeededNoise with one generator per sample")
    return noise
