"""Likelihood numbers with known answers: bits/dim, the runner's ``compute_likelihood``, MADE on
dequantised pixels, the probability-flow ODE likelihood with Hutchinson probes, NFE per run.

Images reach ``log_likelihood`` as the runner sends them, uniformly dequantised
x = (u + U[0, 1)) / 128 - 1, never only on the 8-bit grid.
"""

from __future__ import annotations

import math

import pytest
import torch

from genbench import runner
from genbench.data.base import IMAGES, dequantised_to_uint8, get_dataset, images_to_uint8, uint8_to_images
from genbench.metrics.likelihood import bits_per_dim, dequantise
from genbench.models.autoregressive import discretised_logistic_log_prob
from genbench.models.base import NATIVE, GenerativeModel, build_model
from genbench.samplers.ode import pf_ode_log_likelihood, rademacher
from genbench.seeding import SeededNoise
from genbench.spec import RunSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIGITS = get_dataset("digits")
D = 64  # pixels of a digits image
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def spec_for(family: str, seed: int = 0, n_samples: int = 10) -> RunSpec:
    return RunSpec(suite="test", dataset="digits", model=family, family=family, recipe_hash="test", sampler=NATIVE,
                   steps=None, seed=seed, n_samples=n_samples, n_reference=360, metrics=(), features="raw")


def runner_bpd(model: GenerativeModel, n: int = 360, seed: int = 0, batch_size: int = 500) -> tuple[float, dict]:
    values, info = runner.compute_likelihood(model, spec_for(model.family, seed), runner.RunContext(batch_size=batch_size), n)
    return values["bpd"], info


class UniformDensity(GenerativeModel):
    """Density 2^-D on [-1, 1]^D (every 8-bit image has 8 bits/dim); keeps what it was sent (x, noise seeds)."""

    family = "uniform-test"
    likelihood_kind = "exact"

    def fit(self, data, budget, generator, progress=None):
        return {}

    def sample(self, noise, sampler=NATIVE, steps=None):
        raise NotImplementedError

    def log_likelihood(self, x, noise=None):
        self.seen = getattr(self, "seen", []) + [x.clone()]
        self.seeds = getattr(self, "seeds", []) + (noise.seeds if noise is not None else [None] * len(x))
        return torch.full((len(x),), -x[0].numel() * math.log(2.0), dtype=torch.float64)


class PixelHistogram(GenerativeModel):
    """Independent pixels with P_d(u) from smoothed counts: a density constant on each bin [u, u + 1) / 128 - 1."""

    family = "histogram-test"
    likelihood_kind = "exact"

    def fit(self, data, budget=None, generator=None, progress=None):
        u = images_to_uint8(data.x).reshape(len(data), -1).long()  # [N, D]
        counts = torch.ones(u.shape[1], 256, dtype=torch.float64).scatter_add_(1, u.T, torch.ones(u.T.shape, dtype=torch.float64))
        self.log_p = (counts / counts.sum(1, keepdim=True)).log()  # [D, 256]
        return {}

    def sample(self, noise, sampler=NATIVE, steps=None):
        raise NotImplementedError

    def log_prob_of_levels(self, u: torch.Tensor) -> torch.Tensor:
        """log P(u) [N] for levels u [N, D]."""
        return self.log_p.gather(1, u.T.long()).sum(0)

    def log_likelihood(self, x, noise=None):
        # the bin of x, then the density P(u) / (2 / 256) per pixel on the [-1, 1] scale
        u = torch.floor((x.double() + 1) * 128).clamp(0, 255).reshape(len(x), -1)
        return self.log_prob_of_levels(u) + u.shape[1] * math.log(128.0)


# -- bits per dimension ------------------------------------------------------------------------


@pytest.mark.parametrize("log_likelihood,discrete,bpd", [
    (-D * math.log(2.0), False, 8.0),  # uniform density on [-1, 1]^D = uniform on [0, 1]^D: 8 bits
    (-D * math.log(256.0), True, 8.0),  # uniform over 256 levels
    (-3 * D * math.log(2.0), False, 10.0),  # density 2^-3D on [-1, 1] is 2^-2D on [0, 1]: 2 + 8
    (-D * math.log(2.0) * 1.5, True, 1.5),  # P = 2^-1.5D: 1.5 bits per pixel
])
def test_bits_per_dim_known_values(log_likelihood, discrete, bpd):
    ll = torch.full((5,), log_likelihood, dtype=torch.float64)
    assert bits_per_dim(ll, D, discrete=discrete) == pytest.approx(bpd, abs=1e-12)


def test_bits_per_dim_is_the_mean_over_examples():
    ll = torch.tensor([-D * math.log(2.0), -3 * D * math.log(2.0)], dtype=torch.float64)
    assert bits_per_dim(ll, D) == pytest.approx(9.0, abs=1e-12)


