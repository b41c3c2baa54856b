"""``ddim``: Denoising Diffusion Implicit Models (Song et al. 2021), eta in [0, 1], on a discrete VP model."""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from genbench.errors import UsageError
from genbench.samplers._discrete import alpha_bar_of, final_alpha_bar, process_x0, settings
from genbench.samplers.base import register_sampler
from genbench.samplers.vp import VP_KIND, DiscreteVP, discrete_timesteps
from genbench.seeding import SeededNoise

# diffusers' DDIMScheduler defaults: a key the model's config lacks takes these (from_config semantics)
DDIM_DEFAULTS = {
    "timestep_spacing": "leading", "steps_offset": 0, "clip_sample": True, "clip_sample_range": 1.0,
    "set_alpha_to_one": True, "thresholding": False, "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0,
}


def ddim_timesteps(model: DiscreteVP, steps: int) -> torch.Tensor:
    """The config's ``timestep_spacing`` (uniform, quadratic, leading, trailing, linspace) and ``steps_offset``,
    as int64 [steps + 1] ending in -1."""
    cfg = settings(model, DDIM_DEFAULTS)
    t = discrete_timesteps(model.schedule.T, steps, cfg["timestep_spacing"], int(cfg["steps_offset"]))
    return torch.cat([t, torch.tensor([-1])])


def ddim_sigma(alpha_bar: float, alpha_bar_next: float, eta: float) -> float:
    """sigma_t(eta) = eta sqrt((1 - a_next) / (1 - a) (1 - a / a_next)) (Song et al. 2021, Eq. 16)."""
    return eta * math.sqrt((1 - alpha_bar_next) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_next))


@register_sampler("ddim", kind=VP_KIND, stochastic=False, timesteps=ddim_timesteps)
def sample_ddim(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor, noise: SeededNoise | None = None,
                eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", Eq. 12), eta = 0 deterministic, 1 = DDPM's variance.

    Each step t -> t_next: x_0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t), clipped as the config says
    (``clip_sample``, ``thresholding``); x_next = sqrt(a_next) x_0 + sqrt(1 - a_next - sigma_t^2) eps + sigma_t z.
    The target of the last step is alpha_bar = 1, or alpha_bar_0 with ``set_alpha_to_one: false``; as in
    diffusers' DDIMScheduler the eps used for the direction is the model's, not recomputed from the clipped
    x_0. Registered with its default eta = 0 (deterministic); eta > 0 draws per-sample noise from ``noise``.
    NFE = steps.
    """
    if not 0.0 <= eta <= 1.0:
        raise UsageError(f"DDIM's eta must lie in [0, 1], got {eta}; 0 is deterministic DDIM, 1 is DDPM's variance")
    cfg = settings(model, DDIM_DEFAULTS)
    final = final_alpha_bar(model, bool(cfg["set_alpha_to_one"]))
    for t, t_next in pairwise(int(s) for s in timesteps):
        eps, x0 = model.eps_x0(x, t)
        x0 = process_x0(x0, cfg)
        a, a_next = model.alpha_bar_at(t), alpha_bar_of(model, t_next, final)
        sigma = ddim_sigma(a, a_next, eta)
        # x_{t_next} = sqrt(a_next) x_0 + sqrt(1 - a_next - sigma^2) eps (+ sigma z)
        x = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - sigma**2, 0.0)) * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("the ddim sampler with eta > 0 is stochastic: pass a SeededNoise with one generator per sample")
            x = x + sigma * noise.randn(*x.shape[1:]).to(device=x.device, dtype=x.dtype)
    return x
