"""Contract tests run against every registered diffusion sampler, on an analytic denoiser.

For Gaussian data x_0 ~ N(mu, diag s^2) the EDM denoiser is closed form,
D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the probability-flow ODE maps x_T at
sigma_max to x_0 = mu + (x_T - mu) s / sqrt(s^2 + sigma_max^2), so samplers can be checked
against known answers. A new sampler is tested by being registered.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genbench.errors import UsageError
from genbench.samplers.base import SAMPLERS, CountingDenoiser, samplers_of_kind
from genbench.samplers.ode import pf_ode_log_likelihood
from genbench.samplers.schedules import build_sigmas, karras_sigmas, linear_sigmas, loglinear_sigmas
from genbench.seeding import SeededNoise

DIFFUSION = samplers_of_kind("diffusion")
STOCHASTIC = [n for n in DIFFUSION if SAMPLERS.get(n).stochastic]
DETERMINISTIC = [n for n in DIFFUSION if not SAMPLERS.get(n).stochastic]
ADAPTIVE = {n for n in DIFFUSION if SAMPLERS.get(n).adaptive}  # step sizes chosen for the whole batch
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
MU, S = torch.tensor([1.0, -0.5]), torch.tensor([0.5, 0.5])


def gaussian_denoiser(mu: torch.Tensor, s: torch.Tensor):
    """Exact D(x; sigma) for data N(mu, diag s^2) (elementwise, so rows never interact)."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sig = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        m, v = mu.to(x), (s**2).to(x)
        return m + v / (v + sig**2) * (x - m)

    return denoise


def run(name: str, steps: int, n: int, seed: int = 0, noise: SeededNoise | None = None):
    """x_T = sigma_max * noise, then the sampler; returns (x_T, x_0, denoiser calls)."""
    noise = noise or SeededNoise.for_run(seed, n)
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
    x_T = SIGMA_MAX * noise.randn(2)
    counted = CountingDenoiser(gaussian_denoiser(MU, S))
    x0 = SAMPLERS.get(name).fn(counted, x_T, sigmas, noise)
    return x_T, x0, counted.calls


def exact_ode_endpoint(x_T: torch.Tensor) -> torch.Tensor:
    return MU + (x_T - MU) * S / torch.sqrt(S**2 + SIGMA_MAX**2)


def moment_error(x: torch.Tensor) -> float:
    """Largest deviation of the sample mean and std from the target's, per dimension."""
    return max(float((x.mean(0) - MU).abs().max()), float((x.std(0) - S).abs().max()))


# -- every sampler -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DIFFUSION)
def test_samples_match_gaussian_target_as_steps_grow(name):
    _, few, _ = run(name, 6, 1000)
    _, many, _ = run(name, 128, 1000)
    # 1000 samples: the standard error of the mean is 0.016, of the std 0.011
    assert moment_error(many) < 0.06, f"{name}: mean {many.mean(0)}, std {many.std(0)}"
    assert moment_error(many) <= moment_error(few) + 0.02


@pytest.mark.parametrize("name", [n for n in DIFFUSION if n not in ADAPTIVE])
def test_per_sample_seeds_make_samples_independent_of_batching(name):
    noise = SeededNoise.for_run(7, 8)
    _, whole, _ = run(name, 10, 8, noise=noise)
    parts = [run(name, 10, len(b), noise=b)[1] for b in SeededNoise.for_run(7, 8).batches(3)]
    assert torch.equal(whole, torch.cat(parts))


@pytest.mark.parametrize("name", sorted(ADAPTIVE & set(DETERMINISTIC)))
def test_adaptive_samplers_depend_on_batching_only_within_tolerance(name):
    # (a stochastic adaptive sampler's path depends on which draw meets which of the batch's steps)
    _, whole, _ = run(name, 10, 8, seed=7)
    parts = [run(name, 10, len(b), noise=b)[1] for b in SeededNoise.for_run(7, 8).batches(3)]
    torch.testing.assert_close(whole, torch.cat(parts), atol=2e-3, rtol=0)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_samplers_need_their_noise(name):
    sigmas = karras_sigmas(4, SIGMA_MIN, SIGMA_MAX)
    with pytest.raises(ValueError, match="stochastic"):
        SAMPLERS.get(name).fn(gaussian_denoiser(MU, S), torch.zeros(3, 2), sigmas, None)


@pytest.mark.parametrize("name", [n for n in DETERMINISTIC if n not in ADAPTIVE])
def test_deterministic_samplers_follow_the_probability_flow_ode(name):
    x_T, x0, _ = run(name, 256, 64)
    torch.testing.assert_close(x0, exact_ode_endpoint(x_T), atol=0.02, rtol=0)


def test_ode_sampler_solves_the_probability_flow_ode_to_its_tolerance():
    # two steps: the schedule's ends are sigma_max and sigma_min, all the adaptive solver uses
    x_T, x0, calls = run("ode", 2, 64)
    torch.testing.assert_close(x0, exact_ode_endpoint(x_T), atol=2e-3, rtol=0)
    assert 10 < calls < 500


