"""``dpmpp_2m_discrete``: DPM-Solver++(2M) on the train timesteps of a discrete VP model, as diffusers'
DPMSolverMultistepScheduler runs it (its default ``solver_order=2``, ``algorithm_type="dpmsolver++"``)."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.registry import check_choice
from genbench.samplers._discrete import process_x0, require_settled, settings
from genbench.samplers.base import register_sampler
from genbench.samplers.vp import VP_KIND, DiscreteVP
from genbench.seeding import SeededNoise

# DPMSolverMultistepScheduler's defaults for the keys this sampler reads (from_config semantics)
DPM_DEFAULTS = {
    "timestep_spacing": "linspace", "steps_offset": 0, "solver_type": "midpoint", "lower_order_final": True,
    "euler_at_final": False, "final_sigmas_type": "zero", "lambda_min_clipped": -math.inf, "thresholding": False,
    "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0,
    "use_karras_sigmas": False, "use_lu_lambdas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
    "use_flow_sigmas": False,
}
# settings that move the timesteps off the train grid: the sigma-form samplers cover those
OFF_GRID = {"use_karras_sigmas": False, "use_lu_lambdas": False, "use_exponential_sigmas": False,
            "use_beta_sigmas": False, "use_flow_sigmas": False}
LOWER_ORDER_FINAL_BELOW = 15  # diffusers: lower_order_final applies to fewer than 15 steps


def dpm_timesteps(model: DiscreteVP, steps: int) -> torch.Tensor:
    """DPMSolverMultistepScheduler.set_timesteps: ``steps`` of ``linspace``/``leading`` over steps + 1 points with
    the last (t = 0) dropped, or ``trailing``; int64 [steps + 1] ending in -1 (sigma = 0 or sigma_0)."""
    cfg = settings(model, DPM_DEFAULTS)
    require_settled(cfg, OFF_GRID, "dpmpp_2m_discrete")
    check_choice(cfg["timestep_spacing"], ["linspace", "leading", "trailing"], "timestep spacing of dpmpp_2m_discrete")
    if int(steps) != steps or steps < 1:
        raise UsageError(f"the number of sampling steps must be a positive integer, got {steps!r}; pass --steps 1 or more")
    T = model.schedule.T
    # lambda_min_clipped: the last usable timestep is where lambda = -log sigma falls below the clip
    lambdas = -model.schedule.log_sigmas.numpy()
    last = T - int(np.searchsorted(lambdas[::-1], cfg["lambda_min_clipped"]))
    if cfg["timestep_spacing"] == "linspace":
        t = np.linspace(0, last - 1, steps + 1).round()[::-1][:-1]
    elif cfg["timestep_spacing"] == "leading":
        t = (np.arange(0, steps + 1) * (last // (steps + 1))).round()[::-1][:-1] + int(cfg["steps_offset"])
    else:
        t = np.arange(last, 0, -T / steps).round() - 1
    t = np.ascontiguousarray(t).astype(np.int64)
    if len(t) != steps or (np.diff(t) >= 0).any() or t.min() < 0:
        raise UsageError(f"{steps} steps give no {steps} distinct train timesteps with "
                         f"{cfg['timestep_spacing']!r} spacing; use fewer steps")
    return torch.cat([torch.from_numpy(t), torch.tensor([-1])])


def _vp_sigma(model: DiscreteVP, t: int, final_sigmas_type: str) -> float:
    """sigma_t = sqrt((1 - a_t) / a_t) on the sigma scale; at t = -1 zero, or sigma_0 (``final_sigmas_type``)."""
    if t >= 0:
        return float(model.schedule.sigmas[t])
    return 0.0 if final_sigmas_type == "zero" else float(model.schedule.sigmas[0])


@register_sampler("dpmpp_2m_discrete", kind=VP_KIND, stochastic=False, timesteps=dpm_timesteps)
def sample_dpmpp_2m_discrete(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor,
                             noise: SeededNoise | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) on the train timesteps (Lu et al. 2022, "DPM-Solver++", Algorithm 2), as diffusers' DPMSolverMultistepScheduler.

    With alpha_t = 1 / sqrt(1 + s_t^2), sigma_t = s_t alpha_t, lambda_t = -log s_t, h = lambda_t' - lambda_t:
    x_t' = (sigma_t' / sigma_t) x_t - alpha_t' (e^-h - 1) (D0 + D1 / 2) with D0 = x_0(x_t), D1 = (D0 - D0_prev) / r,
    r = h_prev / h (``solver_type: heun``: - alpha_t' (e^-h - 1) D0 + alpha_t' ((e^-h - 1) / h + 1) D1). The first
    step is first order, and so is the last when it goes to sigma = 0 (``final_sigmas_type: zero``), under 15 steps
    (``lower_order_final``) or with ``euler_at_final``. ``thresholding`` applies to x_0. The config's
    ``solver_order`` and ``algorithm_type`` are ignored: this sampler is 2M. One call per step; ``noise`` unused.
    """
    cfg = settings(model, DPM_DEFAULTS)
    check_choice(cfg["solver_type"], ["midpoint", "heun"], "DPM-Solver++ solver_type")
    ts = [int(s) for s in timesteps]
    n = len(ts) - 1
    x0_prev, h_prev = None, None
    for i, (t, t_next) in enumerate(pairwise(ts)):
        x0 = process_x0(model.eps_x0(x, t)[1], cfg)
        s, s_next = _vp_sigma(model, t, cfg["final_sigmas_type"]), _vp_sigma(model, t_next, cfg["final_sigmas_type"])
        if s_next == 0:
            # first order into sigma = 0 returns the data estimate
            return x0
        first_order = x0_prev is None or (i == n - 1 and (cfg["euler_at_final"] or (cfg["lower_order_final"] and n < LOWER_ORDER_FINAL_BELOW)))
        h = math.log(s) - math.log(s_next)
        alpha_next = 1 / math.sqrt(1 + s_next**2)
        # VP ratio sigma_t' / sigma_t = (s_next alpha_next) / (s alpha)
        ratio = (s_next * alpha_next) / (s / math.sqrt(1 + s**2))
        x = ratio * x - alpha_next * math.expm1(-h) * x0
        if not first_order:
            d1 = (x0 - x0_prev) * (h / h_prev)
            if cfg["solver_type"] == "midpoint":
                x = x - 0.5 * alpha_next * math.expm1(-h) * d1
            else:
                x = x + alpha_next * (math.expm1(-h) / h + 1) * d1
        x0_prev, h_prev = x0, h
    return x
