"""Known answers for the image flows (nice, realnvp, glow): invertibility, the log-determinant against
autograd's full Jacobian, a density that integrates to one, the 8-bit bins of samples, recipes that
cannot fit the data refused before training, and a short real training run."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from genbench.data.base import get_dataset
from genbench.errors import UsageError
from genbench.metrics.likelihood import dequantise
from genbench.models.base import MODELS, TrainBudget, build_model
from genbench.models.nets.flow_layers import InvConv1x1, Squeeze, standard_normal_log_prob
from genbench.seeding import SeededNoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {
    "nice": {"n_couplings": 4, "hidden": 8, "depth": 1},
    "realnvp": {"n_scales": 2, "hidden": 8, "n_blocks": 1},
    "glow": {"n_levels": 2, "n_steps": 2, "hidden": 8},
}
IMAGE_FLOWS = list(SMALL)


def randomised(model, scale: float = 0.2, seed: int = 0):
    """Every parameter set to noise (zero-initialised couplings are no longer the identity); LU 1x1 convs
    get a random rotation as in training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, InvConv1x1):
                m.initialise_from(g)
                m.log_s.add_(scale * torch.randn(m.log_s.shape, generator=g))
    return model.eval()


def small_flow(family: str, shape=(1, 4, 4)):
    return randomised(build_model(family, shape, "images", **SMALL[family]))


def latent_map(model):
    """Flat dequantised image [D] -> flat latent [D], the whole bijection whose density log_likelihood reports."""
    shape = model.data_shape

    def f(v: torch.Tensor) -> torch.Tensor:
        x = v.reshape(1, *shape)
        if model.family == "nice":
            return model.to_latent(x.reshape(1, -1))[0][0]
        y, _ = model.to_flow_space(x)
        return model.flow.to_latent(y)[0][0]

    return f


def prior_log_prob(model, z: torch.Tensor) -> torch.Tensor:
    if model.family == "nice":
        from genbench.models.nice import prior_log_prob as nice_prior

        return nice_prior(z[None], model.config["prior"])[0]
    return standard_normal_log_prob(z[None])[0]


def random_images(n: int, shape, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 1.98 - 0.99


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 4, 4)])
@pytest.mark.parametrize("family", IMAGE_FLOWS)
def test_inverse_of_forward_is_the_identity(family, shape):
    model = small_flow(family, shape)
    x = random_images(5, shape)
    with torch.no_grad():
        if family == "nice":
            back = model.from_latent(model.to_latent(x.reshape(5, -1))[0]).reshape(x.shape)
        else:
            y, _ = model.to_flow_space(x)
            back = model.from_flow_space(model.flow.from_latent(model.flow.to_latent(y)[0]))
    torch.testing.assert_close(back, x, rtol=0, atol=1e-4)


@pytest.mark.parametrize("family", IMAGE_FLOWS)
def test_log_likelihood_is_prior_plus_log_det_of_the_full_jacobian(family):
    # the reported density is log p(z(x)) + log|det dz/dx| with the Jacobian from autograd, D = 16
    model = small_flow(family)
    x = random_images(3, model.data_shape)
    ll = model.log_likelihood(x)
    f = latent_map(model)
    for i in range(3):
        v = x[i].reshape(-1)
        jac = torch.autograd.functional.jacobian(f, v.double().float())
        expected = prior_log_prob(model, f(v)) + torch.linalg.slogdet(jac.double())[1].float()
        torch.testing.assert_close(ll[i], expected.detach(), rtol=1e-4, atol=1e-3)