# -- the runner's compute_likelihood -------------------------------------------------------------


def test_runner_sends_uniformly_dequantised_pixels_and_the_uniform_density_scores_8_bits():
    model = UniformDensity(DIGITS.shape, IMAGES)
    bpd, info = runner_bpd(model, batch_size=100)
    assert bpd == pytest.approx(8.0, abs=1e-12)
    assert info["likelihood_n"] == 360 and info["likelihood_kind"] == "exact"
    x = torch.cat(model.seen)  # [360, 1, 8, 8], in batches of 100
    u = images_to_uint8(DIGITS.load("test").x)
    # each pixel lies in its own bin [u, u + 1) / 128 - 1, spread uniformly over it
    assert torch.equal(dequantised_to_uint8(x), u)
    offset = (x.double() + 1) * 128 - u.double()
    assert offset.min() >= 0 and offset.max() < 1
    assert float(offset.mean()) == pytest.approx(0.5, abs=0.01) and float(offset.var()) == pytest.approx(1 / 12, abs=0.005)


def test_runner_bits_per_dim_of_a_pixel_histogram_is_its_exact_code_length():
    # a density constant on each pixel bin scores -log2 P(u) / D whatever the dequantisation noise
    model = PixelHistogram(DIGITS.shape, IMAGES)
    model.fit(DIGITS.load("train"))
    u = images_to_uint8(DIGITS.load("test").x).reshape(360, -1)
    exact = float((-model.log_prob_of_levels(u) / (D * math.log(2))).mean())
    for seed in (0, 1):
        assert runner_bpd(model, seed=seed)[0] == pytest.approx(exact, abs=1e-9)


