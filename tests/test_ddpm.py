"""The ddpm family beyond the shared contract: its likelihood bound on an analytic Gaussian, the discretised
decoder, the prediction types and schedules through every sampler form, and consistency distillation."""

from __future__ import annotations

import math

import pytest
import torch

from convergence import gaussian_eps_model
from genbench.data.base import IMAGES, POINTS
from genbench.errors import UsageError
from genbench.models.base import TrainBudget, build_model
from genbench.models.ddpm import discretised_gaussian_log_prob
from genbench.samplers.vp import eps_x0_to_output, output_to_eps_x0
from genbench.seeding import SeededNoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MU, S = torch.tensor([0.5, -0.3]), torch.tensor([0.4, 0.8])


def exact_ddpm(prediction_type: str = "epsilon", **config):
    """A 2-D ddpm whose network is replaced by the exact prediction for N(MU, diag S^2)."""
    model = build_model("ddpm", (2,), POINTS, None, width=8, depth=1, emb_dim=8, prediction_type=prediction_type,
                        **config)
    eps_fn = gaussian_eps_model(model.vp_schedule, MU.double(), S.double())

    def model_output(x_t, t):
        eps = eps_fn(x_t.double(), t)
        ab = 1.0 / (1.0 + model.vp_schedule.t_to_sigma(t.double().cpu()) ** 2)
        _, x0 = output_to_eps_x0(eps, x_t.double(), ab, "epsilon")
        return eps_x0_to_output(eps, x0, ab, prediction_type).to(x_t.dtype)

    model.model_output = model_output
    return model


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler,steps", [("ddpm_beta", 100), ("ddim", 50), ("heun", 32), ("dpm_solver_3", 12)])
def test_exact_model_samples_the_gaussian_with_either_prediction(prediction_type, sampler, steps):
    model = exact_ddpm(prediction_type)
    x, nfe = model.sample(SeededNoise.for_run(0, 1500), sampler, steps)
    # 1500 samples: standard errors 0.021 (mean), 0.015 (std) at s = 0.8 (ddpm with beta-tilde needs more steps:
    # its weak error at 64 steps is 0.075, tests/test_vp_samplers.py)
    torch.testing.assert_close(x.mean(0), MU, atol=0.07, rtol=0)
    torch.testing.assert_close(x.std(0), S, atol=0.05, rtol=0)
    assert nfe > 0


def test_vlb_bounds_the_true_nll_of_the_exact_model():
    model = exact_ddpm(num_train_timesteps=200, beta_end=0.1)
    x = MU + S * torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    true_nll = -torch.distributions.Normal(MU, S).log_prob(x).sum(1)
    vlb = -model.log_likelihood(x, SeededNoise.for_run(1, 300))
    # a bound on average (per example the noise can put it below); the gap of an exact model is small
    gap = float(vlb.mean() - true_nll.mean())
    assert 0 < gap < 0.1, gap


def test_sampled_vlb_terms_estimate_the_full_bound():
    full = exact_ddpm(num_train_timesteps=200, beta_end=0.1)
    part = exact_ddpm(num_train_timesteps=200, beta_end=0.1, vlb_timesteps=20)
    x = MU + S * torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    a = full.vlb_terms(x, SeededNoise.for_run(1, 300))
    b = part.vlb_terms(x, SeededNoise.for_run(1, 300))
    torch.testing.assert_close(b[:, 0], a[:, 0])  # the prior term is computed exactly either way
    # unbiased per example: the mean difference lies within 4 standard errors of 0
    diff = b[:, 1] - a[:, 1]
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(diff))
    assert float(diff.std()) > 0  # the estimate did sample


def test_discretised_decoder_is_a_distribution_over_256_levels():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1  # every pixel value, one per row
    for mean, std in ((0.0, 0.1), (0.93, 0.01), (-1.2, 0.3)):
        logp = discretised_gaussian_log_prob(levels[:, None], torch.full((256, 1), mean, dtype=torch.float64), std)
        assert math.isclose(float(logp.exp().sum()), 1.0, abs_tol=1e-6), (mean, std)


