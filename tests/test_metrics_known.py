"""Known answers, the evaluate_features contract, half-sampling intervals, equal-n k-NN metrics,
the shared reference search, FD-infinity's limits and error messages."""

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
from genbench.metrics.base import UndefinedMetric

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
    monkeypatch.setattr(fid, "features_to_fid", lambda *a: -2e-12)  # what fid_compute calls
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


def test_interval_method_is_recorded_and_fd_inf_has_none():
    fake, real = small_sets()
    result = evaluate_features(["fid", "fd_inf"], fake, real, MetricOptions(bootstrap=5, fd_inf_points=3))
    assert result.info["ci_method"] == "half-sampling"
    assert set(result.ci) == {"fid"}


def test_an_interval_does_not_depend_on_the_other_metrics_asked_for():
    fake, real = small_sets()
    options = MetricOptions(bootstrap=5, kid_subset_size=100, kid_subsets=20)
    alone = evaluate_features(["fid"], fake, real, options)
    together = evaluate_features(["precision", "kid", "fid"], fake, real, options)
    assert alone.ci["fid"] == together.ci["fid"]


def test_fid_replicate_equals_fid():
    """The symmetric form used for replicates gives the torch-fidelity form's value."""
    fake, real = small_sets()
    plain, _ = fid.fid_compute(fake["pool"], real["pool"], MetricOptions())
    fast, _ = fid.fid_replicate(fake["pool"], real["pool"], MetricOptions())
    assert fast["fid"] == pytest.approx(plain["fid"], rel=1e-9)
    stats = fid.reference_statistics(real["pool"])
    from_stats, _ = fid.fid_replicate_from_stats(fake["pool"], stats, MetricOptions())
    assert from_stats["fid"] == pytest.approx(plain["fid"], rel=1e-9)


def test_fid_interval_is_centred_on_the_bias_corrected_estimate():
    """n = 300, d = 12: FID's O(d/n) bias is larger than its spread. The interval is centred on
    estimate - bias and holds the population value (1.08 here, 0 for the same distribution, where
    the interval is clipped at 0); the estimate outside its interval is flagged."""
    g = torch.Generator().manual_seed(4)
    x, y = (torch.randn(300, 12, generator=g, dtype=torch.float64) for _ in range(2))
    shifted = evaluate_features(["fid"], {"pool": x}, {"pool": y + 0.3}, MetricOptions(bootstrap=40))
    lo, hi = shifted.ci["fid"]
    bias = shifted.info["fid_bias"]
    assert 0.1 < bias < shifted.values["fid"]
    assert (lo + hi) / 2 == pytest.approx(shifted.values["fid"] - bias)
    assert lo <= 12 * 0.3**2 <= hi
    same = evaluate_features(["fid"], {"pool": x}, {"pool": y}, MetricOptions(bootstrap=40))
    assert same.ci["fid"][0] == 0.0 < same.ci["fid"][1] < same.values["fid"]
    assert any("outside its bias-corrected interval" in w for w in same.warnings)


def test_sets_too_small_to_halve_get_no_interval_and_a_reason():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g)
    result = evaluate_features(["fid", "precision", "recall"], {"pool": x}, {"pool": y}, MetricOptions(bootstrap=5))
    assert set(result.values) == {"fid", "precision", "recall"} and set(result.ci) == {"fid"}
    assert any("no interval for precision, recall: half of each set is too small" in w for w in result.warnings)


def test_interval_from_statistics_says_it_covers_the_generated_set_only():
    fake, real = small_sets()
    stats = fid.reference_statistics(real["pool"])
    result = evaluate_features(["fid"], fake, None, MetricOptions(bootstrap=5), real_stats=stats)
    assert "fid" in result.ci and any("generated set's sampling only" in w for w in result.warnings)


# ---------------------------------------------------------------- k-NN metrics at equal n


KNN = ["precision", "recall", "density", "coverage"]