def test_dequantise_stays_inside_each_bin_at_float32():
    # float32 rounding of (u + U) / 128 - 1 can reach the bin's upper edge; dequantise stays below it
    u = torch.arange(256, dtype=torch.uint8).repeat(2000)  # [512000]
    x = dequantise(uint8_to_images(u), torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and torch.equal(dequantised_to_uint8(x), u)
    edge = torch.nextafter(torch.tensor(-0.5), torch.tensor(-2.0))  # just below the edge (u + 1) / 128 - 1 for u = 63
    assert int(dequantised_to_uint8(edge)) == 63 and int(dequantised_to_uint8(torch.tensor(-0.5))) == 64


# -- MADE: an exact discrete likelihood of dequantised pixels ---------------------------------------


def sharp_made() -> GenerativeModel:
    """An untrained MADE on digits with random weights large enough that neighbouring levels differ in P."""
    model = build_model("autoregressive", DIGITS.shape, IMAGES, hidden=32, depth=1, n_components=2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_made_scores_dequantised_pixels_at_their_own_level():
    model = sharp_made()
    grid = DIGITS.load("test").x[:32]  # [32, 1, 8, 8] on the grid u / 127.5 - 1
    flat = grid.reshape(32, -1)
    with torch.no_grad():
        expected = discretised_logistic_log_prob(model.made(flat), flat).sum(1) + D * math.log(128.0)
    for seed in range(3):
        x = dequantise(grid, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(model.log_likelihood(x), expected)


def test_made_bits_per_dim_through_the_runner_is_the_exact_code_length_at_every_seed():
    model = sharp_made()
    grid = DIGITS.load("test").x
    with torch.no_grad():
        log_p = model._log_prob(grid).double()  # log P(u) of the true pixels
    exact = float((-log_p / (D * math.log(2))).mean())
    for seed in (0, 1):
        assert runner_bpd(model, seed=seed)[0] == pytest.approx(exact, abs=1e-5)


# -- the probability-flow ODE likelihood with Hutchinson's estimator ---------------------------------


def full_covariance_gaussian(d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """mu [d] and a covariance [d, d] with large off-diagonal terms (float64)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)[:d], a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


def gaussian_path(mu: torch.Tensor, cov: torch.Tensor):
    """The denoiser of N(mu, cov), the ODE's end map x -> x_T and M = int J du (matrices of cov)."""
    lam, v = torch.linalg.eigh(cov)

    def of_cov(f: torch.Tensor) -> torch.Tensor:  # V diag(f) V^T
        return (v * f) @ v.T

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        # D(x; sigma) = mu + cov (cov + sigma^2 I)^-1 (x - mu), per row's sigma, in cov's eigenbasis: [N, d]
        gain = lam / (lam + sigma[:, None] ** 2)
        return mu + (((x - mu) @ v) * gain) @ v.T

    ratio = (lam + SIGMA_MAX**2) / (lam + SIGMA_MIN**2)
    end = of_cov(ratio.sqrt())  # x_T - mu = end (x - mu)
    m = of_cov(0.5 * ratio.log())  # int_{log sigma_min}^{log sigma_max} d/dx (x - D) du
    return denoise, end, m


@pytest.mark.parametrize("batch_size", [12, 5])
def test_hutchinson_on_a_full_covariance_gaussian_equals_its_probe_quadratic_form(batch_size):
    # for a Gaussian the Jacobian is constant in x, so one fixed probe eps per example gives exactly
    # log N(x_T; 0, sigma_max^2 I) + eps^T M eps; its mean over probes is the exact trace(M), and the
    # off-diagonal terms of M make each probe's value differ from it (a diagonal test cannot see them)
    mu, cov = full_covariance_gaussian()
    denoise, end, m = gaussian_path(mu, cov)
    x = mu + torch.randn(12, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    noise = SeededNoise.for_run(3, 12)
    ll = torch.cat([pf_ode_log_likelihood(denoise, xb, SIGMA_MIN, SIGMA_MAX, exact_divergence=False, noise=nb,
                                          rtol=1e-7, atol=1e-7)
                    for xb, nb in zip(x.split(batch_size), noise.batches(batch_size))])
    x_T = mu + (x - mu) @ end.T
    log_prior = torch.distributions.Normal(0.0, SIGMA_MAX).log_prob(x_T).sum(1)
    eps = rademacher(SeededNoise.for_run(3, 12), (3,)).double()  # the same per-example probes
    torch.testing.assert_close(ll, log_prior + ((eps @ m) * eps).sum(1), atol=1e-5, rtol=0)
    exact = log_prior + torch.trace(m)
    assert (ll - exact).abs().max() > 0.1  # the probes' off-diagonal terms show
    exact_ll = pf_ode_log_likelihood(denoise, x, SIGMA_MIN, SIGMA_MAX, exact_divergence=True, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(exact_ll, exact, atol=1e-5, rtol=0)


def test_hutchinson_is_unbiased_over_all_probes():
    # the mean of eps^T M eps over all 2^d sign vectors is trace(M)
    mu, cov = full_covariance_gaussian()
    denoise, end, m = gaussian_path(mu, cov)
    x = mu.expand(8, 3).clone()
    signs = torch.tensor([[1 - 2 * ((k >> j) & 1) for j in range(3)] for k in range(8)], dtype=torch.float64)

    class FixedProbes:  # the SeededNoise interface, handing out every sign vector once
        def randint(self, high, *shape):
            return ((signs + 1) / 2).long()

    ll = pf_ode_log_likelihood(denoise, x, SIGMA_MIN, SIGMA_MAX, exact_divergence=False, noise=FixedProbes(),
                               rtol=1e-7, atol=1e-7)
    exact = pf_ode_log_likelihood(denoise, x[:1], SIGMA_MIN, SIGMA_MAX, rtol=1e-7, atol=1e-7)
    assert float(ll.mean()) == pytest.approx(float(exact[0]), abs=1e-5)


def test_runner_hands_each_example_its_own_noise_whatever_the_batch():
    seeds = {}
    for batch_size in (360, 7):
        model = UniformDensity(DIGITS.shape, IMAGES)
        runner_bpd(model, batch_size=batch_size)
        seeds[batch_size] = model.seeds
    assert seeds[360] == seeds[7] and len(set(seeds[7])) == 360


def test_runner_elbo_bits_per_dim_does_not_depend_on_the_batch_size():
    # the VAE's K reparameterisation draws are per example; drawn per batch they moved the
    # value by ~1e-3 bits/dim between batches of 12 and 5
    torch.manual_seed(0)
    model = build_model("vae", DIGITS.shape, IMAGES, hidden=16, depth=1, latent_dim=2).eval()
    whole, _ = runner_bpd(model, n=12, batch_size=12)
    parts, _ = runner_bpd(model, n=12, batch_size=5)
    assert parts == pytest.approx(whole, abs=1e-6)
    other_seed, _ = runner_bpd(model, n=12, seed=1, batch_size=12)
    assert abs(other_seed - whole) > 1e-4


# -- NFE of a run -------------------------------------------------------------------------------


class BatchSizedCalls(GenerativeModel):
    """Points whose NFE is 10 + the batch's size (an adaptive solver's count also varies per batch)."""

    family = "nfe-test"

    def fit(self, data, budget, generator, progress=None):
        return {}

    def sample(self, noise, sampler=NATIVE, steps=None):
        return noise.randn(2), float(10 + len(noise))


def test_draw_samples_reports_the_mean_nfe_per_sample_and_the_batch_maximum():
    drawn = runner.draw_samples(BatchSizedCalls((2,), "points"), spec_for("nfe-test", n_samples=10),
                                runner.RunContext(batch_size=4))
    x, nfe = drawn.x, drawn.nfe
    # batches of 4, 4 and 2 samples cost 14, 14 and 12 calls per sample
    assert x.shape == (10, 2)
    assert nfe["nfe"] == pytest.approx((14 * 4 + 14 * 4 + 12 * 2) / 10) and nfe["nfe_max"] == 14.0
