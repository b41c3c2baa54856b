"""Intervals that cover: the nominal 95% half-sampling interval (genbench/metrics/bootstrap.py)
checked against known population values on simulated Gaussian features.

Generated features x ~ N(delta 1, s^2 I), reference y ~ N(0, I) in d dimensions, both sets of n
samples, 200 replications at the default settings (95%, 50 replicates: the suites' bootstrap).
FID's population value is closed form, d (delta^2 + (s - 1)^2); the estimate at n is biased
upward by O(d / n), which the interval corrects. KID is unbiased, so its population value is its
expectation; precision, recall, density and coverage are defined at the n used, so their target
is the expectation at that n, estimated by the mean over the replications (its error, sd / sqrt
200, is a small fraction of the interval's half-width). A coverage between 90% and 99% passes
(200 draws of a 95% interval: standard deviation 1.5%). The old percentile bootstrap covered
the population FID in 0 of 200 replications at n = 1,000, d = 16.
"""

from __future__ import annotations

import pytest
import torch

from genbench.metrics import MetricOptions, evaluate_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPLICATIONS = 200
DELTA, SCALE = 0.1, 1.1


def population_fid(d: int) -> float:
    return d * (DELTA**2 + (SCALE - 1) ** 2)


def coverages(names: list[str], n: int, d: int, targets: dict[str, float] | None = None) -> dict[str, float]:
    """Fraction of REPLICATIONS whose interval holds the target, per key with an interval."""
    options = MetricOptions(bootstrap=50)
    estimates: dict[str, list[float]] = {}
    intervals: dict[str, list[tuple[float, float]]] = {}
    for r in range(REPLICATIONS):
        g = torch.Generator().manual_seed(1000 + r)
        x = torch.randn(n, d, generator=g, dtype=torch.float64) * SCALE + DELTA
        y = torch.randn(n, d, generator=g, dtype=torch.float64)
        result = evaluate_features(names, {"pool": x}, {"pool": y}, options)
        for key, ci in result.ci.items():
            estimates.setdefault(key, []).append(result.values[key])
            intervals.setdefault(key, []).append(ci)
    out = {}
    for key, cis in intervals.items():
        target = (targets or {}).get(key, sum(estimates[key]) / len(estimates[key]))
        out[key] = sum(lo <= target <= hi for lo, hi in cis) / len(cis)
    return out


def test_fid_interval_covers_the_population_fid():
    # n = 400, d = 8: the estimate's mean bias (about 0.05) is comparable to the interval's half-width
    cover = coverages(["fid"], 400, 8, {"fid": population_fid(8)})
    assert 0.90 <= cover["fid"] <= 0.99, cover


@pytest.mark.slow
def test_kid_and_knn_intervals_cover_their_expectation():
    cover = coverages(["kid", "precision", "recall", "density", "coverage"], 400, 8)
    assert set(cover) == {"kid_mean", "precision", "recall", "density", "coverage"}
    assert all(0.90 <= c <= 0.99 for c in cover.values()), cover


if __name__ == "__main__":  # the README's coverage table: python tests/test_bootstrap_coverage.py N D [METRICS]
    import sys

    torch.set_num_threads(1)
    n, d = int(sys.argv[1]), int(sys.argv[2])
    everything = ["fid", "kid", "precision", "recall", "density", "coverage"]
    names = sys.argv[3].split(",") if len(sys.argv) > 3 else everything
    print(f"n = {n}, d = {d}, {REPLICATIONS} replications:", coverages(names, n, d, {"fid": population_fid(d)}))