def test_knn_metrics_default_to_equal_n_with_a_fixed_subsample():
    """n1 = 1,000 against n2 = 360: the generated set is subsampled to 360 (seeded), which is the
    value of those 360 samples evaluated directly."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1000, 8, generator=g), torch.randn(360, 8, generator=g)
    result = evaluate_features(KNN, {"pool": x}, {"pool": y})
    assert result.info["knn_n"] == 360
    assert not any("computed at n1=" in w for w in result.warnings)
    subset = torch.randperm(1000, generator=torch.Generator().manual_seed(2020))[:360].sort().values
    direct = evaluate_features(KNN, {"pool": x[subset]}, {"pool": y})
    assert result.values == direct.values
    # the reference is subsampled when it is the larger set
    swapped = evaluate_features(KNN, {"pool": y}, {"pool": x})
    assert swapped.info["knn_n"] == 360 and swapped.values != result.values
    assert evaluate_features(["fid"], {"pool": x}, {"pool": y}).info.get("knn_n") is None  # FID uses all


def test_knn_metrics_at_unequal_n_carry_a_warning():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(500, 8, generator=g), torch.randn(360, 8, generator=g)
    options = MetricOptions(knn_equal_n=False)
    result = evaluate_features(["precision", "coverage", "fid"], {"pool": x}, {"pool": y}, options)
    assert "knn_n" not in result.info
    (note,) = [w for w in result.warnings if "computed at n1=500" in w]
    assert "precision" in note and "coverage" in note and "fid" not in note
    same = evaluate_features(["precision"], {"pool": x[:360]}, {"pool": y}, options)
    assert not any("computed at n1=" in w for w in same.warnings)


def test_reference_search_runs_once_for_both_knn_groups(monkeypatch):
    """precision/recall (k = 3) and density/coverage (k = 5) from one search of 6 (+ candidates)
    neighbours of the reference; the values are those of separate evaluations."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g) * 1.1
    separate = {
        **evaluate_features(["precision", "recall"], {"pool": x}, {"pool": y}).values,
        **evaluate_features(["density", "coverage"], {"pool": x}, {"pool": y}).values,
    }
    searched: list[tuple[int, bool]] = []
    original = neighbours.nearest_distances

    def counting(points, m, chunk, upcast=False, rows=None):
        searched.append((m, upcast))
        return original(points, m, chunk, upcast, rows)

    monkeypatch.setattr(neighbours, "nearest_distances", counting)
    joint = evaluate_features(KNN, {"pool": x}, {"pool": y})
    assert joint.values == separate
    shared = (6 + neighbours.EXTRA_CANDIDATES, False)
    # the generated set's own search (k + 1 = 4) and one reference search; no upcast search again
    assert sorted(searched) == [(4, False), shared]
    searched.clear()
    evaluate_features(["precision", "density"], {"pool": x}, {"pool": y}, MetricOptions(bootstrap=2))
    assert searched.count(shared) == 3 and len(searched) == 6  # estimate and two replicates


def test_reranked_radii_equal_a_full_search_and_recheck_unsure_rows(monkeypatch):
    g = torch.Generator().manual_seed(3)
    y = torch.randn(300, 32, generator=g) + 5.0  # norms large against distances: a loose cdist bound
    full = neighbours.kth_nearest_distance(y, 5, 128, upcast=True)
    with neighbours.shared_searches(6):
        assert torch.equal(neighbours.reference_radius(y, 5, 128, upcast=True), full)
        assert torch.equal(neighbours.reference_radius(y, 3, 128), neighbours.kth_nearest_distance(y, 3, 128))
    # with a bound that certifies nothing, every row is searched again, with the same radii
    monkeypatch.setattr(neighbours, "cdist_error_bound", lambda x, d: torch.full((len(x),), float("inf")))
    with neighbours.shared_searches(6):
        assert torch.equal(neighbours.reference_radius(y, 5, 128, upcast=True), full)


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


def fd_inf_case(n: int, seed: int = 1):
    """Gaussian features at d = 128 against population statistics: true FD 0.480 (issue 15)."""
    d = 128
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * (1 + 0.4 / d**0.5) + 0.05  # d (0.05^2 + 0.4^2 / d) = 0.48
    stats = {"mu": torch.zeros(d, dtype=torch.float64), "sigma": torch.eye(d, dtype=torch.float64)}
    return {"pool": x}, stats


def test_fd_inf_is_refused_below_twice_its_smallest_subset():
    """n = 300 at d = 128 gave -1.00 from subsets of 30: now refused, naming the n needed."""
    fake, stats = fd_inf_case(300)
    with pytest.raises(UndefinedMetric, match="at least 616 generated samples at feature dimension 128"):
        evaluate_features(["fd_inf"], fake, None, real_stats=stats)
    # inside a suite: undefined with a warning, the other metrics computed
    result = evaluate_features(["fid", "fd_inf"], fake, None, MetricOptions(on_undefined="warn"), real_stats=stats)
    assert "fd_inf" not in result.values and "fid" in result.values
    assert any("fd_inf needs at least 616" in w for w in result.warnings)


def test_fd_inf_marginal_range_is_flagged_and_never_negative():
    # n = 700: subsets 308..700 (2.4 d is 308); seed 3's line crosses below 0 (-0.13)
    fake, stats = fd_inf_case(700, seed=3)
    result = evaluate_features(["fd_inf"], fake, None, real_stats=stats)
    assert result.info["fd_inf_sizes"][0] == 308
    assert result.info["fd_inf_intercept"] < 0 and result.values["fd_inf"] == 0.0
    assert any("marginal" in w for w in result.warnings) and any("is negative" in w for w in result.warnings)


def test_fd_inf_approaches_the_true_distance_over_the_papers_range():
    fake, stats = fd_inf_case(6000)
    result = evaluate_features(["fid", "fd_inf"], fake, None, real_stats=stats)
    assert result.info["fd_inf_sizes"][0] == 600 and not any("fd_inf" in w for w in result.warnings)
    # FID at n = 6,000 is 1.19; FD-infinity 0.43 against the true 0.480
    assert abs(result.values["fd_inf"] - 0.480) < 0.1 < result.values["fid"] - 0.480
