"""The ``vae`` and ``diffusion`` families on toy2d:8gaussians with budgets of seconds, plus image shapes."""

from __future__ import annotations

import pytest
import torch

from genbench.data.base import IMAGES, POINTS, Samples, get_dataset
from genbench.errors import UsageError
from genbench.models.base import TrainBudget, build_model, load_checkpoint, save_checkpoint
from genbench.models.diffusion import edm_loss_weight, edm_preconditioning
from genbench.models.nets.mlp import MLP
from genbench.models.nets.unet import UNet
from genbench.models.vae import gaussian_log_density, kl_to_standard_normal
from genbench.samplers.base import samplers_of_kind
from genbench.seeding import SeededNoise

TOY = "toy2d:8gaussians"
CONFIGS = {
    "diffusion": ({"sigma_data": 1.4, "width": 64, "depth": 2, "likelihood_tol": 1e-3},
                  TrainBudget(steps=400, batch_size=256, lr=3e-3, ema=0.99), "heun", 12),
    "vae": ({"hidden": 64, "depth": 2, "likelihood_samples": 8},
            TrainBudget(steps=400, batch_size=256, lr=1e-2, ema=0.99), "native", None),
}


@pytest.fixture(scope="module")
def toy():
    ds = get_dataset(TOY)
    return ds, ds.load("train").take(4000), torch.as_tensor(ds.centres(), dtype=torch.float32)


_TRAINED: dict[str, tuple] = {}


def train_once(family: str, data: Samples) -> tuple:
    """(family, model, report, sampler, steps), trained once per test session."""
    if family not in _TRAINED:
        config, budget, sampler, steps = CONFIGS[family]
        torch.manual_seed(123)  # must not matter: fit draws everything from its generator
        model = build_model(family, (2,), POINTS, **config)
        report = model.fit(data, budget, torch.Generator().manual_seed(0))
        _TRAINED[family] = (family, model, report, sampler, steps)
    return _TRAINED[family]


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trained(request, toy):
    return train_once(request.param, toy[1])


@pytest.fixture(scope="module")
def diffusion(toy):
    return train_once("diffusion", toy[1])[1]


def mode_distance(x: torch.Tensor, centres: torch.Tensor) -> float:
    """Mean distance from each point to its nearest mixture centre."""
    return float(torch.cdist(x, centres).min(1).values.mean())


def test_training_lowers_the_loss(trained):
    _, _, report, _, _ = trained
    assert report["loss"] < report["loss_first"]


def test_samples_are_closer_to_the_modes_than_noise(trained, toy):
    _, model, _, sampler, steps = trained
    x, nfe = model.sample(SeededNoise.for_run(0, 500), sampler, steps)
    noise = torch.randn(500, 2, generator=torch.Generator().manual_seed(0)) * 1.4  # data-scale Gaussian
    assert x.shape == (500, 2) and nfe >= 1
    # data: 0.25; a Gaussian of the data's scale: about 0.9; these budgets: diffusion 0.5, vae 0.65
    assert mode_distance(x, toy[2]) < 0.8 * mode_distance(noise, toy[2])


def test_checkpoint_round_trip_gives_identical_samples(trained, tmp_path):
    family, model, _, sampler, steps = trained
    save_checkpoint(model, tmp_path / "m")
    loaded = load_checkpoint(tmp_path / "m", expect_family=family)
    a, nfe_a = model.sample(SeededNoise.for_run(3, 16), sampler, steps)
    b, nfe_b = loaded.sample(SeededNoise.for_run(3, 16), sampler, steps)
    assert torch.equal(a, b) and nfe_a == nfe_b


