"""Known answers, the evaluate_features contract, bootstrap intervals and error messages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genbench.errors import UnknownNameError, UsageError
from genbench.metrics import (
    MetricOptions,
    MetricResult,
    default_metrics,
    evaluate_features,
    fd_infinity,
    fid,
    higher_is_better,
    inception_score,
    kid,
    neighbours,
    warn_if_different_n,
)
from genbench.metrics import density_coverage as dc
from genbench.metrics import precision_recall as pr
from genbench.metrics.bootstrap import iter_resample_indices

scipy_linalg = pytest.importorskip("scipy.linalg")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gaussian(n: int, mu: torch.Tensor, sigma: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mu), generator=g, dtype=torch.float64)
    return mu + z @ torch.linalg.cholesky(sigma).T


def closed_form_fid(mu1, s1, mu2, s2) -> float:
    """FID between two Gaussians with scipy's matrix square root (the textbook formula)."""
    covmean = scipy_linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    return float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * np.trace(covmean))


def two_gaussians(d: int = 4):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.linspace(0.2, 0.8, d, dtype=torch.float64)
    s1, s2 = torch.eye(d, dtype=torch.float64), a @ a.T / d + 0.5 * torch.eye(d, dtype=torch.float64)
    return mu1, s1, mu2, s2


# ---------------------------------------------------------------- FID


def test_fid_of_large_gaussian_samples_matches_closed_form():
    mu1, s1, mu2, s2 = two_gaussians()
    exact = closed_form_fid(mu1, s1, mu2, s2)
    x, y = gaussian(100_000, mu1, s1, 1), gaussian(100_000, mu2, s2, 2)
    value = evaluate_features(["fid"], {"pool": x}, {"pool": y}).values["fid"]
    assert value == pytest.approx(exact, rel=0.01)
    # and the statistics stage is the textbook formula on exact statistics
    assert fid.statistics_to_fid(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-10)


def test_fid_is_never_negative_and_says_when_it_clamps(monkeypatch):
    value, warnings = fid.clamp_fid(-3e-13)
    assert value == 0.0 and "clamped to 0" in warnings[0]
    monkeypatch.setattr(fid, "statistics_to_fid", lambda *a: -2e-12)
    x = torch.randn(50, 3, dtype=torch.float64)
    result = evaluate_features(["fid"], {"pool": x}, {"pool": x})
    assert result.values["fid"] == 0.0
    assert any("clamped to 0" in w for w in result.warnings)


def test_fid_of_a_set_with_itself_is_zero():
    x = torch.randn(400, 16, dtype=torch.float64)
    result = evaluate_features(["fid"], {"pool": x}, {"pool": x})
    assert 0.0 <= result.values["fid"] < 1e-9


