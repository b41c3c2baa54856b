"""FD-infinity: FID extrapolated to infinitely many generated samples (Chong & Forsyth 2020,
"Effectively Unbiased FID and Inception Score and where to find them", CVPR).

FID_N is biased upward by roughly c / N. FID is computed on random subsets of the generated set
at ``fd_inf_points`` sizes N, evenly spaced from N_max / 10 to N_max (the paper's 5,000 to
50,000), against the full reference statistics; a least-squares line in 1/N,

    FID_N = FD_inf + slope / N,

is extrapolated to 1/N = 0. Opt-in (not part of the default metrics): it costs one covariance
and one symmetric eigendecomposition per point.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from genbench.errors import UsageError
from genbench.metrics.base import (
    INFO_WARNINGS,
    METRICS,
    Metric,
    MetricOptions,
    register_key,
)
from genbench.metrics.fid import (
    features_to_statistics,
    fid_with_reference_sqrt,
    rank_warning,
    statistics_from_mapping,
    symmetric_sqrt,
)

FD_INF = register_key("fd_inf", False, "FID extrapolated to infinite n, linear in 1/n (Chong & Forsyth 2020)")


def fd_inf_sizes(n: int, points: int) -> list[int]:
    """Subset sizes: ``points`` values evenly spaced from n // 10 to n (duplicates dropped)."""
    if points < 2 or n // 10 < 2:
        raise UsageError(f"fd_inf needs at least 20 generated samples and 2 points (got n={n}, points={points}).")
    sizes = torch.linspace(n // 10, n, points, dtype=torch.float64).round().long().unique()
    return sizes.tolist()


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
    sizes = fd_inf_sizes(len(fake), options.fd_inf_points)
    sigma2_sqrt = symmetric_sqrt(sigma2)
    generator = torch.Generator().manual_seed(options.seed)
    fids = []
    for n in sizes:
        subset = torch.randperm(len(fake), generator=generator)[:n].to(fake.device)
        mu1, sigma1 = features_to_statistics(fake[subset])
        fids.append(max(fid_with_reference_sqrt(mu1, sigma1, mu2, sigma2, sigma2_sqrt), 0.0))
    intercept, slope = fit_line_in_inverse_n(sizes, fids)
    return intercept, {"fd_inf_sizes": sizes, "fd_inf_fids": fids, "fd_inf_slope": slope}


def fd_inf_from_statistics(fake, mu2, sigma2, options, n2=None) -> tuple[dict[str, float], dict]:
    if mu2.shape[0] != fake.shape[1]:
        raise UsageError(
            f"generated features have {fake.shape[1]} dimensions but the reference "
            f"{mu2.shape[0]}; use the same feature extractor for both."
        )
    value, info = fd_infinity(fake, mu2, sigma2, options)
    info[INFO_WARNINGS] = rank_warning(info["fd_inf_sizes"][0], n2, fake.shape[1], metric="fd_inf (smallest subset)")
    return {FD_INF.key: value}, info


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
        description=FD_INF.description,
    ),
)
