"""The samplers that follow diffusers' schedulers (ddim, pndm, plms, dpmpp_2m_discrete) on the analytic Gaussian.

For data N(mu, diag s^2) the exact eps model is known (tests/convergence.py), and the probability-flow ODE
maps x_t at alpha_bar_t to x_0 = mu + (x_t / sqrt(alpha_bar_t) - mu) s / sqrt(s^2 + sigma_t^2), so each
sampler's error and its order of convergence are measured against the exact answer.
"""

from __future__ import annotations

import math

import pytest
import torch

from convergence import convergence_order, gaussian_eps_model
from genbench.errors import UsageError
from genbench.samplers.base import SAMPLERS, CountingDenoiser
from genbench.samplers.vp import DiscreteVP, VPSchedule

MU = torch.tensor([1.0, -0.5], dtype=torch.float64)
S = torch.tensor([0.5, 0.5], dtype=torch.float64)
SCHEDULE = VPSchedule()
OURS = ("ddim", "pndm", "plms", "dpmpp_2m_discrete")


def gaussian_vp(config: dict | None = None, counted: CountingDenoiser | None = None) -> DiscreteVP:
    model_output = counted or gaussian_eps_model(SCHEDULE, MU, S)
    return DiscreteVP(model_output, SCHEDULE, "epsilon", config={"clip_sample": False, **(config or {})})


def x_T(n: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def run(name: str, steps: int, config: dict | None = None, x: torch.Tensor | None = None, **kw):
    """(x_0, first timestep, model calls) of a sampler over its own timesteps."""
    counted = CountingDenoiser(gaussian_eps_model(SCHEDULE, MU, S))
    vp = gaussian_vp(config, counted)
    entry = SAMPLERS.get(name)
    timesteps = entry.timesteps(vp, steps)
    x = x_T() if x is None else x
    return entry.fn(vp, x.clone(), timesteps, kw.pop("noise", None), **kw), int(timesteps[0]), counted.calls


def exact_x0(x: torch.Tensor, t0: int) -> torch.Tensor:
    """The probability-flow ODE's x_0 from x at train timestep t0 (sigma form, Karras et al. 2022 Sec. 3)."""
    ab = float(SCHEDULE.alphas_cumprod[t0])
    sigma = math.sqrt((1 - ab) / ab)
    return MU + (x / math.sqrt(ab) - MU) * S / torch.sqrt(S**2 + sigma**2)


def ode_error(name: str, steps: int, spacing: str = "linspace") -> float:
    x0, t0, _ = run(name, steps, {"timestep_spacing": spacing})
    return float((x0 - exact_x0(x_T(), t0)).abs().mean())


@pytest.mark.parametrize("name", OURS)
def test_registered_as_vp_samplers_with_their_own_timesteps(name):
    entry = SAMPLERS.get(name)
    assert entry.kind == "vp" and entry.timesteps is not None and not entry.stochastic


@pytest.mark.parametrize("name", OURS)
def test_follow_the_probability_flow_ode(name):
    x0, t0, _ = run(name, 250)
    torch.testing.assert_close(x0, exact_x0(x_T(), t0), atol=0.03, rtol=0)


def test_ddim_converges_with_order_one():
    steps = [8, 16, 32, 64]
    p = convergence_order(steps, [ode_error("ddim", n) for n in steps])
    assert 0.85 < p < 1.15, p


def test_dpmpp_2m_discrete_converges_with_order_two():
    # before the first-order last step into sigma = 0 (diffusers' lower_order_final) sets an error floor
    steps = [8, 16, 32]
    p = convergence_order(steps, [ode_error("dpmpp_2m_discrete", n) for n in steps])
    assert 1.7 < p < 3.2, p


@pytest.mark.parametrize("name", ["pndm", "plms"])
def test_pseudo_linear_multistep_converges_with_order_above_three(name):
    # fourth-order Adams-Bashforth on the eps (Liu et al. 2022, Eq. 12); measured 4.7 over 8-32 steps
    steps = [8, 16, 32]
    assert convergence_order(steps, [ode_error(name, n) for n in steps]) > 3.0


@pytest.mark.parametrize("name", ["pndm", "plms", "dpmpp_2m_discrete"])
def test_higher_order_samplers_beat_ddim_at_equal_steps(name):
    assert ode_error(name, 32) < ode_error("ddim", 32) / 3


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_counted_nfe(steps):
    known = {"ddim": steps, "dpmpp_2m_discrete": steps, "plms": steps + 1 if steps > 1 else 1,
             "pndm": 4 * min(steps, 3) + max(steps - 3, 0)}
    for name, nfe in known.items():
        assert run(name, steps)[2] == nfe, name


def test_ddim_eta_one_has_the_target_moments():
    from genbench.seeding import SeededNoise

    noise = SeededNoise.for_run(3, 2000)
    x = noise.randn(2, dtype=torch.float64)
    x0, _, _ = run("ddim", 100, x=x, noise=noise, eta=1.0)
    # 2000 samples: standard errors 0.011 (mean) and 0.008 (std)
    assert float((x0.mean(0) - MU).abs().max()) < 0.05
    assert float((x0.std(0) - S).abs().max()) < 0.04


def test_ddim_eta_outside_unit_interval_is_a_usage_error():
    with pytest.raises(UsageError, match="eta"):
        run("ddim", 4, eta=1.5)


def test_ddim_clips_x0_and_honours_set_alpha_to_one():
    far = x_T() * 30
    clipped, _, _ = run("ddim", 4, {"clip_sample": True}, x=far)
    assert float(clipped.abs().max()) <= 1.0  # last step into alpha_bar = 1 returns the clipped x_0
    ab0 = float(SCHEDULE.alphas_cumprod[0])
    kept, _, _ = run("ddim", 4, {"set_alpha_to_one": False})
    one, _, _ = run("ddim", 4, {"set_alpha_to_one": True})
    assert 0 < float((kept - one).abs().max()) < 3 * math.sqrt(1 - ab0)


def test_ddim_timesteps_read_spacing_and_offset_from_the_config():
    from diffusers import DDIMScheduler

    for spacing in ("leading", "trailing", "linspace"):
        for steps, offset in ((10, 0), (7, 1), (50, 0)):
            sch = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
            sch.set_timesteps(steps)
            vp = gaussian_vp({"timestep_spacing": spacing, "steps_offset": offset})
            assert SAMPLERS.get("ddim").timesteps(vp, steps)[:-1].tolist() == sch.timesteps.tolist()
    # the DDIM paper's quadratic selection, tau_i = int((i sqrt(0.8 T) / (N - 1))^2)
    t = SAMPLERS.get("ddim").timesteps(gaussian_vp({"timestep_spacing": "quadratic"}), 10)
    assert t.tolist() == [int((i * math.sqrt(800) / 9) ** 2) for i in range(9, -1, -1)] + [-1]


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps", [1, 10, 25, 50])
def test_dpmpp_2m_discrete_timesteps_equal_diffusers(spacing, steps):
    from diffusers import DPMSolverMultistepScheduler

    sch = DPMSolverMultistepScheduler(timestep_spacing=spacing)
    sch.set_timesteps(steps)
    ours = SAMPLERS.get("dpmpp_2m_discrete").timesteps(gaussian_vp({"timestep_spacing": spacing}), steps)
    assert ours[:-1].tolist() == sch.timesteps.tolist() and int(ours[-1]) == -1


def test_dpmpp_2m_discrete_refuses_off_grid_sigma_settings():
    with pytest.raises(UsageError, match="use_karras_sigmas"):
        run("dpmpp_2m_discrete", 10, {"use_karras_sigmas": True})
