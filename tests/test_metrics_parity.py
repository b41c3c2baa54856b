"""Parity of genbench's metrics with the reference implementations on identical features.

torch-fidelity 0.4.0 (FID, KID, IS, precision/recall) and prdc 0.2 (density/coverage), each
called through its own feature-level function. Tolerance: relative difference <= 1e-6. The k-NN
metrics are compared on the sets as given (``knn_equal_n=False``: the references do not subsample).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import pytest
import torch

from genbench.metrics import MetricOptions, evaluate_features
from genbench.metrics import density_coverage as dc
from genbench.metrics import kid as kid_module
from genbench.metrics import neighbours

tf_fid = pytest.importorskip("torch_fidelity.metric_fid")
tf_kid = pytest.importorskip("torch_fidelity.metric_kid")
tf_isc = pytest.importorskip("torch_fidelity.metric_isc")
tf_prc = pytest.importorskip("torch_fidelity.metric_prc")
prdc = pytest.importorskip("prdc")

RTOL = 1e-6


@pytest.fixture(autouse=True)
def one_thread():
    """One BLAS thread (torch and numpy): on a shared machine small kernels stay fast."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpoolctl.threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def features(n1: int, n2: int, dim: int, dtype=torch.float32, seed: int = 0, scale: float = 1.0):
    """Generated and reference features (two different folded Gaussians, like pooled ReLU features)."""
    g = torch.Generator().manual_seed(seed)
    fake = torch.randn(n1, dim, generator=g) * scale + 0.1
    real = torch.randn(n2, dim, generator=g) + torch.linspace(-0.2, 0.2, dim)
    return fake.abs().to(dtype), real.abs().to(dtype)


def tf_fid_value(fake: torch.Tensor, real: torch.Tensor) -> float:
    stats = tf_fid.fid_features_to_statistics(fake), tf_fid.fid_features_to_statistics(real)
    return tf_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]


def tf_kid_values(fake: torch.Tensor, real: torch.Tensor, subset_size: int, subsets: int = 100) -> tuple[float, float]:
    out = tf_kid.kid_features_to_metric(fake, real, kid_subset_size=subset_size, kid_subsets=subsets, verbose=False)
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def quiet_prdc(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        return prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=k)


# ---------------------------------------------------------------- FID



@pytest.mark.parametrize("n2, dim", [(300, 64), (40, 64)])  # sigma2 positive definite (Cholesky) / rank-deficient (eigh)
def test_trace_sqrt_product_equals_the_eigvals_definition(n2, dim):
    """tr((sigma1 sigma2)^(1/2)) by the symmetric form F^T sigma1 F equals torch-fidelity's definition,
    the sum of sqrt(eigvals(sigma1 @ sigma2)), in float64 on the same statistics."""
    from genbench.metrics.fid import covariance_factor, features_to_statistics, trace_sqrt_product

    fake, real = features(200, n2, dim, torch.float64)
    (_, sigma1), (_, sigma2) = features_to_statistics(fake), features_to_statistics(real)
    factor = covariance_factor(sigma2)
    assert torch.equal(factor, factor.tril()) == (n2 > dim)  # Cholesky's lower factor only when PD
    expected = torch.sqrt(torch.linalg.eigvals(sigma1 @ sigma2)).real.sum().item()
    # rank-deficient: the D - n2 + 1 zero eigenvalues come out as round-off ~1e-16, whose square
    # roots (~1e-8 each, in either definition) bound the agreement
    assert rel(trace_sqrt_product(sigma1, factor), expected) <= (1e-12 if n2 > dim else 1e-8)


@pytest.mark.parametrize("n1, n2", [(30, 200), (200, 30), (40, 50)])
def test_fid_from_a_thin_factor_equals_the_statistics_form(n1, n2):
    """With a set of no more rows than dimensions, FID takes its centred features as the factor (an N x N
    eigenproblem): the same value as from the statistics alone, and as torch-fidelity's."""
    from genbench.metrics.fid import features_to_fid, features_to_statistics, statistics_to_fid

    fake, real = features(n1, n2, 64, torch.float64)
    stats = (*features_to_statistics(fake), *features_to_statistics(real))
    thin = features_to_fid(*stats, fake, real)
    # the statistics forms add sqrt(round-off) ~1e-8 for each of their D - N + 1 zero eigenvalues
    assert rel(thin, statistics_to_fid(*stats)) <= RTOL
    assert rel(thin, tf_fid_value(fake, real)) <= RTOL