def test_data_is_more_likely_than_shifted_data(trained, toy):
    _, model, _, _, _ = trained
    x = toy[1].x[:32]
    ll, ll_shifted = model.log_likelihood(x), model.log_likelihood(x + 1.0)
    assert ll.shape == (32,)
    assert float(ll.mean()) > float(ll_shifted.mean()) + 1.0
    # a lower bound or estimate of log p, not wildly above the true density (-1.7 nats on average)
    assert float(ll.mean()) < float(toy[0].log_prob(x).mean()) + 0.5
    torch.testing.assert_close(model.log_likelihood(x), ll)  # deterministic


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_fit_is_determined_by_its_generator(family, toy):
    config, _, _, _ = CONFIGS[family]
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        model = build_model(family, (2,), POINTS, **config)
        model.fit(toy[1], TrainBudget(steps=20, batch_size=64, ema=0.9), torch.Generator().manual_seed(5))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_dropout_training_is_reproducible_and_leaves_the_global_rng_alone(toy):
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        model = build_model("diffusion", (2,), POINTS, width=16, depth=2, dropout=0.3)
        before = torch.get_rng_state()
        model.fit(toy[1], TrainBudget(steps=10, batch_size=32), torch.Generator().manual_seed(5))
        assert torch.equal(torch.get_rng_state(), before)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    # dropout is off when sampling: the same noise gives the same samples
    a, b = (model.sample(SeededNoise.for_run(0, 4), "euler", 3)[0] for _ in range(2))
    assert torch.equal(a, b)


# -- diffusion specifics --------------------------------------------------------------------------


