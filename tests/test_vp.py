"""The discrete VP process (genbench/samplers/vp.py): schedules equal diffusers', t <-> sigma, output
conversions, and the sigma-form denoiser of a discrete model (k-diffusion's DiscreteEpsDDPMDenoiser)."""

from __future__ import annotations

import math

import pytest
import torch

from convergence import gaussian_denoiser, gaussian_eps_model
from genbench.errors import UsageError
from genbench.samplers.vp import (
    VPDenoiser,
    VPSchedule,
    discrete_timesteps,
    eps_x0_to_output,
    output_to_eps_x0,
)

MU, S = torch.tensor([1.0, -0.5], dtype=torch.float64), torch.tensor([0.5, 1.5], dtype=torch.float64)


@pytest.mark.parametrize("name,start,end", [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012),
                                            ("squaredcos_cap_v2", 1e-4, 0.02)])
def test_schedules_equal_diffusers(name, start, end):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=name, beta_start=start, beta_end=end)
    ours = VPSchedule(name, start, end, 1000)
    # diffusers computes in float32: agreement to float32 rounding
    torch.testing.assert_close(ours.betas, ref.betas.double(), rtol=2e-6, atol=1e-8)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod.double(), rtol=3e-5, atol=1e-9)
    assert ours.betas.dtype == ours.alphas_cumprod.dtype == torch.float64


def test_linear_schedule_is_ho_et_al():
    sch = VPSchedule()
    assert math.isclose(float(sch.betas[0]), 1e-4) and math.isclose(float(sch.betas[-1]), 0.02)
    # alpha_bar_t = prod (1 - beta), written out
    assert math.isclose(float(sch.alphas_cumprod[9]), math.prod(1 - float(b) for b in sch.betas[:10]), rel_tol=1e-12)
    assert math.isclose(sch.sigma_max, math.sqrt((1 - float(sch.alphas_cumprod[-1])) / float(sch.alphas_cumprod[-1])))


def test_cosine_schedule_follows_nichol_dhariwal_alpha_bar():
    sch = VPSchedule("squaredcos_cap_v2")
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert math.isclose(float(sch.alphas_cumprod[t]), f((t + 1) / 1000) / f(0), rel_tol=1e-9)
    assert float(sch.betas.max()) <= 0.999


def test_t_and_sigma_interpolate_in_log_sigma_and_invert():
    sch = VPSchedule()
    t = torch.tensor([0.0, 0.5, 17.25, 998.9, 999.0], dtype=torch.float64)
    torch.testing.assert_close(sch.sigma_to_t(sch.t_to_sigma(t)), t, rtol=0, atol=1e-9)
    # at integers sigma is the grid's; half way, the geometric mean of the neighbours
    assert float(sch.t_to_sigma(torch.tensor(3.0))) == float(sch.sigmas[3])
    assert math.isclose(float(sch.t_to_sigma(torch.tensor(3.5))), math.sqrt(float(sch.sigmas[3] * sch.sigmas[4])))
    assert float(sch.t_to_sigma(torch.tensor(-1.0))) == 0.0
    # outside the grid t clamps; quantize picks the nearest timestep
    assert float(sch.sigma_to_t(torch.tensor(1e-5))) == 0 and float(sch.sigma_to_t(torch.tensor(1e4))) == 999
    assert float(sch.sigma_to_t(sch.t_to_sigma(torch.tensor(41.3)), quantize=True)) == 41


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_output_conversions_round_trip(prediction_type):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    ab = torch.rand(5, generator=g, dtype=torch.float64) * 0.98 + 0.01
    x_t = ab.sqrt()[:, None] * x0 + (1 - ab).sqrt()[:, None] * eps
    out = eps_x0_to_output(eps, x0, ab, prediction_type)
    eps_back, x0_back = output_to_eps_x0(out, x_t, ab, prediction_type)
    torch.testing.assert_close(eps_back, eps)
    torch.testing.assert_close(x0_back, x0)


def test_vp_denoiser_of_the_exact_eps_model_is_the_exact_edm_denoiser():
    sch = VPSchedule()
    den = VPDenoiser(gaussian_eps_model(sch, MU, S), sch, "epsilon")
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    sigma = torch.tensor([0.02, 0.1, 1.0, 3.3, 40.0, 150.0], dtype=torch.float64)
    torch.testing.assert_close(den(x, sigma), gaussian_denoiser(MU, S)(x, sigma), rtol=1e-9, atol=1e-9)


def test_timestep_spacings_equal_diffusers():
    diffusers = pytest.importorskip("diffusers")
    for spacing in ("linspace", "leading", "trailing"):
        for steps in (1, 7, 10, 50, 1000):
            offset = 1 if spacing == "leading" and steps < 1000 else 0  # (Stable Diffusion's steps_offset)
            ref = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
            ref.set_timesteps(steps)
            ours = discrete_timesteps(1000, steps, spacing, offset)
            assert ours.tolist() == ref.timesteps.tolist(), (spacing, steps)


def test_ddim_paper_spacings():
    assert discrete_timesteps(1000, 10, "uniform").tolist() == list(range(900, -1, -100))
    quad = discrete_timesteps(1000, 10, "quadratic").tolist()
    assert quad[0] == 800 and quad[-1] == 0 and sorted(quad, reverse=True) == quad
    assert VPSchedule().timesteps(4, "trailing").tolist() == [999, 749, 499, 249, -1]


@pytest.mark.parametrize("bad", [dict(beta_schedule="cosine"), dict(beta_start=-1.0), dict(num_train_timesteps=1)])
def test_bad_schedules_are_usage_errors(bad):
    with pytest.raises(UsageError):
        VPSchedule(**bad)


def test_too_many_steps_is_a_usage_error():
    with pytest.raises(UsageError, match="--steps 1000 or fewer"):
        discrete_timesteps(1000, 1001)
