"""DCGAN, conditional GAN and WGAN specifics (the shared contract tests cover fit/sample/checkpoints).

The WGAN-GP penalty is checked against its definition on a critic whose gradient is known; the
upsampling plan against the image sizes it must and must not reach; a recipe that cannot fit its
dataset is refused before training with one line (exit 2).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from genbench.cli import app
from genbench.data.base import get_dataset
from genbench.errors import UsageError
from genbench.models.base import TrainBudget, build_model
from genbench.models.nets.conv import upsampling_plan
from genbench.models.wgan import gradient_penalty

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("lam", [10.0, 1.0])
def test_gradient_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared(lam):
    # D(x) = w . x has gradient w everywhere, so the penalty is lambda (|w| - 1)^2 whatever x_hat is
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    x_real, x_fake = (torch.randn(5, 1, 3, 4, 4, generator=g, dtype=torch.float64)[:, 0] for _ in range(2))
    eps = torch.rand(5, generator=g, dtype=torch.float64)
    penalty = gradient_penalty(lambda x: (x * w).flatten(1).sum(1), x_real, x_fake, eps, lam)
    assert float(penalty) == pytest.approx(lam * (float(w.norm()) - 1) ** 2, rel=1e-12)
    # a critic of norm 1 is not penalised
    unit = w / w.norm()
    assert float(gradient_penalty(lambda x: (x * unit).flatten(1).sum(1), x_real, x_fake, eps, lam)) == pytest.approx(0, abs=1e-12)


def test_gradient_penalty_is_taken_at_the_interpolates():
    # D(x) = |x|^2 / 2 has gradient x: at eps = 1 the penalty sees x_real, at eps = 0 x_fake
    x_real = torch.full((2, 1, 2, 2), 1.0)  # |x| = 2
    x_fake = torch.full((2, 1, 2, 2), 0.25)  # |x| = 0.5
    critic = lambda x: 0.5 * x.pow(2).flatten(1).sum(1)  # noqa: E731
    assert float(gradient_penalty(critic, x_real, x_fake, torch.ones(2), 1.0).detach()) == pytest.approx(1.0)
    assert float(gradient_penalty(critic, x_real, x_fake, torch.zeros(2), 1.0).detach()) == pytest.approx(0.25)


def test_wgan_critic_has_no_batch_norm_and_dcgan_has_it():
    ds = get_dataset("digits")
    wgan = build_model("wgan", ds.shape, ds.modality, ds.num_classes, width=4)
    dcgan = build_model("dcgan", ds.shape, ds.modality, ds.num_classes, width=4)
    has_bn = lambda m: any(isinstance(x, nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert not has_bn(wgan.discriminator) and has_bn(dcgan.discriminator)
    assert has_bn(wgan.generator) and has_bn(dcgan.generator)
    assert wgan.config["gp_lambda"] == 10.0 and wgan.config["n_critic"] == 5
    assert (wgan.config["beta1"], wgan.config["beta2"]) == (0.0, 0.9)


def test_weight_clipping_wgan_keeps_every_critic_weight_in_range():
    ds = get_dataset("digits")
    model = build_model("wgan", ds.shape, ds.modality, ds.num_classes, width=4, latent_dim=4, constraint="clip",
                        clip=0.01, n_critic=2, bn_batches=1)
    model.fit(ds.load("train").take(64), TrainBudget(steps=3, batch_size=16, lr=5e-5), torch.Generator().manual_seed(0))
    weights = torch.cat([p.detach().flatten() for p in model.discriminator.parameters()])
    assert float(weights.abs().max()) <= 0.01 + 1e-7
    assert float(weights.abs().max()) > 0.005  # the clip binds (Kaiming init is far wider)


@pytest.mark.parametrize("size, plan", [((8, 8), (2, 2, 2)), ((28, 28), (2, 7, 7)), ((32, 32), (3, 4, 4)), ((12, 20), (2, 3, 5)), ((64, 64), (3, 8, 8))])
def test_upsampling_plan_reaches_the_image_size(size, plan):
    n, bh, bw = upsampling_plan(*size, None, "g")
    assert (n, bh, bw) == plan and bh * 2**n == size[0] and bw * 2**n == size[1]


def test_upsampling_plan_refuses_sizes_it_cannot_reach():
    with pytest.raises(UsageError, match="9x9 cannot be halved"):
        upsampling_plan(9, 9, None, "dcgan's generator")
    with pytest.raises(UsageError, match="n_up = 3 needs H and W divisible by 2\\^3 = 8, but the images are 28x28"):
        upsampling_plan(28, 28, 3, "dcgan's generator")


@pytest.mark.parametrize("family", ["dcgan", "cgan", "wgan"])
def test_generator_output_has_the_data_shape_at_28x28(family):
    ds = get_dataset("mnist5k")
    model = build_model(family, ds.shape, ds.modality, ds.num_classes, width=4, latent_dim=4).eval()
    y = torch.arange(3) if model.conditional else None
    x = model.generate(torch.zeros(3, 4), y)
    assert x.shape == (3, 1, 28, 28) and model.discriminate(x, y).shape == (3,)


def test_a_recipe_that_cannot_fit_the_data_is_refused_before_training(tmp_path, monkeypatch):
    import genbench.recipes as rec

    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "dcgan-deep.yaml").write_text("family: dcgan\nconfig: {n_up: 3}\ntrain: {steps: 1}\n")
    monkeypatch.setattr(rec, "recipes_dir", lambda: folder)
    rec._raw_recipe.cache_clear()
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nruns:\n  - datasets: [mnist5k]\n    models: [dcgan-deep]\n")
    try:
        res = CliRunner().invoke(app, ["run", "--suite", str(suite), "--out", str(tmp_path / "out"),
                                       "--cache", str(tmp_path / "cache"), "--no-progress"])
    finally:
        rec._raw_recipe.cache_clear()
    assert res.exit_code == 2
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "recipe 'dcgan-deep' cannot fit 'mnist5k'" in lines[0]
    assert "divisible by 2^3 = 8, but the images are 28x28" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache" / "checkpoints").exists()


def test_conditional_gan_on_unlabelled_points_is_refused_at_suite_expansion(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nruns:\n  - datasets: [toy2d:8gaussians]\n    models: [cgan]\n")
    res = CliRunner().invoke(app, ["run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 2 and "cannot handle points" in res.stderr


def test_recipes_override_per_dataset_after_the_modality():
    from genbench.recipes import load_recipe

    mnist5k = load_recipe("dcgan", "images", None, "mnist5k")
    fashion = load_recipe("dcgan", "images", None, "fashion-mnist")
    assert mnist5k.budget.steps == 1000 and fashion.budget.steps == 20000  # fashion-mnist: the GPU budget
    assert fashion.config["width"] == 64 and mnist5k.config["width"] == 32 and mnist5k.hash != fashion.hash
    assert load_recipe("dcgan", "images", {"steps": 5}, "fashion-mnist").budget.steps == 5  # a suite's override wins


def test_a_recipe_config_key_the_family_lacks_is_refused_at_expansion(tmp_path, monkeypatch):
    import genbench.recipes as rec
    from genbench.suite import expand_suite, load_suite

    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "bad.yaml").write_text("family: wgan\nconfig: {critic_steps: 3}\ntrain: {steps: 1}\n")
    monkeypatch.setattr(rec, "recipes_dir", lambda: folder)
    rec._raw_recipe.cache_clear()
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nruns:\n  - datasets: [digits]\n    models: [bad]\n")
    try:
        with pytest.raises(UsageError, match="bad configuration for model family 'wgan'.*critic_steps"):
            expand_suite(load_suite(str(suite)))
    finally:
        rec._raw_recipe.cache_clear()