def test_diffusion_supports_every_diffusion_sampler_with_counted_nfe(diffusion):
    model = diffusion
    assert sorted(model.supported_samplers()) == sorted(samplers_of_kind("diffusion"))
    # EDM's Heun (18 steps) is the sampler a suite or `genbench sample` uses when none is named
    assert model.supported_samplers()[0] == "heun"
    assert model.sample(SeededNoise.for_run(0, 4), "euler", 5)[1] == 5
    assert model.sample(SeededNoise.for_run(0, 4), "heun", 5)[1] == 9
    assert model.default_steps("heun", model.config) == 18 and model.default_steps("ode", model.config) is None
    # steps are ignored by the adaptive sampler
    a, b = (model.sample(SeededNoise.for_run(0, 4), "ode", s)[0] for s in (None, 7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler", ["euler_ancestral", "edm_stochastic"])
def test_diffusion_samples_do_not_depend_on_the_batch(diffusion, sampler):
    whole, _ = diffusion.sample(SeededNoise.for_run(5, 8), sampler, 6)
    parts = [diffusion.sample(b, sampler, 6)[0] for b in SeededNoise.for_run(5, 8).batches(3)]
    # same noise per sample; only the matmul blocking of the net may differ with the batch size
    torch.testing.assert_close(whole, torch.cat(parts), atol=1e-5, rtol=0)


def test_edm_preconditioning_matches_table_1():
    sigma = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, 0.5)
    torch.testing.assert_close(c_skip, 0.25 / (sigma**2 + 0.25))
    torch.testing.assert_close(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_in, 1 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    # the effective training target F has unit weight: lambda(sigma) c_out^2 = 1
    torch.testing.assert_close(edm_loss_weight(sigma, 0.5) * c_out**2, torch.ones(3, dtype=torch.float64))


def test_noise_range_scales_with_sigma_data():
    m = build_model("diffusion", (2,), POINTS, sigma_data=1.0)
    assert (m.sigma_min, m.sigma_max) == pytest.approx((0.004, 160.0))
    m = build_model("diffusion", (2,), POINTS, sigma_max=20.0)
    assert (m.sigma_min, m.sigma_max) == pytest.approx((0.002, 20.0))


@pytest.mark.parametrize("config, match", [
    ({"net": "unet"}, "image"), ({"net": "transformer"}, "mlp"), ({"schedule": "cosine"}, "karras"),
    ({"sigma_data": 0.0}, "sigma_data"), ({"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min"), ({"widht": 3}, "widht"),
])
def test_bad_diffusion_configs_are_usage_errors(config, match):
    with pytest.raises(UsageError, match=match):
        build_model("diffusion", (2,), POINTS, **config)


def test_unknown_sampler_is_a_usage_error_naming_the_known_ones():
    model = build_model("diffusion", (2,), POINTS, width=8, depth=1)
    with pytest.raises(UsageError, match="heun"):
        model.sample(SeededNoise.for_run(0, 2), "hune", 4)
    with pytest.raises(UsageError, match="native"):
        build_model("vae", (2,), POINTS).sample(SeededNoise.for_run(0, 2), "heun", 4)


# -- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family, config", [
    ("diffusion", {"net": "mlp", "width": 32, "depth": 1}),
    ("diffusion", {"net": "unet", "width": 8, "depth": 1}),
    ("diffusion", {"net": "mlp", "width": 32, "depth": 2, "mlp_conditioning": "scale_shift"}),
    ("ddpm", {"net": "mlp", "width": 32, "depth": 2, "mlp_conditioning": "scale_shift", "prediction_type": "v_prediction"}),
    ("vae", {"hidden": 32, "depth": 1}),
])
def test_image_models_train_sample_and_score_in_range(family, config):
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = build_model(family, (1, 8, 8), IMAGES, num_classes=10, **config)
    model.fit(Samples(x, None, IMAGES), TrainBudget(steps=3, batch_size=16), torch.Generator().manual_seed(0))
    sampler = "native" if family == "vae" else "euler"
    samples, _ = model.sample(SeededNoise.for_run(0, 5), sampler, 2)
    assert samples.shape == (5, 1, 8, 8) and float(samples.abs().max()) <= 1.0
    if family == "vae":
        assert model.log_likelihood(x[:4]).shape == (4,)


def test_unet_keeps_odd_image_sizes():
    net = UNet(1, channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(1,))
    x = torch.randn(2, 1, 28, 28)  # 28 -> 14 -> 7
    assert net(x, torch.tensor([0.1, 0.9])).shape == (2, 1, 28, 28)


def test_mlp_conditioning_is_checked():
    mlp = MLP(3, 2, hidden=8, depth=2, cond_dim=4)
    assert mlp(torch.randn(5, 3), torch.randn(5, 4)).shape == (5, 2)
    with pytest.raises(ValueError, match="cond"):
        mlp(torch.randn(5, 3))


def test_scale_shift_conditioning_follows_its_formula():
    """h <- h + SiLU(LayerNorm(W h) (1 + scale) + shift) per layer, scale and shift projected from the condition."""
    g = torch.Generator().manual_seed(0)
    mlp = MLP(3, 2, hidden=8, depth=2, cond_dim=4, conditioning="scale_shift")
    x, c = torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)
    s0, b0, s1, b1 = mlp.cond(c).chunk(4, dim=-1)
    ln = torch.nn.functional.layer_norm
    h = torch.nn.functional.silu(ln(mlp.layers[0](x), (8,)) * (1 + s0) + b0)
    h = h + torch.nn.functional.silu(ln(mlp.layers[1](h), (8,)) * (1 + s1) + b1)
    torch.testing.assert_close(mlp(x, c), mlp.out(h), rtol=1e-5, atol=1e-6)
    # the default (additive) keeps its parameter shapes, so checkpoints saved before the option load unchanged
    assert MLP(3, 2, hidden=8, depth=2, cond_dim=4).cond.weight.shape == (16, 4)
    assert mlp.cond.weight.shape == (32, 4)
    with pytest.raises(UsageError, match="scale_shift"):
        MLP(3, 2, hidden=8, depth=2, cond_dim=4, conditioning="film")
    with pytest.raises(UsageError, match="scale_shift"):
        build_model("ddpm", (2,), POINTS, mlp_conditioning="film")


# -- VAE pieces -----------------------------------------------------------------------------------


def test_vae_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x, mean, log_sigma = (torch.randn(4, 3, generator=g) for _ in range(3))
    ref = torch.distributions.Normal(mean, log_sigma.exp()).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_log_density(x, mean, log_sigma), ref)
    q = torch.distributions.Normal(mean, log_sigma.exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(kl_to_standard_normal(mean, log_sigma), torch.distributions.kl_divergence(q, p).sum(-1))


def test_iwae_bound_is_at_least_the_elbo(toy):
    model = build_model("vae", (2,), POINTS, hidden=32, depth=1, likelihood_samples=64)
    model.fit(toy[1], TrainBudget(steps=50, batch_size=128, lr=3e-3), torch.Generator().manual_seed(0))
    iwae = build_model("vae", (2,), POINTS, hidden=32, depth=1, likelihood_samples=64, likelihood_bound="iwae")
    iwae.load_state_dict(model.state_dict())
    x = toy[1].x[:64]
    assert float(iwae.log_likelihood(x).mean()) > float(model.log_likelihood(x).mean())