def test_each_layer_log_det_matches_its_jacobian():
    # the layers one by one on a [2, 2, 2] input (a wrong sign or a missing H W factor shows here)
    from genbench.models.nets.flow_layers import ActNorm, Coupling

    g = torch.Generator().manual_seed(3)
    layers = [ActNorm(2), InvConv1x1(2), Squeeze(),
              Coupling((2, 2, 2), "checkerboard", 1, True, "resnet", 4, 1, "tanh"),
              Coupling((2, 2, 2), "channel", 0, True, "glow", 4, scale="sigmoid"),
              Coupling((2, 2, 2), "channel", 1, False, "glow", 4)]
    for layer in layers:
        randomised(layer, seed=4)
        x = torch.randn(1, 2, 2, 2, generator=g)
        y, logdet = layer(x)
        jac = torch.autograd.functional.jacobian(lambda v: layer(v.reshape(x.shape))[0].reshape(-1), x.reshape(-1))
        torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jac)[1], rtol=1e-4, atol=1e-4, msg=type(layer).__name__)
        torch.testing.assert_close(layer.inverse(y), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("prior", ["logistic", "gaussian"])
def test_nice_point_density_integrates_to_one(prior):
    nice = randomised(build_model("nice", (2,), "points", n_couplings=4, hidden=8, depth=1, prior=prior), scale=0.3)
    t = torch.linspace(-12, 12, 481)
    xy = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    cell = float(t[1] - t[0]) ** 2
    assert float(torch.exp(nice.log_likelihood(xy).double()).sum() * cell) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("family", IMAGE_FLOWS)
def test_samples_are_the_inverse_image_of_the_latent_and_temperature_scales_it(family):
    model = small_flow(family)
    x, nfe = model.sample(SeededNoise.for_run(0, 4))
    assert nfe == 1.0 and x.shape == (4, 1, 4, 4) and x.min() >= -1 and x.max() <= 1
    assert model.sample_quantisation == "floor"  # dequantised pixels: the runner floors them
    if family == "glow":
        # temperature T: the sample is the inverse image of T z for the sample's own z ~ N(0, I)
        cold = build_model("glow", (1, 4, 4), "images", **{**SMALL["glow"], "temperature": 0.5})
        cold.load_state_dict(model.state_dict())
        xc, _ = cold.eval().sample(SeededNoise.for_run(0, 4))
        z = SeededNoise.for_run(0, 4).randn(16)
        with torch.no_grad():
            expected = model.from_flow_space(model.flow.from_latent(0.5 * z)).clamp(-1, 1).reshape(xc.shape)
        torch.testing.assert_close(xc, expected, rtol=0, atol=1e-5)
        assert not torch.allclose(xc, x)


def test_glow_samples_stay_finite_where_the_inverse_expands_enormously():
    # weights far from the identity: Glow's unbounded 1 / sigmoid scale and split-prior std overflowed
    # to inf and then NaN on tail latents (2 of 2000 digits samples at temperature 1)
    glow = randomised(build_model("glow", (1, 8, 8), "images", n_levels=2, n_steps=2, hidden=8), scale=3.0)
    x, _ = glow.sample(SeededNoise.for_run(0, 300))
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("family, config, bad, message, fits", [
    ("realnvp", {"n_scales": 4}, (1, 28, 28), "divisible by 8", (1, 32, 32)),
    ("realnvp", {"n_scales": 4}, (1, 8, 8), "leave at least 2x2 pixels; this image size allows at most 2", (1, 16, 16)),
    ("glow", {"n_levels": 3}, (1, 28, 28), "divisible by 8.*allows at most 2 squeezes", (1, 8, 8)),
])
def test_configs_that_cannot_fit_the_image_size_are_refused_with_the_constraint(family, config, bad, message, fits):
    with pytest.raises(UsageError, match=message) as e:
        build_model(family, bad, "images", **config)
    assert "\n" not in str(e.value) and f"lower {'n_scales' if family == 'realnvp' else 'n_levels'}" in str(e.value)
    MODELS.get(family).check_fits(fits, "images", None, config)  # a size that allows it passes


def test_cli_refuses_a_recipe_that_cannot_fit_before_training(tmp_path, monkeypatch):
    # a recipe that fits digits (8x8) but whose mnist5k section squeezes 28x28 three times: exit 2, one line
    from genbench import recipes

    (tmp_path / "glow-deep.yaml").write_text(
        "family: glow\nconfig: {n_levels: 3, n_steps: 1, hidden: 8}\ntrain: {steps: 1}\n"
        "datasets:\n  mnist5k: {train: {steps: 2}}\n")
    (tmp_path / "suite.yaml").write_text(
        "name: deep\nruns:\n  - datasets: [digits, mnist5k]\n    models: [glow-deep]\n")
    monkeypatch.setattr(recipes, "recipes_dir", lambda: tmp_path)
    recipes._raw_recipe.cache_clear()
    try:
        from genbench.cli import app

        res = CliRunner().invoke(app, ["run", "--suite", str(tmp_path / "suite.yaml"), "--out", str(tmp_path / "out"),
                                       "--no-progress"])
    finally:
        recipes._raw_recipe.cache_clear()
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "glow-deep" in lines[0] and "mnist5k" in lines[0] and "n_levels" in lines[0], lines
    assert not any((tmp_path / "out").rglob("*.safetensors"))


def test_dataset_sections_of_a_recipe_override_the_modality_section(tmp_path, monkeypatch):
    from genbench import recipes

    (tmp_path / "r.yaml").write_text(
        "family: glow\nconfig: {n_levels: 1}\ntrain: {steps: 5, lr: 0.1}\n"
        "images: {config: {n_levels: 2}}\n"
        "datasets:\n  fashion-mnist: {train: {steps: 50}}\n  mnist5k: {config: {hidden: 4}}\n")
    monkeypatch.setattr(recipes, "recipes_dir", lambda: tmp_path)
    recipes._raw_recipe.cache_clear()
    try:
        fm = recipes.load_recipe("r", "images", {"lr": 0.5}, "fashion-mnist")
        mn = recipes.load_recipe("r", "images", None, "mnist5k")
        digits = recipes.load_recipe("r", "images", None, "digits")
    finally:
        recipes._raw_recipe.cache_clear()
    assert fm.config == {"n_levels": 2} and fm.train == {"steps": 50, "lr": 0.5}
    assert mn.config == {"n_levels": 2, "hidden": 4} and mn.train == {"steps": 5, "lr": 0.1}
    assert digits.config == {"n_levels": 2} and len({fm.hash, mn.hash, digits.hash}) == 3


@pytest.mark.parametrize("family", IMAGE_FLOWS)
def test_short_training_on_digits_improves_bits_per_dim(family):
    from genbench.metrics.likelihood import bits_per_dim

    data = get_dataset("digits").load("train")
    test = get_dataset("digits").load("test").x[:200]
    model = build_model(family, (1, 8, 8), "images", **SMALL[family])
    x = dequantise(test, torch.Generator().manual_seed(0))
    model.fit(data, TrainBudget(steps=1, batch_size=64, lr=1e-3), torch.Generator().manual_seed(0))
    before = bits_per_dim(model.log_likelihood(x), 64)
    model.fit(data, TrainBudget(steps=60, batch_size=32, lr=3e-3), torch.Generator().manual_seed(0))
    after = bits_per_dim(model.log_likelihood(x), 64)
    assert math.isfinite(after) and after < before - 0.5, (before, after)