@pytest.mark.parametrize(
    "n1, n2, dim, dtype",
    [(1200, 1000, 64, torch.float32), (1500, 1800, 256, torch.float64), (300, 400, 512, torch.float32)],
)
def test_fid_equals_torch_fidelity(n1, n2, dim, dtype):
    fake, real = features(n1, n2, dim, dtype)
    ours = evaluate_features(["fid"], {"pool": fake}, {"pool": real}).values["fid"]
    assert rel(ours, tf_fid_value(fake, real)) <= RTOL


# ---------------------------------------------------------------- KID


def test_kid_equals_torch_fidelity_default_settings():
    """100 subsets of 1000, seed 2020, the same subsets drawn."""
    fake, real = features(1050, 1100, 32, torch.float64)
    result = evaluate_features(["kid"], {"pool": fake}, {"pool": real})
    mean, std = tf_kid_values(fake, real, 1000)
    assert result.info["kid_subset_size"] == 1000 and not result.warnings
    assert rel(result.values["kid_mean"], mean) <= RTOL
    assert rel(result.values["kid_std"], std) <= RTOL


@pytest.mark.parametrize("method", [kid_module.pair_sums_gram, kid_module.pair_sums_direct])
def test_kid_equals_torch_fidelity_float64(method, monkeypatch):
    """Both ways of summing the kernel (per-subset and blocked Gram) give torch-fidelity's numbers."""
    monkeypatch.setattr(kid_module, "choose_pair_sums", lambda *a, **k: method)
    fake, real = features(700, 800, 64, torch.float64)
    options = MetricOptions(kid_subset_size=250, kid_subsets=50, chunk_size=300)
    result = evaluate_features(["kid"], {"pool": fake}, {"pool": real}, options)
    mean, std = tf_kid_values(fake, real, 250, subsets=50)
    assert result.info["kid_method"] == method.__name__.removeprefix("pair_sums_")
    assert rel(result.values["kid_mean"], mean) <= RTOL
    assert rel(result.values["kid_std"], std) <= RTOL


def test_kid_float32_features():
    """On float32 features genbench computes in float64: equal to torch-fidelity fed the same
    features as float64; torch-fidelity's own float32 kernel sums carry ~1e-6 round-off."""
    fake, real = features(500, 600, 128, torch.float32, seed=3)
    options = MetricOptions(kid_subset_size=200)
    ours = evaluate_features(["kid"], {"pool": fake}, {"pool": real}, options).values
    mean64, std64 = tf_kid_values(fake.double(), real.double(), 200)
    mean32, _ = tf_kid_values(fake, real, 200)
    assert rel(ours["kid_mean"], mean64) <= RTOL and rel(ours["kid_std"], std64) <= RTOL
    assert rel(ours["kid_mean"], mean32) <= 1e-4


def test_kid_small_sets_use_smaller_subsets():
    """Fewer samples than the subset size: min(n1, n2, 1000) is used and reported, not refused."""
    fake, real = features(300, 450, 64, torch.float64, seed=1)
    result = evaluate_features(["kid"], {"pool": fake}, {"pool": real})
    assert result.info["kid_subset_size"] == 300
    assert any("subset size reduced from 1000 to 300" in w for w in result.warnings)
    mean, std = tf_kid_values(fake, real, 300)
    assert rel(result.values["kid_mean"], mean) <= RTOL and rel(result.values["kid_std"], std) <= RTOL


# ---------------------------------------------------------------- IS


@pytest.mark.parametrize("n, classes", [(1000, 1008), (2000, 10)])
def test_inception_score_equals_torch_fidelity(n, classes):
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(n, classes, generator=g) * 4
    ours = evaluate_features(["is"], {"logits": logits}, None).values
    ref = tf_isc.isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    assert rel(ours["is_mean"], ref["inception_score_mean"]) <= RTOL
    assert rel(ours["is_std"], ref["inception_score_std"]) <= RTOL


# ---------------------------------------------------------------- precision / recall


@pytest.mark.parametrize(
    "n1, n2, dim, chunk",
    [(800, 900, 64, 10_000), (1000, 700, 2048, 10_000), (700, 650, 64, 128)],
)
def test_precision_recall_equal_torch_fidelity(n1, n2, dim, chunk):
    """Same chunk size -> the same cdist blocks as torch-fidelity: equal to the last bit."""
    fake, real = features(n1, n2, dim)
    options = MetricOptions(chunk_size=chunk, knn_equal_n=False)
    ours = evaluate_features(["precision", "recall"], {"pool": fake}, {"pool": real}, options).values
    ref = tf_prc.prc_features_to_metric(fake, real, prc_neighborhood=3, prc_batch_size=chunk, verbose=False)
    ref_part = tf_prc.prc_features_to_metric(fake, real, prc_batch_size=chunk, save_cpu_ram=True, verbose=False)
    for key in ("precision", "recall"):
        assert rel(ours[key], ref[key]) <= RTOL
        assert rel(ours[key], ref_part[key]) <= RTOL
    assert 0.0 < min(ours.values()) < 1.0  # the generic data make the comparison non-vacuous


