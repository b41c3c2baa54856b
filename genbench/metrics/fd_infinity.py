"""FD-infinity: FID extrapolated to infinitely many generated samples (Chong & Forsyth 2020,
"Effectively Unbiased FID and Inception Score and where to find them", CVPR).

FID_N is biased upward by roughly c / N. FID is computed on random subsets of the generated set
at ``fd_inf_points`` sizes N, evenly spaced from N_min to N_max = n (the paper's 5,000 to 50,000),
against the full reference statistics; a least-squares line in 1/N,

    FID_N = FD_inf + slope / N,

is extrapolated to 1/N = 0. Opt-in (not part of the default metrics): it costs one covariance
and one symmetric eigendecomposition per point.

The line holds only where N is large against the dimension d: below a few d the covariance
estimate's higher-order terms in d/N bend FID_N away from it and the extrapolation can land far
below the truth, even below 0 (d = 128, true FD 0.48: -0.31 from n = 1,500 with N_min = n / 10).
Chong and Forsyth's smallest subset is 5,000 at d = 2,048, about 2.4 d, so here
N_min = max(n / 10, ceil(2.4 d)), and the fit needs N_max >= 2 N_min (n >= 4.8 d): below that
fd_inf is refused (or left undefined with a warning, ``on_undefined="warn"``) naming the n
needed. A fit over less than the paper's tenfold range of N (n < 24 d) is marked marginal. A
negative intercept is never reported: it is clamped to 0 with a warning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from genbench.errors import UsageError
from genbench.metrics.base import UndefinedMetric
from genbench.metrics.base import (
    INFO_WARNINGS,
    METRICS,
    Metric,
    MetricOptions,
    register_key,
)
from genbench.metrics.fid import (
    features_to_statistics,
    fid_with_reference_factor,
    rank_warning,
    statistics_from_mapping,
    covariance_factor,
)

FD_INF = register_key("fd_inf", False, "FID extrapolated to infinite n, linear in 1/n (Chong & Forsyth 2020)")


# smallest subset per feature dimension (Chong & Forsyth 2020: 5,000 at d = 2,048), the
# shortest range N_max / N_min a fit may span, and the paper's range (50,000 / 5,000)
MIN_SUBSET_PER_DIM = 2.4
MIN_RANGE = 2.0
PAPER_RANGE = 10.0


def smallest_subset(n: int, dim: int) -> int:
    """N_min: a tenth of n, and at least 2.4 d (and 2)."""
    return max(n // 10, math.ceil(MIN_SUBSET_PER_DIM * dim), 2)


def samples_needed(dim: int) -> int:
    """The smallest n for which fd_inf is defined: N_max >= MIN_RANGE * N_min."""
    return max(math.ceil(MIN_RANGE * max(math.ceil(MIN_SUBSET_PER_DIM * dim), 2)), 20)


def fd_inf_sizes(n: int, points: int, dim: int = 1) -> list[int]:
    """Subset sizes: ``points`` values evenly spaced from ``smallest_subset`` to n (duplicates dropped)."""
    if points < 2:
        raise UsageError(f"fd_inf needs at least 2 points (got fd_inf_points={points}).")
    if n < samples_needed(dim):
        raise UndefinedMetric(
            f"fd_inf needs at least {samples_needed(dim)} generated samples at feature dimension {dim} "
            f"(got {n}): its smallest subset must hold {MIN_SUBSET_PER_DIM} d samples (Chong & Forsyth 2020) "
            f"and the largest twice that; generate more samples or drop fd_inf."
        )
    sizes = torch.linspace(smallest_subset(n, dim), n, points, dtype=torch.float64).round().long().unique()
    return sizes.tolist()


def fit_warnings(sizes: list[int], dim: int, value: float) -> list[str]:
    """Notes on a marginal fit range and on a clamped negative intercept."""
    warnings = []
    if sizes[-1] < PAPER_RANGE * sizes[0]:
        warnings.append(
            f"fd_inf: the fit spans N = {sizes[0]}..{sizes[-1]} only (the smallest subset must hold "
            f"{MIN_SUBSET_PER_DIM} d = {math.ceil(MIN_SUBSET_PER_DIM * dim)}); the extrapolation is marginal, "
            f"use n >= {math.ceil(PAPER_RANGE * smallest_subset(0, dim))} for the paper's tenfold range."
        )
    if value < 0:
        warnings.append(
            f"fd_inf: the extrapolated value {value:.4g} is negative (the fit is dominated by noise or curvature); "
            "reported as 0, a distance cannot be negative: the extrapolation is unreliable at this n."
        )
    return warnings


def fit_line_in_inverse_n(sizes: list[int], fids: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of FID_N = intercept + slope / N."""
    inv_n = 1.0 / torch.tensor(sizes, dtype=torch.float64)  # [P]
    design = torch.stack([torch.ones_like(inv_n), inv_n], dim=1)  # [P, 2]
    coef = torch.linalg.lstsq(design, torch.tensor(fids, dtype=torch.float64)[:, None]).solution[:, 0]
    return float(coef[0]), float(coef[1])


def fd_infinity(
    fake: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor, options: MetricOptions
) -> tuple[float, dict]:
    """FD-infinity of generated features [N, D] against reference statistics, with the fit's points."""
    sizes = fd_inf_sizes(len(fake), options.fd_inf_points, fake.shape[1])
    sigma2_factor = covariance_factor(sigma2)
    generator = torch.Generator().manual_seed(options.seed)
    fids = []
    for n in sizes:
        subset = torch.randperm(len(fake), generator=generator)[:n].to(fake.device)
        mu1, sigma1 = features_to_statistics(fake[subset])
        fids.append(max(fid_with_reference_factor(mu1, sigma1, mu2, sigma2, sigma2_factor), 0.0))
    intercept, slope = fit_line_in_inverse_n(sizes, fids)
    return intercept, {"fd_inf_sizes": sizes, "fd_inf_fids": fids, "fd_inf_slope": slope}


def fd_inf_from_statistics(fake, mu2, sigma2, options, n2=None) -> tuple[dict[str, float], dict]:
    if mu2.shape[0] != fake.shape[1]:
        raise UsageError(
            f"generated features have {fake.shape[1]} dimensions but the reference "
            f"{mu2.shape[0]}; use the same feature extractor for both."
        )
    value, info = fd_infinity(fake, mu2, sigma2, options)
    info["fd_inf_intercept"] = value
    info[INFO_WARNINGS] = rank_warning(len(fake), n2, fake.shape[1], metric="fd_inf") + fit_warnings(
        info["fd_inf_sizes"], fake.shape[1], value
    )
    return {FD_INF.key: max(value, 0.0)}, info


def fd_inf_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    mu2, sigma2 = features_to_statistics(real)
    return fd_inf_from_statistics(fake, mu2, sigma2, options, n2=len(real))


def fd_inf_compute_from_stats(
    fake: torch.Tensor, stats: Mapping, options: MetricOptions
) -> tuple[dict[str, float], dict]:
    mu2, sigma2 = statistics_from_mapping(stats, fake.device)
    return fd_inf_from_statistics(fake, mu2, sigma2, options, n2=stats.get("n"))


METRICS.register(
    "fd_inf",
    Metric(
        name="fd_inf",
        keys=(FD_INF.key,),
        needs="pool",
        needs_reference=True,
        compute=fd_inf_compute,
        compute_from_stats=fd_inf_compute_from_stats,
        default=False,
        intervals=False,  # an extrapolation from subsets: half-sampling would refit on halves
        description=FD_INF.description,
    ),
)
