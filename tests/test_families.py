"""Known answers for the gan, flow, autoregressive, consistency and ebm families, and short real training.

Known answers (untrained networks, milliseconds): change of variables against a numerical
Jacobian, densities that integrate to one, MADE's autoregressive property, the consistency
boundary condition, Langevin dynamics on a Gaussian, R1 on a linear critic, NFE per sampler.
Training (a few seconds per family on toy2d:8gaussians): samples land near the modes far more
often than noise does, and exact likelihoods approach the true log-density.
"""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data.base import FLOOR, ROUND, get_dataset, images_to_uint8
from genbench.metrics.likelihood import dequantise
from genbench.models.autoregressive import (
    discretised_logistic_log_prob,
    gaussian_mixture_log_prob,
)
from genbench.models.base import TrainBudget, build_model
from genbench.models.consistency import sample_consistency
from genbench.models.ebm import sample_langevin
from genbench.models.gan import r1_penalty
from genbench.samplers.base import SAMPLERS
from genbench.seeding import SeededNoise

EIGHT = get_dataset("toy2d:8gaussians")


def randomised(model, scale: float = 0.3, seed: int = 0):
    """Fill every parameter with noise (so zero-initialised layers are no longer the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def grid_integral(log_density, half_width: float = 5.0, n: int = 301) -> float:
    """Riemann sum of exp(log_density) over [-half_width, half_width]^2."""
    t = torch.linspace(-half_width, half_width, n)
    xy = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    cell = (t[1] - t[0]).item() ** 2
    return float(torch.exp(log_density(xy).double()).sum() * cell)


# -- flow ----------------------------------------------------------------------------------------


def test_flow_log_likelihood_is_the_change_of_variables_formula():
    flow = randomised(build_model("flow", (3,), "points", n_layers=4, hidden=8, depth=1))
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    ll = flow.log_likelihood(x)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda v: flow.to_latent(v[None])[0][0], x[i])
        z = flow.to_latent(x[i : i + 1])[0][0]
        expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum() + torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(ll[i], expected.detach(), rtol=1e-4, atol=1e-4)


def test_flow_inverse_inverts_and_density_integrates_to_one():
    flow = randomised(build_model("flow", (2,), "points", n_layers=4, hidden=8, depth=1))
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(flow.from_latent(flow.to_latent(x)[0]), x, rtol=1e-5, atol=1e-5)
    assert grid_integral(flow.log_likelihood, half_width=8.0, n=401) == pytest.approx(1.0, abs=0.02)


def test_flow_image_samples_are_dequantised_pixels_that_floor_to_their_level():
    # the flow models y = (u + U) / 256 in logit space: a sample's level is floor(256 y), which the
    # runner takes with the map the flow declares (round moves about a quarter of them up one)
    flow = randomised(build_model("flow", (1, 8, 8), "images", n_layers=2, hidden=8, depth=1), scale=0.05)
    x, nfe = flow.sample(SeededNoise.for_run(0, 4))
    assert nfe == 1.0 and x.min() >= -1 and x.max() <= 1 and flow.sample_quantisation == FLOOR
    with torch.no_grad():
        s = flow.from_latent(SeededNoise.for_run(0, 4).randn(64))
    alpha = flow.config["logit_alpha"]
    y = (torch.sigmoid(s.double()) - alpha) / (1 - 2 * alpha)  # [4, 64] in [0, 1]
    level = torch.floor(256 * y).clamp(0, 255)
    got = images_to_uint8(x, flow.sample_quantisation).reshape(4, -1).double()
    assert (got - level).abs().max() <= 1 and (got != level).double().mean() < 0.01
    assert (images_to_uint8(x, ROUND).reshape(4, -1).double() != level).double().mean() > 0.1


# -- autoregressive --------------------------------------------------------------------------------


def test_made_outputs_depend_only_on_earlier_coordinates():
    model = randomised(build_model("autoregressive", (5,), "points", hidden=16, depth=2, n_components=2))
    x = torch.randn(1, 5, requires_grad=True)
    params = model.made(x)  # [1, 3K, D]
    for d in range(5):
        (grad,) = torch.autograd.grad(params[0, :, d].sum(), x, retain_graph=True)
        assert torch.all(grad[0, d:] == 0), f"output {d} sees coordinates >= {d}"
        if d > 0:
            assert grad[0, :d].abs().sum() > 0, f"output {d} ignores its past"


def test_autoregressive_point_density_integrates_to_one():
    model = randomised(build_model("autoregressive", (2,), "points", hidden=16, depth=2, n_components=3), scale=0.2)
    assert grid_integral(model.log_likelihood, half_width=8.0, n=401) == pytest.approx(1.0, abs=0.02)


def test_discretised_logistic_probabilities_sum_to_one_over_256_values():
    g = torch.Generator().manual_seed(0)
    params = torch.randn(1, 9, 1, generator=g).expand(256, 9, 1).contiguous()  # K = 3, one pixel
    values = (torch.arange(256).float() / 127.5 - 1)[:, None]  # [256, 1]
    log_p = discretised_logistic_log_prob(params, values)[:, 0]
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-5)


def test_gaussian_mixture_conditional_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    params, x = torch.randn(4, 6, 1, generator=g), torch.randn(4, 1, generator=g)  # K = 2
    logits, mu, log_sigma = params[:, :, 0].chunk(3, dim=1)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits), torch.distributions.Normal(mu, log_sigma.exp()))
    torch.testing.assert_close(gaussian_mixture_log_prob(params, x)[:, 0], mix.log_prob(x[:, 0]))


def test_autoregressive_image_likelihood_is_log_p_plus_d_ln_128():
    # compare with the formula directly, at the pixels' levels, for the dequantised input the runner sends
    model = build_model("autoregressive", (1, 2, 2), "images", hidden=8, depth=1, n_components=1).eval()
    x = torch.tensor([[-1.0, 1.0, 1 / 127.5 - 1, 0.0]]).reshape(1, 1, 2, 2)
    x = torch.round((x + 1) * 127.5) / 127.5 - 1  # levels 0, 255, 1, 128 on the grid
    log_p = discretised_logistic_log_prob(model.made(x.reshape(1, -1)), x.reshape(1, -1)).sum()
    for seed in range(4):
        xq = dequantise(x, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(model.log_likelihood(xq)[0], log_p + 4 * math.log(128.0))


# -- consistency -----------------------------------------------------------------------------------


def test_consistency_function_is_the_identity_at_sigma_min():
    model = randomised(build_model("consistency", (2,), "points", hidden=8, depth=1, emb_dim=8))
    x = torch.randn(6, 2)
    sigma = torch.full((6,), model.config["sigma_min"])
    torch.testing.assert_close(model.consistency_fn(x, sigma), x)


def test_multistep_consistency_sampling_adds_noise_between_calls():
    # f = identity: each step adds noise of std sqrt(tau^2 - sigma_min^2); with tau = (3, 4), sigma_min = 0
    calls = []

    def f(x, sigma):
        calls.append(float(sigma[0]))
        return x

    x = torch.zeros(2000, 1)
    out = sample_consistency(f, x, torch.tensor([3.0, 4.0, 0.0]), SeededNoise.for_run(0, 2000))
    assert calls == [3.0, 4.0]
    assert float(out.std()) == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_consistency_nfe_equals_steps(steps):
    model = build_model("consistency", (2,), "points", hidden=8, depth=1, emb_dim=8)
    _, nfe = model.sample(SeededNoise.for_run(0, 3), "consistency", steps)
    assert nfe == steps
    assert model.sampling_sigmas(steps)[0] == model.config["sigma_max"]


# -- ebm -------------------------------------------------------------------------------------------


def test_langevin_samples_a_standard_gaussian_from_its_score():
    # score -x of N(0, 1); ULA with step 0.05 has stationary variance 1 / (1 - 0.05 / 2) = 1.026
    x = torch.full((1000, 1), 3.0)
    out = sample_langevin(lambda v, _: -v, x, torch.full((150,), 0.05), SeededNoise.for_run(0, 1000))
    assert float(out.mean()) == pytest.approx(0.0, abs=0.1)
    assert float(out.var()) == pytest.approx(1.026, rel=0.1)


@pytest.mark.parametrize("steps", [1, 5])
def test_ebm_nfe_counts_gradient_evaluations(steps):
    model = build_model("ebm", (2,), "points", hidden=8, depth=1)
    _, nfe = model.sample(SeededNoise.for_run(0, 3), "langevin", steps)
    assert nfe == steps
    assert SAMPLERS.get("langevin").kind == "langevin" and model.supported_samplers() == ["langevin"]


def test_ebm_default_steps_are_the_recipe_chain_length():
    from genbench.models.ebm import EBM

    assert EBM.default_steps("langevin", {"langevin_steps": 7}) == 7
    assert EBM.default_steps("langevin", None) == EBM.default_steps("langevin", {}) == 40


def test_a_suite_samples_an_ebm_recipe_with_its_langevin_steps(tmp_path, monkeypatch):
    # a recipe trained with 7-step chains is sampled with 7 steps when the suite names none
    import shutil

    from genbench import recipes
    from genbench.suite import expand_suite, load_suite

    for f in recipes.recipes_dir().glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "ebm-seven-step-chains.yaml").write_text(
        "family: ebm\nconfig: {hidden: 8, depth: 1, langevin_steps: 7}\ntrain: {steps: 2}\n")
    monkeypatch.setattr(recipes, "recipes_dir", lambda: tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: t\nruns:\n  - datasets: [toy2d:8gaussians]\n    models: [ebm-seven-step-chains, ebm]\n")
    steps = {sp.model: sp.steps for sp in expand_suite(load_suite(str(suite)))}
    assert steps == {"ebm-seven-step-chains": 7, "ebm": 40}


def test_ebm_negatives_restart_from_the_replay_buffer_with_probability_replay():
    model = build_model("ebm", (2,), "points", hidden=8, depth=1, langevin_steps=1, step_size=1e-8, replay=0.9)
    buffer = torch.full((10, 2), 7.0)  # far outside the uniform start on [-3, 3]^2
    negatives = model._negatives(400, buffer, torch.Generator().manual_seed(0))
    from_buffer = float(((negatives - 7.0).abs() < 1e-2).all(1).float().mean())
    assert 0.85 < from_buffer < 0.95
    assert negatives[((negatives - 7.0).abs() >= 1e-2).any(1)].abs().max() <= 3.0 + 1e-3


# -- gan -------------------------------------------------------------------------------------------


def test_r1_penalty_of_a_linear_critic_is_its_squared_weight_norm():
    w = torch.tensor([3.0, -4.0])
    x = torch.randn(5, 2, requires_grad=True)
    assert float(r1_penalty(x @ w, x)) == pytest.approx(25.0)


@pytest.mark.parametrize("family,shape,expected", [
    ("gan", (2,), 1.0), ("flow", (2,), 1.0), ("autoregressive", (2,), 2.0), ("autoregressive", (1, 8, 8), 64.0)])
def test_native_nfe(family, shape, expected):
    model = build_model(family, shape, "points" if len(shape) == 1 else "images", hidden=8, depth=1)
    _, nfe = model.sample(SeededNoise.for_run(0, 2))
    assert nfe == expected


# -- short real training on toy2d:8gaussians -------------------------------------------------------

QUICK = {
    "gan": ({"hidden": 64, "depth": 2, "r1_gamma": 0.1}, TrainBudget(steps=600, batch_size=256, lr=2e-3), "native"),
    "flow": ({"n_layers": 6, "hidden": 32, "depth": 2}, TrainBudget(steps=400, batch_size=256, lr=3e-3), "native"),
    "autoregressive": ({"hidden": 64, "depth": 1, "n_components": 8}, TrainBudget(steps=600, batch_size=256, lr=5e-3), "native"),
    "consistency": ({"hidden": 64, "depth": 3, "sigma_data": 1.0, "n_end": 80},
                    TrainBudget(steps=600, batch_size=512, lr=3e-3, ema=0.99), "consistency"),
    "ebm": ({"hidden": 64, "depth": 2, "langevin_steps": 20, "step_size": 0.03}, TrainBudget(steps=200, batch_size=128, lr=3e-3),
            "langevin"),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def near_mode_fraction(x: torch.Tensor) -> float:
    """Fraction of points within 3 std of one of the 8 mode centres."""
    centres = torch.as_tensor(EIGHT.centres(), dtype=torch.float32)
    return float((torch.cdist(x.float(), centres).min(1).values < 3 * EIGHT.std).float().mean())


def quick_fit(family: str):
    config, budget, _ = QUICK[family]
    torch.manual_seed(0)
    model = build_model(family, EIGHT.shape, "points", **config)
    model.fit(EIGHT.load("train"), budget, torch.Generator().manual_seed(0))
    return model


@pytest.mark.parametrize("family", sorted(QUICK))
def test_short_training_puts_samples_near_the_modes(family):
    model = quick_fit(family)
    x, _ = model.sample(SeededNoise.for_run(0, 1000), QUICK[family][2])
    noise_fraction = near_mode_fraction(2.0 * torch.randn(1000, 2, generator=torch.Generator().manual_seed(0)))
    fraction = near_mode_fraction(x)
    assert fraction > 0.5 > 2 * noise_fraction, f"{family}: {fraction:.2f} of samples near a mode (noise: {noise_fraction:.2f})"
    if model.likelihood_kind == "exact":
        test = EIGHT.load("test").x[:2000]
        ll, true_ll = model.log_likelihood(test).mean(), EIGHT.log_prob(test).mean()
        assert float(ll) > float(true_ll) - 1.0, f"{family}: log-likelihood {float(ll):.2f} vs true {float(true_ll):.2f}"
        shifted = model.log_likelihood(test + torch.tensor([0.5, 0.0])).mean()
        assert float(ll) > float(shifted) + 1.0