def test_image_vlb_is_a_discrete_likelihood_in_bits():
    model = build_model("ddpm", (1, 8, 8), IMAGES, None, width=8, depth=1, emb_dim=8, vlb_timesteps=10)
    assert model.likelihood_kind == "vlb" and model.discrete_likelihood
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    ll = model.log_likelihood(x)
    # log P of 64 8-bit pixels lies below 0 and, for an untrained model, far from certainty
    assert ll.shape == (3,) and bool((ll < 0).all()) and torch.isfinite(ll).all()


def test_scheduler_following_samplers_read_the_models_own_settings():
    # without them ddim took diffusers' defaults: clip_sample=True clamped these 2-D samples to [-1, 1]
    model = exact_ddpm(timestep_spacing="linspace")
    assert model.scheduler_config["clip_sample"] is False and model.scheduler_config["timestep_spacing"] == "linspace"
    images = build_model("ddpm", (1, 8, 8), IMAGES, None, width=8, depth=1, clip_denoised=True)
    assert images.scheduler_config["clip_sample"] is True


def test_cosine_schedule_and_ode_likelihood_options():
    model = build_model("ddpm", (2,), POINTS, None, width=8, depth=1, beta_schedule="cosine", likelihood="ode")
    assert model.vp_schedule.beta_schedule == "squaredcos_cap_v2" and model.likelihood_kind == "ode"
    assert model.default_steps("ddpm", model.config) == 1000 and model.default_steps("ode", model.config) is None


@pytest.mark.parametrize("bad", [{"beta_schedule": "sigmoid"}, {"prediction_type": "x0"}, {"likelihood": "elbo"},
                                 {"vlb_timesteps": 0}])
def test_bad_ddpm_config_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        build_model("ddpm", (2,), POINTS, None, **bad)


def test_too_many_steps_for_the_chain_is_a_usage_error():
    model = build_model("ddpm", (2,), POINTS, None, width=8, depth=1, num_train_timesteps=50)
    with pytest.raises(UsageError, match="50 or fewer"):
        model.sample(SeededNoise.for_run(0, 2), "ddpm", 51)


# -- short real training on toy2d:8gaussians -------------------------------------------------------


def test_short_ddpm_training_puts_samples_near_the_modes():
    from test_families import EIGHT, near_mode_fraction

    model = build_model("ddpm", EIGHT.shape, POINTS, None, width=64, depth=3)
    model.fit(EIGHT.load("train"), TrainBudget(steps=600, batch_size=256, lr=3e-3, ema=0.99), torch.Generator().manual_seed(0))
    noise_fraction = near_mode_fraction(2.0 * torch.randn(1000, 2, generator=torch.Generator().manual_seed(0)))
    # measured 0.71 (ancestral, 100 steps) and 0.65 (DPM-Solver-2, 10 steps) against 0.23 for noise
    for sampler, steps in (("ddpm", 100), ("dpm_solver_2", 10)):
        x, _ = model.sample(SeededNoise.for_run(0, 1000), sampler, steps)
        assert near_mode_fraction(x) > 0.5 > 2 * noise_fraction, sampler


@pytest.mark.slow
def test_consistency_distillation_samples_near_the_modes_in_one_step():
    from test_families import EIGHT, near_mode_fraction

    model = build_model("consistency_distillation", EIGHT.shape, POINTS, None, hidden=64, depth=3, sigma_data=1.0,
                        teacher_config={"width": 64, "depth": 3},
                        teacher_train={"steps": 600, "batch_size": 256, "lr": 3e-3, "ema": 0.99})
    report = model.fit(EIGHT.load("train"), TrainBudget(steps=600, batch_size=512, lr=3e-3, ema=0.99),
                       torch.Generator().manual_seed(0))
    assert report["teacher_loss"] < report["teacher_loss_first"] and report["loss"] < report["loss_first"]
    # the student's noise range is the teacher's (the diffusion recipe's points config: sigma_max 20)
    assert model.config["sigma_max"] == 20.0
    x, nfe = model.sample(SeededNoise.for_run(0, 1000), "consistency", 1)
    # measured 0.57 of one-step samples near a mode (0.67 at 2 steps) against 0.23 for noise
    assert nfe == 1 and near_mode_fraction(x) > 0.45
