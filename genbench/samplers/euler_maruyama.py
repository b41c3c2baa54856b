"""``euler_maruyama``: Euler-Maruyama on the reverse-time VP SDE (Song et al. 2021, "Score-Based Generative
Modeling through Stochastic Differential Equations", Eq. 6 and App. G, the reverse-diffusion predictor's SDE form).

The VP SDE dx = -1/2 beta(tau) x dtau + sqrt(beta(tau)) dw has the reverse
dx = [-1/2 beta x - beta grad log p_tau(x)] dtau + sqrt(beta) dw_bar, grad log p = -eps / sqrt(1 - alpha_bar).
A step t -> s of the discrete schedule integrates beta over the interval exactly,
b = int beta dtau = log(alpha_bar_s / alpha_bar_t), and freezes the rest at t::

    x_s = x_t + b (x_t / 2 - eps(x_t, t) / sqrt(1 - alpha_bar_t)) + sqrt(b) z

The step into the clean data (s = -1) returns x_0's prediction (Song et al.'s final denoising
step without noise). Weak order 1; NFE = steps.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from genbench.samplers._common import require_noise
from genbench.samplers.base import register_sampler
from genbench.samplers.vp import VP_KIND, DiscreteVP
from genbench.seeding import SeededNoise


@register_sampler("euler_maruyama", kind=VP_KIND, stochastic=True)
def sample_euler_maruyama(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor,
                          noise: SeededNoise | None = None) -> torch.Tensor:
    """Euler-Maruyama on the reverse VP SDE (Song et al. 2021, Eq. 6), beta integrated over each step; NFE = steps."""
    noise = require_noise(noise, "euler_maruyama")
    for t, s in pairwise(int(v) for v in timesteps):
        eps, x0 = model.eps_x0(x, t)
        if s < 0:
            return x0
        alpha_bar_t, alpha_bar_s = model.alpha_bar_at(t), model.alpha_bar_at(s)
        # b = int_s^t beta(tau) dtau = log(alpha_bar_s / alpha_bar_t)
        b = math.log(alpha_bar_s / alpha_bar_t)
        z = noise.randn(*x.shape[1:]).to(device=x.device, dtype=x.dtype)
        x = x + b * (0.5 * x - eps / math.sqrt(1.0 - alpha_bar_t)) + math.sqrt(b) * z
    return x
