"""``ode``: the probability-flow ODE solved adaptively (dopri5), and its likelihood.

Both integrate in u = log sigma, where the EDM probability-flow ODE (Karras et al. 2022, Eq. 3)
reads dx/du = sigma dx/dsigma = x - D(x; e^u): the slope stays of order one from sigma_max = 80
down to sigma_min = 0.002, which a solver in sigma itself would not see.
"""

from __future__ import annotations

import math

import torch

from genbench.samplers._common import as_floats, denoise, sigma_rows
from genbench.samplers.base import Denoiser, register_sampler
from genbench.seeding import SeededNoise

SAMPLE_RTOL = 1e-4
SAMPLE_ATOL = 1e-4
LIKELIHOOD_RTOL = 1e-5
LIKELIHOOD_ATOL = 1e-5


@register_sampler("ode", stochastic=False, adaptive=True)
def sample_ode(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: SeededNoise | None = None,
               rtol: float = SAMPLE_RTOL, atol: float = SAMPLE_ATOL) -> torch.Tensor:
    """Adaptive Dormand-Prince 5(4) (torchdiffeq ``dopri5``) on the probability-flow ODE (Song et al. 2021, Sec. 4.3).

    Only the ends of ``sigmas`` matter: the ODE is solved from sigmas[0] down to the last positive
    sigma with rtol = atol = 1e-4, then, when the schedule ends in 0, one Euler step to 0
    (x = D(x; sigma_last)); a schedule with one positive sigma is thus a single Euler step. The
    solver chooses the steps, so the NFE (counted by the wrapper: about 6 per accepted step, 2 to
    pick the first step and 1 final) varies from batch to batch: a run records the mean per sample
    (``nfe``) and the largest batch's count (``nfe_max`` in the record's info). The step sizes are
    shared by the whole batch, so a sample can differ, within the tolerance, with the batch it is
    drawn in. ``noise`` is unused.
    """
    from torchdiffeq import odeint

    s = as_floats(sigmas)
    positive = [v for v in s if v > 0]
    sigma_start, sigma_end = positive[0], positive[-1]
    if sigma_end < sigma_start:
        # u = log sigma runs from log sigma_start down to log sigma_end
        u = torch.tensor([math.log(sigma_start), math.log(sigma_end)], dtype=x.dtype, device=x.device)

        def slope(u_t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
            # dx/du = x - D(x; e^u)
            return x_t - denoiser(x_t, sigma_rows(math.exp(float(u_t)), x_t))

        x = odeint(slope, x, u, rtol=rtol, atol=atol, method="dopri5")[-1]
    if s[-1] == 0:
        x = denoise(denoiser, x, sigma_end)
    return x


def pf_ode_log_likelihood(denoiser: Denoiser, x: torch.Tensor, sigma_min: float, sigma_max: float,
                          exact_divergence: bool = True, noise: SeededNoise | None = None,
                          rtol: float = LIKELIHOOD_RTOL, atol: float = LIKELIHOOD_ATOL) -> torch.Tensor:
    """log p(x) in nats per example by the instantaneous change of variables (Chen et al. 2018; Song et al. 2021, App. D.2).

    Integrates x and int div f du along the probability-flow ODE from sigma_min to sigma_max
    (dopri5, rtol = atol = 1e-5 by default), then log p_0(x) = log N(x_T; 0, sigma_max^2 I)
    + int_{log sigma_min}^{log sigma_max} div_x (x - D(x; e^u)) du. ``x`` is treated as a sample
    at noise level sigma_min (the usual small-time cut-off). The divergence is exact (one
    backward pass per dimension) when ``exact_divergence``, else Hutchinson's estimator
    (Hutchinson 1989; Grathwohl et al. 2018, FFJORD) with one Rademacher probe per example,
    drawn once from that example's own generator in ``noise`` (per-sample seeds, as for sampling:
    an example's probe does not depend on its batch; required when not ``exact_divergence``) and
    kept fixed along the path. Returns [N] in x's dtype.
    """
    from torchdiffeq import odeint

    dims = x[0].numel()
    probe = None if exact_divergence else rademacher(noise, x.shape[1:]).to(device=x.device, dtype=x.dtype)

    def dynamics(u_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x_t = state[0]
        with torch.enable_grad():
            x_t = x_t.detach().requires_grad_(True)
            f = x_t - denoiser(x_t, sigma_rows(math.exp(float(u_t)), x_t))
            div = exact_div(f, x_t) if probe is None else hutchinson_div(f, x_t, probe)
        return f.detach(), div.detach()

    u = torch.tensor([math.log(sigma_min), math.log(sigma_max)], dtype=x.dtype, device=x.device)
    start = (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
    x_t, int_div = (s[-1] for s in odeint(dynamics, start, u, rtol=rtol, atol=atol, method="dopri5"))
    # log N(x_T; 0, sigma_max^2 I), summed over the D dimensions
    log_prior = -0.5 * dims * math.log(2 * math.pi * sigma_max**2) - x_t.reshape(len(x_t), -1).pow(2).sum(1) / (2 * sigma_max**2)
    return log_prior + int_div


def exact_div(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i d f_i / d x_i per example by one backward pass per dimension: [N, ...] -> [N]."""
    f_flat = f.reshape(f.shape[0], -1)
    div = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    for i in range(f_flat.shape[1]):
        (g,) = torch.autograd.grad(f_flat[:, i].sum(), x, retain_graph=True)
        div = div + g.reshape(g.shape[0], -1)[:, i]
    return div


def hutchinson_div(f: torch.Tensor, x: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """Unbiased divergence estimate eps^T (df/dx) eps per example: [N, ...] -> [N]."""
    (vjp,) = torch.autograd.grad(f, x, grad_outputs=probe)
    return (vjp * probe).reshape(x.shape[0], -1).sum(1)


def rademacher(noise: SeededNoise | None, shape: torch.Size) -> torch.Tensor:
    """One Rademacher probe (+-1 with probability 1/2) per example, [N, *shape], each from its own generator."""
    if noise is None:
        raise ValueError("Hutchinson's estimator needs per-example noise (a SeededNoise); pass noise=")
    return noise.randint(2, *shape).float() * 2 - 1
