"""Convolutional VAE: the discretised logistic is a distribution over the 256 levels, the IWAE-k
bound is at least the ELBO in expectation, and bits/dim follow the one convention."""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

from genbench.data.base import get_dataset
from genbench.metrics.likelihood import bits_per_dim, dequantise
from genbench.models.base import TrainBudget, build_model
from genbench.models.convvae import discretised_logistic_log_prob, to_levels
from genbench.seeding import SeededNoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("m, log_s", [(0.0, -3.0), (0.93, -7.0), (-1.4, -1.0), (3.0, 0.5), (0.2, 4.0), (-0.999, -6.5)])
def test_discretised_logistic_sums_to_one_over_the_256_levels(m, log_s):
    u = torch.arange(256)
    log_p = discretised_logistic_log_prob(u, torch.full((256,), m, dtype=torch.float64), torch.full((256,), log_s, dtype=torch.float64))
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    assert float(torch.logsumexp(log_p, 0).exp()) == pytest.approx(1.0, abs=1e-9)


def test_discretised_logistic_equals_the_logistic_cdf_difference():
    # a middle bin far from the tails: P(u) = sigmoid((c + 1/255 - m) / s) - sigmoid((c - 1/255 - m) / s)
    u, m, s = torch.tensor([100, 128, 200]), torch.tensor([0.1, -0.3, 0.8], dtype=torch.float64), 0.05
    c = u.double() / 127.5 - 1
    expected = torch.sigmoid((c + 1 / 255 - m) / s) - torch.sigmoid((c - 1 / 255 - m) / s)
    got = discretised_logistic_log_prob(u, m, torch.full((3,), math.log(s), dtype=torch.float64)).exp()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)


def test_levels_are_recovered_from_the_grid_and_from_dequantised_pixels():
    u = torch.arange(256)
    assert torch.equal(to_levels(u / 127.5 - 1), u)
    noisy = (u + torch.rand(256, generator=torch.Generator().manual_seed(0))) / 128 - 1
    assert torch.equal(to_levels(noisy), u)


@cache
def trained_vae():
    ds = get_dataset("digits")
    model = build_model("convvae", ds.shape, ds.modality, ds.num_classes, latent_dim=4, width=8)
    model.fit(ds.load("train"), TrainBudget(steps=60, batch_size=64, lr=3e-3), torch.Generator().manual_seed(0))
    return model


def test_iwae_k_is_at_least_the_elbo_in_expectation():
    model = trained_vae()
    x = get_dataset("digits").load("test").x[:64]
    elbo = torch.stack([model.log_likelihood(x, SeededNoise.for_run(s, 64)) for s in range(4)]).mean()  # 16 draws, 4 seeds
    model.config.update(likelihood_bound="iwae", likelihood_samples=64)
    try:
        iwae = torch.stack([model.log_likelihood(x, SeededNoise.for_run(s, 64)) for s in range(4)]).mean()
    finally:
        model.config.update(likelihood_bound="elbo", likelihood_samples=16)
    # the gap is the bound's slack: positive, and a small share of the ELBO (digits: ~2% after 60 steps)
    assert float(iwae) > float(elbo)
    assert float(iwae - elbo) < 0.1 * abs(float(elbo))


def test_likelihood_kind_names_the_bound():
    ds = get_dataset("digits")
    assert build_model("convvae", ds.shape, ds.modality, likelihood_bound="iwae", likelihood_samples=64).likelihood_kind == "iwae-64"
    assert build_model("convvae", ds.shape, ds.modality).likelihood_kind == "elbo"


def test_bits_per_dim_are_the_discrete_nll_of_the_levels():
    # log_likelihood returns log P(u) + D ln 128: the runner's continuous convention then gives -log P(u) / (D ln 2)
    model = trained_vae()
    x = get_dataset("digits").load("test").x[:16]
    xd = dequantise(x, torch.Generator().manual_seed(1))
    d = math.prod(model.data_shape)
    ll = model.log_likelihood(xd)
    torch.testing.assert_close(ll, model.log_likelihood(x))  # the same levels, whatever the dequantisation noise
    log_p = ll.double() - d * math.log(128)
    assert bits_per_dim(ll, d) == pytest.approx(float((-log_p / (d * math.log(2))).mean()), rel=1e-9)
    assert 0 < bits_per_dim(ll, d) < 8  # better than uniform over 256 levels after a little training

