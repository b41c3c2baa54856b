"""``pndm`` and ``plms``: pseudo numerical methods for diffusion models (Liu et al. 2022, ICLR), discrete VP.

Both move along the DDIM "transfer" phi(x_t, eps, t -> t'), Liu et al. 2022 Eq. 11:

    x_t' = sqrt(a_t' / a_t) x_t - (a_t' - a_t) eps / (a_t sqrt(1 - a_t') + sqrt(a_t (1 - a_t) a_t'))

and differ in how the eps of a step is formed: ``pndm`` warms up with three pseudo Runge-Kutta steps
(Eq. 13, four calls each) and continues with the pseudo linear multistep (4th-order Adams-Bashforth)
combination of the last four eps (Eq. 12); ``plms`` starts with one pseudo improved-Euler step (two calls)
and raises the Adams-Bashforth order by one each step up to four. These are diffusers' PNDMScheduler
with ``skip_prk_steps`` false and true, equal to it for epsilon-prediction models. For v-prediction
genbench converts each output to eps at the point where it was evaluated; PNDMScheduler instead combines
raw v outputs and converts them with the current sample, so the two differ there.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from genbench.samplers._discrete import alpha_bar_of, final_alpha_bar, settings
from genbench.samplers.base import register_sampler
from genbench.samplers.vp import VP_KIND, DiscreteVP, discrete_timesteps
from genbench.seeding import SeededNoise

# diffusers' PNDMScheduler defaults (a key the model's config lacks takes these, as from_config does)
PNDM_DEFAULTS = {"timestep_spacing": "leading", "steps_offset": 0, "set_alpha_to_one": False, "skip_prk_steps": False}
RK_WARMUP_STEPS = 3  # pseudo Runge-Kutta steps before the 4th-order multistep has its history
# Adams-Bashforth weights of the last k eps, newest first (Liu et al. 2022, Eq. 12 for k = 4)
ADAMS_BASHFORTH = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def pndm_timesteps(model: DiscreteVP, steps: int) -> torch.Tensor:
    """The config's ``timestep_spacing`` and ``steps_offset`` (default leading), int64 [steps + 1] ending in -1."""
    cfg = settings(model, PNDM_DEFAULTS)
    t = discrete_timesteps(model.schedule.T, steps, cfg["timestep_spacing"], int(cfg["steps_offset"]))
    return torch.cat([t, torch.tensor([-1])])


def transfer(x: torch.Tensor, eps: torch.Tensor, a: float, a_next: float) -> torch.Tensor:
    """phi(x_t, eps, t -> t') of Liu et al. 2022, Eq. 11, with a = alpha_bar_t, a_next = alpha_bar_t'."""
    denom = a * math.sqrt(1 - a_next) + math.sqrt(a * (1 - a) * a_next)
    return math.sqrt(a_next / a) * x - ((a_next - a) / denom) * eps


def adams_bashforth(history: list[torch.Tensor]) -> torch.Tensor:
    """The multistep eps from the last up to four eps (oldest first), Liu et al. 2022 Eq. 12 and lower orders."""
    recent = history[-4:][::-1]
    return sum(w * e for w, e in zip(ADAMS_BASHFORTH[len(recent)], recent))


def pseudo_rk_step(model: DiscreteVP, x: torch.Tensor, t: int, t_next: int, final: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One pseudo 4th-order Runge-Kutta step t -> t_next (Liu et al. 2022, Eq. 13); returns (x_next, eps at t).

    The midpoint is the integer timestep t_next + (t - t_next) // 2 (diffusers: t_next + T // steps // 2).
    """
    t_mid = t_next + (t - t_next) // 2
    a, a_mid, a_next = model.alpha_bar_at(t), alpha_bar_of(model, t_mid, final), alpha_bar_of(model, t_next, final)
    e1 = model.eps_x0(x, t)[0]
    e2 = model.eps_x0(transfer(x, e1, a, a_mid), t_mid)[0]
    e3 = model.eps_x0(transfer(x, e2, a, a_mid), t_mid)[0]
    # (a last step into t = -1 evaluates its end at t = 0, the nearest timestep the network knows)
    e4 = model.eps_x0(transfer(x, e3, a, a_next), max(t_next, 0))[0]
    # e' = (e1 + 2 e2 + 2 e3 + e4) / 6
    return transfer(x, (e1 + 2 * e2 + 2 * e3 + e4) / 6, a, a_next), e1


@register_sampler("pndm", kind=VP_KIND, stochastic=False, timesteps=pndm_timesteps)
def sample_pndm(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
    """PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds", Algorithm 2).

    Three pseudo Runge-Kutta warm-up steps (4 calls each), then the pseudo linear multistep (one call per
    step): NFE = steps + 9 for steps >= 3. As diffusers' PNDMScheduler: the target of the last step is
    alpha_bar_0 unless the config sets ``set_alpha_to_one``, and a config with ``skip_prk_steps: true``
    runs the ``plms`` start instead of the warm-up. ``noise`` is unused.
    """
    cfg = settings(model, PNDM_DEFAULTS)
    if cfg["skip_prk_steps"]:
        return _plms(model, x, timesteps, cfg)
    final = final_alpha_bar(model, bool(cfg["set_alpha_to_one"]))
    history: list[torch.Tensor] = []
    for i, (t, t_next) in enumerate(pairwise(int(s) for s in timesteps)):
        if i < RK_WARMUP_STEPS:
            x, eps = pseudo_rk_step(model, x, t, t_next, final)
            history.append(eps)
            continue
        history.append(model.eps_x0(x, t)[0])
        x = transfer(x, adams_bashforth(history), model.alpha_bar_at(t), alpha_bar_of(model, t_next, final))
        del history[:-4]
    return x


@register_sampler("plms", kind=VP_KIND, stochastic=False, timesteps=pndm_timesteps)
def sample_plms(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
    """PLMS: PNDM's pseudo linear multistep without the Runge-Kutta warm-up (diffusers' ``skip_prk_steps``).

    The first step is a pseudo improved Euler step (eps averaged over both ends, two calls), later steps
    use Adams-Bashforth of order 2, 3, then 4 on the eps history (Liu et al. 2022, Eq. 12): NFE = steps + 1
    (1 for a single step). The last step's target follows ``set_alpha_to_one`` (default: alpha_bar_0).
    ``noise`` is unused.
    """
    return _plms(model, x, timesteps, settings(model, PNDM_DEFAULTS))


def _plms(model: DiscreteVP, x: torch.Tensor, timesteps: torch.Tensor, cfg: dict) -> torch.Tensor:
    final = final_alpha_bar(model, bool(cfg["set_alpha_to_one"]))
    history: list[torch.Tensor] = []
    for i, (t, t_next) in enumerate(pairwise(int(s) for s in timesteps)):
        a, a_next = model.alpha_bar_at(t), alpha_bar_of(model, t_next, final)
        history.append(model.eps_x0(x, t)[0])
        if i == 0 and t_next >= 0:
            # pseudo improved Euler: average the eps at t and at the Euler prediction of t_next
            e_next = model.eps_x0(transfer(x, history[0], a, a_next), t_next)[0]
            x = transfer(x, (history[0] + e_next) / 2, a, a_next)
        else:
            x = transfer(x, adams_bashforth(history), a, a_next)
        del history[:-4]
    return x