def test_fid_survives_an_imaginary_matrix_square_root():
    """n < D: sigma1 @ sigma2 is singular and its round-off eigenvalues are negative or complex,
    so a real square root would give NaN (and sqrtm an imaginary part, on which pytorch-fid
    raises); the square roots are taken in complex arithmetic and the real part kept."""
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(40, 96, generator=g), torch.randn(60, 96, generator=g) * 1.3
    (_, s1), (_, s2) = fid.features_to_statistics(x), fid.features_to_statistics(y)
    eigenvalues = torch.linalg.eigvals(s1 @ s2)
    assert (eigenvalues.imag != 0).any() and torch.sqrt(eigenvalues.real).isnan().any()
    result = evaluate_features(["fid"], {"pool": x}, {"pool": y})
    assert np.isfinite(result.values["fid"]) and result.values["fid"] > 0
    tf_fid = pytest.importorskip("torch_fidelity.metric_fid")
    ref = tf_fid.fid_statistics_to_metric(
        tf_fid.fid_features_to_statistics(x), tf_fid.fid_features_to_statistics(y), False
    )
    assert result.values["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)
    assert any("rank-deficient" in w and "n1=40" in w and "n2=60" in w for w in result.warnings)


def test_fid_from_reference_statistics_equals_fid_from_features():
    x, y = torch.randn(300, 8, dtype=torch.float64), torch.randn(350, 8, dtype=torch.float64) + 0.3
    from_features = evaluate_features(["fid"], {"pool": x}, {"pool": y})
    stats = fid.reference_statistics(y)
    numpy_stats = {"mu": stats["mu"].numpy(), "sigma": stats["sigma"].numpy(), "n": 350}
    from_stats = evaluate_features(["fid"], {"pool": x}, None, real_stats=numpy_stats)
    assert from_stats.values == from_features.values
    assert from_stats.info["n2"] == 350
    with pytest.raises(UsageError, match="reference statistics serve only FID"):
        evaluate_features(["kid"], {"pool": x}, None, real_stats=numpy_stats)
    with pytest.raises(UsageError, match='"mu" and "sigma"'):
        evaluate_features(["fid"], {"pool": x}, None, real_stats={"mu": stats["mu"]})


# ---------------------------------------------------------------- KID, IS


def test_kid_with_linear_kernel_is_the_unbiased_squared_mean_distance():
    """degree 1, coef0 0, gamma 1: MMD^2 is an unbiased estimate of ||mu_x - mu_y||^2."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(80, 5, generator=g).double(), torch.randn(90, 5, generator=g).double() + 0.5
    options = MetricOptions(kid_degree=1, kid_coef0=0.0, kid_gamma=1.0, kid_subset_size=80, kid_subsets=3)
    values, _ = kid.kid_features_to_metric(x, y[:80], options)
    m, sx, sy = 80, x.sum(0), y[:80].sum(0)
    expected = (
        (sx @ sx - (x * x).sum()) / (m * (m - 1)) + (sy @ sy - (y[:80] ** 2).sum()) / (m * (m - 1)) - 2 * sx @ sy / m**2
    )
    assert values["kid_mean"] == pytest.approx(float(expected), rel=1e-10)
    assert values["kid_std"] == pytest.approx(0.0, abs=1e-12)  # every subset is the whole set


def test_inception_score_known_answers():
    uniform = torch.zeros(100, 7)
    assert inception_score.isc_features_to_metric(uniform, MetricOptions())["is_mean"] == pytest.approx(1.0)
    confident = 100.0 * torch.eye(10).repeat(30, 1)  # 300 confident predictions, 10 balanced classes
    one_split = inception_score.isc_features_to_metric(confident, MetricOptions(is_splits=1))
    assert one_split["is_mean"] == pytest.approx(10.0, rel=1e-9) and one_split["is_std"] == 0.0


# ---------------------------------------------------------------- k-NN metrics


def test_precision_recall_density_coverage_of_a_set_with_itself():
    x = torch.randn(300, 16)
    values = evaluate_features(["precision", "recall", "density", "coverage"], {"pool": x}, {"pool": x}).values
    assert values["precision"] == 1.0 and values["recall"] == 1.0 and values["coverage"] == 1.0
    assert values["density"] >= 1.0 / 5


def test_precision_recall_density_coverage_of_far_apart_sets():
    x = torch.randn(300, 16)
    values = evaluate_features(["precision", "recall", "density", "coverage"], {"pool": x}, {"pool": x + 1000}).values
    assert values == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


# ---------------------------------------------------------------- evaluate_features contract


def test_groups_are_computed_once(monkeypatch):
    calls = []
    original = pr.kth_nearest_distance
    monkeypatch.setattr(pr, "kth_nearest_distance", lambda *a: calls.append(1) or original(*a))
    x, y = torch.randn(100, 4), torch.randn(120, 4)
    result = evaluate_features(["recall", "precision"], {"pool": x}, {"pool": y})
    assert len(calls) == 1 and list(result.values) == ["recall", "precision"]


def test_info_records_sample_sizes_and_settings():
    x, y = torch.randn(150, 4), torch.randn(170, 4)
    logits = torch.randn(150, 10)
    result = evaluate_features(default_metrics({"pool", "logits"}), {"pool": x, "logits": logits}, {"pool": y})
    info = result.info
    assert (info["n1"], info["n2"], info["kid_subset_size"], info["prc_k"], info["dc_k"]) == (150, 170, 150, 3, 5)
    assert set(result.values) == {
        "fid",
        "kid_mean",
        "kid_std",
        "is_mean",
        "is_std",
        "precision",
        "recall",
        "density",
        "coverage",
    }


def test_default_metrics_and_directions():
    assert "is" in default_metrics({"pool", "logits"}) and "is" not in default_metrics({"pool"})
    assert "fd_inf" not in default_metrics({"pool", "logits"})
    assert default_metrics({"logits"}) == ["is"]
    assert higher_is_better("is_mean") and higher_is_better("precision") and higher_is_better("coverage")
    assert not higher_is_better("fid") and not higher_is_better("kid_mean") and not higher_is_better("fd_inf")
    with pytest.raises(UnknownNameError, match="unknown metric key 'fdi'"):
        higher_is_better("fdi")


@pytest.mark.parametrize(
    "names, fake, real, options, message",
    [
        (["fdi"], {"pool": torch.randn(10, 2)}, None, MetricOptions(), "Did you mean 'fid'"),
        (["is"], {"pool": torch.randn(10, 2)}, None, MetricOptions(), "needs 'logits'"),
        (
            ["fid"],
            {"pool": torch.randn(10, 2)},
            {"pool": torch.randn(10, 3)},
            MetricOptions(),
            "2 dimensions, reference 3",
        ),
        (["fid"], {"pool": torch.randn(10, 2)}, None, MetricOptions(), "pass the reference set's features"),
        (["fid"], {"pool": torch.full((10, 2), float("nan"))}, {"pool": torch.randn(10, 2)}, MetricOptions(), "NaN"),
        (["fid"], {"pool": torch.randn(10)}, {"pool": torch.randn(10, 2)}, MetricOptions(), r"\[N, D\]"),
        ([], {"pool": torch.randn(10, 2)}, None, MetricOptions(), "no metrics named"),
        (["precision"], {"pool": torch.randn(3, 2)}, {"pool": torch.randn(10, 2)}, MetricOptions(), "more than k=3"),
        (["is"], {"logits": torch.randn(5, 2)}, None, MetricOptions(), "at least is_splits=10"),
        (["fid"], {"pool": torch.randn(10, 2)}, None, MetricOptions(ci_level=95), "ci_level"),
        (["fid"], {"pool": torch.randn(10, 2)}, None, MetricOptions(chunk_size=0), "chunk_size"),
    ],
)
def test_bad_input_names_problem_and_fix(names, fake, real, options, message):
    with pytest.raises(UsageError, match=message):
        evaluate_features(names, fake, real, options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error():
    with pytest.raises(UsageError, match="CUDA is not available"):
        evaluate_features(
            ["fid"], {"pool": torch.randn(10, 2)}, {"pool": torch.randn(10, 2)}, MetricOptions(device="cuda")
        )


# ---------------------------------------------------------------- bootstrap


ALL = ["fid", "kid", "is", "precision", "recall", "density", "coverage"]


def small_sets():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(240, 12, generator=g, dtype=torch.float64)
    y = torch.randn(260, 12, generator=g, dtype=torch.float64) * 1.1
    return {"pool": x, "logits": torch.randn(240, 10, generator=g) * 2}, {"pool": y}


def test_bootstrap_intervals_are_reproducible_and_seeded():
    fake, real = small_sets()
    options = MetricOptions(bootstrap=30, kid_subset_size=100, kid_subsets=20)
    a = evaluate_features(ALL, fake, real, options)
    b = evaluate_features(ALL, fake, real, options)
    c = evaluate_features(ALL, fake, real, dataclasses.replace(options, seed=7))
    assert a.ci == b.ci and a.ci != c.ci
    assert set(a.ci) == {"fid", "kid_mean", "is_mean", "precision", "recall", "density", "coverage"}
    assert all(lo < hi for lo, hi in a.ci.values())
    assert a.info["bootstrap"] == 30 and a.info["ci_level"] == 0.95


def naive_replicates(fake, real, options) -> dict[str, list[float]]:
    """Each metric recomputed from scratch on each resample of the generated set."""
    plain = dataclasses.replace(options, bootstrap=0)
    out: dict[str, list[float]] = {
        k: [] for k in ("fid", "kid_mean", "is_mean", "precision", "recall", "density", "coverage")
    }
    for index in iter_resample_indices(len(fake["pool"]), options):
        resampled = {key: value[index] for key, value in fake.items()}
        values = evaluate_features(ALL, resampled, real, plain).values
        for key, replicates in out.items():
            replicates.append(values[key])
    return out


def test_fast_bootstrap_equals_recomputing_each_resample(monkeypatch):
    """Reusing the reference statistics, radii and distance pairs changes no replicate."""
    fake, real = small_sets()
    options = MetricOptions(bootstrap=6, kid_subset_size=100, kid_subsets=20, chunk_size=100)
    expected = naive_replicates(fake, real, options)
    for module, compute in (
        (fid, fid.fid_compute),
        (kid, kid.kid_features_to_metric),
        (pr, pr.prc_compute),
        (dc, dc.dc_compute),
    ):
        _, info = compute(fake["pool"], real["pool"], options)
        for key, values in info["replicates"].items():
            assert values.tolist() == pytest.approx(expected[key], rel=1e-9), key
    _, info = inception_score.is_compute(fake["logits"], None, options)
    assert info["replicates"]["is_mean"].tolist() == pytest.approx(expected["is_mean"], rel=1e-12)


def test_bootstrap_fallbacks_give_the_same_replicates(monkeypatch):
    """Too few neighbours kept, or too many pairs: replicates are recomputed, with equal results."""
    fake, real = small_sets()
    options = MetricOptions(bootstrap=4, chunk_size=64)
    _, fast_pr = pr.prc_compute(fake["pool"], real["pool"], options)
    _, fast_dc = dc.dc_compute(fake["pool"], real["pool"], options)
    monkeypatch.setattr(pr, "neighbour_list_length", lambda k, n: k + 1)  # radii never resolved
    monkeypatch.setattr(neighbours, "MAX_PAIRS_PER_SAMPLE", 0)  # pairs always overflow
    _, slow_pr = pr.prc_compute(fake["pool"], real["pool"], options)
    _, slow_dc = dc.dc_compute(fake["pool"], real["pool"], options)
    assert slow_pr["prc_bootstrap_pairs"] is None
    for fast, slow in ((fast_pr, slow_pr), (fast_dc, slow_dc)):
        for key in fast["replicates"]:
            assert torch.equal(fast["replicates"][key], slow["replicates"][key]), key


def test_interval_outside_estimate_is_flagged():
    x = torch.randn(200, 6, dtype=torch.float64)
    result = evaluate_features(["fid"], {"pool": x}, {"pool": x}, MetricOptions(bootstrap=20))
    assert result.values["fid"] < result.ci["fid"][0]  # duplicates make every resample differ from the reference
    assert any("outside its bootstrap interval" in w for w in result.warnings)


def test_warn_if_different_n():
    assert warn_if_different_n([{"n1": 1000, "n2": 5000}, MetricResult(info={"n1": 1000, "n2": 5000})]) == []
    warnings = warn_if_different_n([{"n1": 1000, "n2": 5000}, {"n_fake": 5000, "n_real": 5000}])
    assert len(warnings) == 1 and "1000, 5000" in warnings[0] and "generated" in warnings[0]


# ---------------------------------------------------------------- FD-infinity


def test_fd_inf_fit_recovers_an_exact_line():
    sizes = [100, 200, 400, 800]
    intercept, slope = fd_infinity.fit_line_in_inverse_n(sizes, [2.0 + 50.0 / n for n in sizes])
    assert intercept == pytest.approx(2.0) and slope == pytest.approx(50.0)


def test_fd_inf_removes_most_of_the_small_sample_bias():
    """Same distribution: FID_N > 0 only through its c/N bias; FD-infinity extrapolates it away."""
    mu1, s1, _, _ = two_gaussians(16)
    x, y = gaussian(4000, mu1, s1, 5), gaussian(20_000, mu1, s1, 6)
    result = evaluate_features(["fid", "fd_inf"], {"pool": x}, {"pool": y})
    assert abs(result.values["fd_inf"]) < 0.25 * result.values["fid"]
    assert result.info["fd_inf_sizes"][0] == 400 and result.info["fd_inf_sizes"][-1] == 4000
    assert len(result.info["fd_inf_fids"]) == 15