def test_precision_recall_other_k():
    fake, real = features(500, 600, 32, seed=5)
    options = MetricOptions(prc_k=5, knn_equal_n=False)
    ours = evaluate_features(["precision", "recall"], {"pool": fake}, {"pool": real}, options)
    ref = tf_prc.prc_features_to_metric(fake, real, prc_neighborhood=5, verbose=False)
    assert ours.info["prc_k"] == 5
    assert rel(ours.values["precision"], ref["precision"]) <= RTOL
    assert rel(ours.values["recall"], ref["recall"]) <= RTOL


# ---------------------------------------------------------------- density / coverage


@pytest.mark.parametrize(
    "n, dim, dtype, k",
    [(900, 64, torch.float32, 5), (900, 64, torch.float64, 5), (900, 64, torch.float64, 3), (1500, 1024, torch.float32, 5)],
)
def test_density_coverage_equal_prdc_on_generic_data(n, dim, dtype, k):
    fake, real = features(n, n + 100, dim, dtype, seed=11)
    options = MetricOptions(dc_k=k, knn_equal_n=False)
    ours = evaluate_features(["density", "coverage"], {"pool": fake}, {"pool": real}, options)
    ref = quiet_prdc(real, fake, k)
    assert ours.info["dc_k"] == k
    assert rel(ours.values["density"], float(ref["density"])) <= RTOL
    assert rel(ours.values["coverage"], float(ref["coverage"])) <= RTOL
    assert 0.05 < ours.values["coverage"] < 0.999


def test_density_coverage_distances_are_prdcs():
    """prdc's distances come from scikit-learn (float64 squared distances rounded to float32); the
    upcast blocks reproduce them, so density and coverage differ from prdc only where a distance
    equals a radius (in float32: 5 of 25 million pairs in the 5,000 x 2,048 benchmark)."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    fake, real = features(600, 500, 512, torch.float32, seed=4)
    ours = neighbours.block_distances(real, fake, upcast=True)
    theirs = torch.from_numpy(sklearn_metrics.pairwise_distances(real.numpy(), fake.numpy(), metric="euclidean"))
    assert ours.dtype == theirs.dtype == torch.float32
    assert (ours == theirs).double().mean() > 0.9999
    assert ((ours - theirs).abs() / theirs).max() < 2.5e-7  # at most two float32 ulps


def test_density_coverage_documented_difference_on_identical_inputs():
    """Samples repeated k+1 times have radius 0: prdc's strict '<' scores identical sets 0,
    genbench's '<=' (the paper's closed balls) scores them as a perfect match."""
    k = 5
    points = torch.arange(40, dtype=torch.float32).reshape(10, 4)  # 10 distinct points
    same = points.repeat_interleave(k + 1, dim=0)  # each repeated k+1 times: every radius is 0
    ref = quiet_prdc(same, same, k)
    assert float(ref["density"]) == 0.0 and float(ref["coverage"]) == 0.0
    density, coverage = dc.density_coverage(same, same, MetricOptions(dc_k=k))
    assert coverage == 1.0
    assert density == pytest.approx((k + 1) / k)  # each sample lies in the k+1 balls of its copies


def test_precision_recall_agree_with_prdc_on_generic_data():
    """prdc's precision/recall (strict '<', real first) agree with ours where no distance ties."""
    fake, real = features(600, 700, 64, torch.float64, seed=2)
    options = MetricOptions(prc_k=5, knn_equal_n=False)
    ours = evaluate_features(["precision", "recall"], {"pool": fake}, {"pool": real}, options).values
    ref = quiet_prdc(real, fake, 5)
    assert rel(ours["precision"], float(ref["precision"])) <= RTOL
    assert rel(ours["recall"], float(ref["recall"])) <= RTOL


def test_bootstrap_leaves_values_unchanged():
    """Asking for intervals does not change the point estimates."""
    fake, real = features(300, 350, 32, torch.float64, seed=9)
    names = ["fid", "kid", "precision", "recall", "density", "coverage"]
    plain = evaluate_features(names, {"pool": fake}, {"pool": real})
    booted = evaluate_features(names, {"pool": fake}, {"pool": real}, dataclasses.replace(MetricOptions(), bootstrap=5))
    assert booted.values == plain.values
    assert set(booted.ci) == set(plain.values) - {"kid_std"}
    assert np.all([lo <= hi for lo, hi in booted.ci.values()])
