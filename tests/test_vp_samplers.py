"""Contract tests for every ``vp`` sampler (discrete VP, native timesteps) on an analytic Gaussian, and the
measured order of convergence of every sampler this module knows the order of (sigma-form and vp).

Order: the log-log slope of error against steps over 8-64 steps (``convergence.convergence_order``).
Deterministic samplers: error against the exact probability-flow ODE map; stochastic ones: weak
error of the exact output mean and std (``affine_sampler_moments``) against the target's.
"""

from __future__ import annotations

import math

import pytest
import torch

from convergence import (
    affine_sampler_moments,
    convergence_order,
    gaussian_denoiser,
    gaussian_eps_model,
    ode_map,
)
from genbench.samplers.base import SAMPLERS, CountingDenoiser, samplers_of_kind
from genbench.samplers.schedules import karras_sigmas
from genbench.samplers.vp import VP_KIND, DiscreteVP, VPSchedule, sample_vp_model, vp_model_samplers
from genbench.seeding import SeededNoise

VP = samplers_of_kind(VP_KIND)
VP_STOCHASTIC = [n for n in VP if SAMPLERS.get(n).stochastic]
MU, S = torch.tensor([1.0, -0.5], dtype=torch.float64), torch.tensor([0.5, 1.5], dtype=torch.float64)
SCHEDULE = VPSchedule()
STEPS = [8, 16, 32, 64]
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
NO_CLIPPING = {"clip_sample": False}  # the Gaussian's samples leave [-1, 1] (diffusers' DDIM clips by default)


def exact_vp(schedule: VPSchedule = SCHEDULE) -> DiscreteVP:
    return DiscreteVP(gaussian_eps_model(schedule, MU, S), schedule, "epsilon", config=NO_CLIPPING)


