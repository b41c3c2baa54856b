"""Confidence intervals by half-sampling, and checks for comparing results across sample sizes.

The percentile bootstrap (resampling the generated set with replacement) does not cover: a
resample duplicates about a third of the samples, which biases FID and KID upward and shrinks
generated k-NN radii (duplicates sit at distance 0), so recall and coverage replicates drop, and
the reference set, random too, is held fixed. Measured on Gaussian features, its 95% intervals
covered the population FID in none of 200 replications.

Here each replicate draws half of each set without replacement (r = n // 2 of n; the reference
too when its features are given) and recomputes the metrics on the halves: m-out-of-n
subsampling with m = n / 2, i.e. the delete-d jackknife with d = n - r (Shao & Wu 1989, "A General
Theory for Jackknife Variance Estimation", Ann. Statist.). Its variance estimate, with the
finite-population rescaling,

    v = r / d * mean_b (theta_b - mean(theta))^2,

is consistent for smooth statistics and, unlike the bootstrap's, sees no duplicated samples. The
interval is theta_hat -/+ z_(1 - alpha/2) sqrt(v).

FID is biased upward by c1 / n1 + c2 / n2 (Chong & Forsyth 2020), and the issue is its population
value: halving both sets doubles that bias, so mean(theta_b) - theta_hat estimates it times d / r,
and the interval for FID is centred on the bias-corrected estimate theta_hat - b_hat (keys
registered with ``bias_corrected=True``). KID is unbiased; precision, recall, density, coverage
and IS are defined at the sample sizes used, and their intervals cover their expectation there.
Coverage measured in tests/test_bootstrap_coverage.py and reported in the README.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from statistics import NormalDist

import torch

from genbench.metrics.base import MetricResult

CI_METHOD = "half-sampling"  # recorded with every interval (result.info["ci_method"])


def half_indices(n: int, generator: torch.Generator) -> torch.Tensor:
    """n // 2 distinct indices of range(n), sorted: [n // 2]."""
    return torch.randperm(n, generator=generator)[: n // 2].sort().values


def jackknife_factor(n: int) -> float:
    """r / d for r = n // 2 kept and d = n - r deleted (1 for even n)."""
    r = n // 2
    return r / (n - r)


def half_sampling_interval(
    estimate: float, replicates: torch.Tensor, n: int, level: float, bias_corrected: bool
) -> tuple[tuple[float, float], float]:
    """(interval, bias estimate) from the half-sample replicates [B] of a statistic estimated at n.

    With ``bias_corrected`` the interval is centred on estimate - bias, bias = (mean - estimate) r / d
    (an O(1/n) bias doubles when n halves); otherwise bias is reported as 0 and not used.
    """
    theta = replicates.detach().double().cpu()
    factor = jackknife_factor(n)
    se = float(((theta - theta.mean()) ** 2).mean() * factor) ** 0.5
    bias = float(theta.mean() - estimate) * factor if bias_corrected else 0.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre = estimate - bias
    return (centre - z * se, centre + z * se), bias


def interval_warning(key: str, value: float, interval: tuple[float, float], bias: float) -> list[str]:
    """A note when the point estimate lies outside its own (bias-corrected) interval."""
    lo, hi = interval
    if lo <= value <= hi:
        return []
    return [
        f"{key}: the estimate {value:.4g} lies outside its bias-corrected interval [{lo:.4g}, {hi:.4g}]: "
        f"at this n it is biased by about {bias:+.3g} (c/n, Chong & Forsyth 2020); the interval is for the "
        "population value."
    ]


def _record_n(record: object) -> tuple[object, object, object]:
    info: Mapping = record.info if isinstance(record, MetricResult) else record  # type: ignore[assignment]
    n_fake = info.get("n1", info.get("n_fake"))
    n_real = info.get("n2", info.get("n_real"))
    return n_fake, n_real, info.get("kid_subset_size")


def warn_if_different_n(records: Iterable[MetricResult | Mapping]) -> list[str]:
    """Warnings for results that are compared although computed at different sample sizes.

    FID, KID (through its subset size), precision/recall and density/coverage all depend on
    n: FID is biased upward by roughly c/n (Chong & Forsyth 2020), and k-NN radii shrink as
    n grows. ``records`` are MetricResults or mappings holding ``n1``/``n_fake``,
    ``n2``/``n_real`` and optionally ``kid_subset_size``.
    """
    rows = [_record_n(r) for r in records]
    warnings = []
    for position, what in enumerate(("generated samples (n1)", "reference samples (n2)", "KID subset sizes")):
        seen = sorted({row[position] for row in rows if row[position] is not None}, key=str)
        if len(seen) > 1:
            warnings.append(
                f"results compared at different numbers of {what}: {', '.join(map(str, seen))}; "
                "FID, KID and k-NN metrics depend on n, so compare at equal n (or use fd_inf for FID)."
            )
    return warnings