# -- known NFE and order of accuracy -----------------------------------------------------------

KNOWN_NFE = {"euler": lambda n: n, "euler_ancestral": lambda n: n, "dpmpp_2m": lambda n: n,
             "heun": lambda n: 2 * n - 1, "edm_stochastic": lambda n: 2 * n - 1}


@pytest.mark.parametrize("name", sorted(KNOWN_NFE))
@pytest.mark.parametrize("steps", [1, 4, 18])
def test_counted_nfe_equals_the_known_count(name, steps):
    _, _, calls = run(name, steps, 4)
    assert calls == KNOWN_NFE[name](steps)


def ode_error(name: str, steps: int) -> float:
    x_T, x0, _ = run(name, steps, 256)
    return float((x0 - exact_ode_endpoint(x_T)).abs().mean())


def test_heun_converges_faster_than_euler():
    # halving the step: a first-order error halves, a second-order one quarters
    euler = ode_error("euler", 16) / ode_error("euler", 32)
    heun = ode_error("heun", 16) / ode_error("heun", 32)
    assert 1.6 < euler < 2.6
    assert heun > 3.5
    assert ode_error("heun", 32) < ode_error("euler", 32) / 3


def test_dpmpp_2m_is_second_order():
    assert ode_error("dpmpp_2m", 16) / ode_error("dpmpp_2m", 32) > 3.5


# -- schedules ----------------------------------------------------------------------------------


def test_karras_schedule_matches_edm_formula():
    steps, rho = 18, 7.0
    i = np.arange(steps)
    # EDM Eq. 5, written out independently
    expected = (SIGMA_MAX ** (1 / rho) + i / (steps - 1) * (SIGMA_MIN ** (1 / rho) - SIGMA_MAX ** (1 / rho))) ** rho
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX, rho)
    assert sigmas.shape == (steps + 1,) and sigmas[-1] == 0
    np.testing.assert_allclose(sigmas[:-1].numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("fn", [karras_sigmas, loglinear_sigmas, linear_sigmas])
def test_schedules_run_from_sigma_max_to_sigma_min_then_zero(fn):
    sigmas = fn(10, SIGMA_MIN, SIGMA_MAX)
    assert len(sigmas) == 11 and sigmas[-1] == 0
    assert math.isclose(float(sigmas[0]), SIGMA_MAX) and math.isclose(float(sigmas[-2]), SIGMA_MIN)
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_one_step_schedule_is_sigma_max_then_zero():
    assert karras_sigmas(1, SIGMA_MIN, SIGMA_MAX).tolist() == [SIGMA_MAX, 0.0]


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_step_counts_are_usage_errors(steps):
    with pytest.raises(UsageError, match="steps"):
        karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)


def test_unknown_schedule_names_the_known_ones():
    with pytest.raises(UsageError, match="karras"):
        build_sigmas("karas", 10, SIGMA_MIN, SIGMA_MAX)


# -- probability-flow ODE likelihood --------------------------------------------------------------


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("dims", [1, 2])
def test_ode_likelihood_of_gaussian_equals_closed_form(dims, exact):
    # zero-mean anisotropic Gaussian: only the method's approximations remain, the prior
    # N(0, sigma_max^2) and the start at sigma_min, O(x^2 / sigma_max^2 + sigma_min^2 / s^2) ~ 1e-4
    # nats here; Rademacher probes are exact for a diagonal Jacobian, so Hutchinson's agrees too
    mu, s = torch.zeros(dims, dtype=torch.float64), torch.tensor([0.5, 1.3][:dims], dtype=torch.float64)
    x = torch.randn(16, dims, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * s
    ll = pf_ode_log_likelihood(gaussian_denoiser(mu, s), x, SIGMA_MIN, SIGMA_MAX, exact_divergence=exact,
                               noise=SeededNoise.for_run(1, len(x)))
    closed = torch.distributions.Normal(mu, s).log_prob(x).sum(1)
    torch.testing.assert_close(ll, closed, atol=1e-3, rtol=0)


def test_ode_likelihood_integrates_the_path_to_solver_tolerance():
    # with a mean the N(0, sigma_max^2) prior is an approximation; against the exact path
    # x_T = mu + (x - mu) sqrt((s^2 + sigma_max^2) / (s^2 + sigma_min^2)) the integral is exact
    mu, s = MU.double(), torch.tensor([0.5, 1.3], dtype=torch.float64)
    x = mu + torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * s
    ll = pf_ode_log_likelihood(gaussian_denoiser(mu, s), x, SIGMA_MIN, SIGMA_MAX, rtol=1e-8, atol=1e-8)
    ratio = (s**2 + SIGMA_MAX**2) / (s**2 + SIGMA_MIN**2)
    x_T = mu + (x - mu) * ratio.sqrt()
    expected = torch.distributions.Normal(0.0, SIGMA_MAX).log_prob(x_T).sum(1) + 0.5 * ratio.log().sum()
    torch.testing.assert_close(ll, expected, atol=1e-6, rtol=0)