def marginal(t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of q(x_t) for the Gaussian data."""
    ab = float(SCHEDULE.alphas_cumprod[t])
    return math.sqrt(ab) * MU, torch.sqrt(ab * S**2 + 1 - ab)


def run_vp(name: str, steps: int, n: int, seed: int = 0, noise: SeededNoise | None = None, spacing: str = "linspace"):
    """x_T ~ q(x_{T-1}) exactly, then the sampler; returns (x_T, x_0, model calls)."""
    noise = noise or SeededNoise.for_run(seed, n)
    timesteps = SCHEDULE.timesteps(steps, spacing)
    m, sd = marginal(int(timesteps[0]))
    x_T = m + sd * noise.randn(2, dtype=torch.float64)
    counted = CountingDenoiser(gaussian_eps_model(SCHEDULE, MU, S))
    x0 = SAMPLERS.get(name).fn(DiscreteVP(counted, SCHEDULE, "epsilon", config=NO_CLIPPING), x_T, timesteps, noise)
    return x_T, x0, counted.calls


# -- every vp sampler -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VP)
def test_vp_samples_match_gaussian_target_as_steps_grow(name):
    _, few, _ = run_vp(name, 4, 2000)
    _, many, _ = run_vp(name, 100, 2000)
    err = lambda x: max(float((x.mean(0) - MU).abs().max()), float((x.std(0) - S).abs().max()))  # noqa: E731
    # 2000 samples: standard errors 0.034 (mean) and 0.024 (std) for s = 1.5
    assert err(many) < 0.1, f"{name}: mean {many.mean(0)}, std {many.std(0)}"
    assert err(many) <= err(few) + 0.03


@pytest.mark.parametrize("name", VP)
def test_vp_samplers_are_independent_of_batching(name):
    _, whole, _ = run_vp(name, 10, 8, seed=3)
    parts = [run_vp(name, 10, len(b), noise=b)[1] for b in SeededNoise.for_run(3, 8).batches(3)]
    assert torch.equal(whole, torch.cat(parts))


@pytest.mark.parametrize("name", VP_STOCHASTIC)
def test_stochastic_vp_samplers_need_their_noise(name):
    with pytest.raises(ValueError, match="stochastic"):
        SAMPLERS.get(name).fn(exact_vp(), torch.zeros(3, 2), SCHEDULE.timesteps(4), None)


@pytest.mark.parametrize("name", ["ddpm", "ddpm_beta", "euler_maruyama"])
@pytest.mark.parametrize("steps", [1, 7, 1000])
def test_one_model_call_per_step(name, steps):
    assert run_vp(name, steps, 2)[2] == steps


def test_full_ddpm_chain_visits_every_timestep_once():
    seen = []

    def model_output(x_t, t):
        seen.append(int(t[0]))
        return gaussian_eps_model(SCHEDULE, MU, S)(x_t, t)

    SAMPLERS.get("ddpm").fn(DiscreteVP(model_output, SCHEDULE), torch.zeros(2, 2), SCHEDULE.timesteps(1000, "linspace"),
                            SeededNoise.for_run(0, 2))
    assert seen == list(range(999, -1, -1))


def test_ddpm_posterior_variance_is_beta_tilde_and_ddpm_beta_uses_beta():
    # one step t -> s with a model whose x_0 prediction is 0: x_s = coef_xt x_t + sqrt(var) z
    t, s = 500, 400
    ab_t, ab_s = float(SCHEDULE.alphas_cumprod[t]), float(SCHEDULE.alphas_cumprod[s])
    beta = 1 - ab_t / ab_s
    beta_tilde = (1 - ab_s) / (1 - ab_t) * beta
    zero_x0 = DiscreteVP(lambda x_t, tt: x_t / math.sqrt(1 - ab_t), SCHEDULE)  # eps = x_t / sqrt(1 - ab) <=> x_0 = 0
    for name, var in (("ddpm", beta_tilde), ("ddpm_beta", beta)):
        _, std = affine_sampler_moments(lambda x, nz: SAMPLERS.get(name).fn(zero_x0, x, torch.tensor([t, s, s - 1]), nz)
                                        if False else _one_step(name, zero_x0, x, t, s, nz),
                                        torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 3)
        assert math.isclose(float(std[0]), math.sqrt(var), rel_tol=1e-9), name


def _one_step(name, model, x, t, s, noise):
    """Run only the step t -> s: the chain [t, s, -1] stops before its last (noise-free) step when x_0 = 0 is known."""
    from genbench.samplers.ddpm_ancestral import ancestral_chain

    return ancestral_chain(model, x, torch.tensor([t, s]), noise, posterior_variance=(name == "ddpm"))


def test_vp_models_take_every_diffusion_sampler_through_the_sigma_form():
    class GaussianVP:
        vp_schedule, prediction_type = SCHEDULE, "epsilon"
        model_output = staticmethod(gaussian_eps_model(SCHEDULE, MU, S))

    samplers = vp_model_samplers()
    assert set(samplers_of_kind("diffusion")) <= set(samplers) and set(VP) <= set(samplers)
    for name in ("heun", "ddpm"):
        x, nfe = sample_vp_model(GaussianVP(), SeededNoise.for_run(0, 1000), name, 64, (2,))
        assert float((x.std(0) - S).abs().max()) < 0.12 and float((x.mean(0) - MU).abs().max()) < 0.12, name
        assert nfe == (127 if name == "heun" else 64)


# -- orders of convergence -------------------------------------------------------------------------

# sampler -> (lowest, highest) accepted order; the targets: ~1 first order, ~2 second, > 2.5 DPM-Solver-3
SIGMA_ODE_ORDERS = {"euler": (0.85, 1.2), "dpm_solver_1": (0.85, 1.2), "heun": (1.8, 2.5), "dpmpp_2m": (1.8, 2.5),
                    "dpm_solver_2": (1.8, 2.5), "dpm_solver_3": (2.5, 6.0)}
SIGMA_WEAK_ORDERS = {"euler_ancestral": (0.7, 1.3)}
VP_WEAK_ORDERS = {"ddpm": (0.7, 1.3), "ddpm_beta": (0.7, 1.3), "euler_maruyama": (0.7, 1.3)}


def sigma_ode_error(name: str, steps: int) -> float:
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
    x_T = SIGMA_MAX * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = SAMPLERS.get(name).fn(gaussian_denoiser(MU, S), x_T, sigmas, None)
    # every sampler's last step is D(x; sigma_min): compare with D at the exact ODE solution there
    exact = gaussian_denoiser(MU, S)(ode_map(x_T, SIGMA_MAX, SIGMA_MIN, MU, S), torch.tensor(SIGMA_MIN))
    return float((x0 - exact).abs().max())


def sigma_weak_error(name: str, steps: int) -> float:
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
    run = lambda x, nz: SAMPLERS.get(name).fn(gaussian_denoiser(MU, S), x, sigmas, nz)  # noqa: E731
    mean, std = affine_sampler_moments(run, MU, torch.sqrt(S**2 + SIGMA_MAX**2), 2 * steps + 2)
    target_std = S**2 / torch.sqrt(S**2 + SIGMA_MIN**2)  # of D(x; sigma_min), x ~ the exact marginal
    return max(float((mean - MU).abs().max()), float((std - target_std).abs().max()))


def vp_weak_error(name: str, steps: int) -> float:
    timesteps = SCHEDULE.timesteps(steps, "linspace")  # starts at T-1, last model call at t = 0
    run = lambda x, nz: SAMPLERS.get(name).fn(exact_vp(), x, timesteps, nz)  # noqa: E731
    mean, std = affine_sampler_moments(run, *marginal(int(timesteps[0])), steps + 2)
    ab = float(SCHEDULE.alphas_cumprod[0])
    target_std = torch.sqrt(S**4 * ab / (ab * S**2 + 1 - ab))  # of E[x_0 | x_0 at t = 0]
    return max(float((mean - MU).abs().max()), float((std - target_std).abs().max()))


@pytest.mark.parametrize("name", sorted(SIGMA_ODE_ORDERS))
def test_order_of_deterministic_sigma_samplers(name):
    low, high = SIGMA_ODE_ORDERS[name]
    order = convergence_order(STEPS, [sigma_ode_error(name, n) for n in STEPS])
    assert low <= order <= high, f"{name}: measured order {order:.2f}"


@pytest.mark.parametrize("name", sorted(SIGMA_WEAK_ORDERS))
def test_weak_order_of_stochastic_sigma_samplers(name):
    low, high = SIGMA_WEAK_ORDERS[name]
    order = convergence_order(STEPS, [sigma_weak_error(name, n) for n in STEPS])
    assert low <= order <= high, f"{name}: measured weak order {order:.2f}"


@pytest.mark.parametrize("name", sorted(VP_WEAK_ORDERS))
def test_weak_order_of_vp_samplers(name):
    low, high = VP_WEAK_ORDERS[name]
    order = convergence_order(STEPS, [vp_weak_error(name, n) for n in STEPS])
    assert low <= order <= high, f"{name}: measured weak order {order:.2f}"


def test_dpm_solver_nfe_counts():
    for name, order in (("dpm_solver_1", 1), ("dpm_solver_2", 2), ("dpm_solver_3", 3)):
        for steps in (1, 5):
            counted = CountingDenoiser(gaussian_denoiser(MU, S))
            SAMPLERS.get(name).fn(counted, torch.ones(2, 2), karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX), None)
            assert counted.calls == order * (steps - 1) + 1, (name, steps)


# -- adaptive SDE solver ----------------------------------------------------------------------------


def test_adaptive_sde_tightens_with_steps_and_reports_its_real_nfe():
    mu, s = torch.tensor([0.5], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    nfes = []
    for steps in (2, 16):
        noise = SeededNoise.for_run(0, 1000)
        counted = CountingDenoiser(gaussian_denoiser(mu, s))
        x = SIGMA_MAX * noise.randn(1, dtype=torch.float64)
        x0 = SAMPLERS.get("adaptive_sde").fn(counted, x, karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX), noise)
        nfes.append(counted.calls)
        # 1000 samples: standard errors 0.0095 (mean), 0.0067 (std); the solver's bias is far below
        assert abs(float(x0.mean()) - 0.5) < 0.035 and abs(float(x0.std()) - 0.3) < 0.025, steps
    # NFE = 2 per attempted step + 1 final denoising: odd, and more for the tighter tolerance
    assert all(n % 2 == 1 for n in nfes) and nfes[1] > 1.5 * nfes[0], nfes
