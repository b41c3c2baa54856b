"""Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium", NeurIPS).

    FID = ||mu_1 - mu_2||^2 + tr(sigma_1) + tr(sigma_2) - 2 tr((sigma_1 sigma_2)^(1/2))

Stages: ``features_to_statistics`` (mean, covariance with ddof 1, float64) and
``statistics_to_fid``. The trace of the matrix square root is taken in a symmetric form: with
sigma_2 = F F^T (Cholesky; the symmetric square root when sigma_2 is rank-deficient),
sigma_1 sigma_2 is similar to F^T sigma_1 F, so tr((sigma_1 sigma_2)^(1/2)) is the sum of the
square roots of one ``eigvalsh``; where a set has no more samples N than dimensions and its features
are at hand, F is its centred features (D x N) and the eigenproblem is N x N. At D = 2048 that is about 3x faster than the general ``eigvals``
of sigma_1 @ sigma_2 that torch-fidelity 0.4.0 takes (one thread: 6.7 s against 19.9 s), and free of
the imaginary round-off that makes scipy's ``sqrtm`` fail. It equals torch-fidelity's value to
round-off (tests/test_metrics_parity.py: relative 1e-6, rank-deficient covariances included).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.metrics.base import (
    INFO_WARNINGS,
    METRICS,
    Metric,
    MetricOptions,
    register_key,
)

FID = register_key(
    "fid", False, "Fréchet Inception Distance (Heusel et al. 2017)", bias_corrected=True, bounds=(0.0, None)
)


def features_to_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, D] -> (mu [D], sigma [D, D]) in float64 (covariance with ddof 1)."""
    x = features.to(torch.float64)
    mu = x.mean(dim=0)
    # sigma = (x - mu)^T (x - mu) / (N - 1)
    xc = x - mu  # [N, D]
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return mu, sigma


def reference_statistics(features: torch.Tensor) -> dict:
    """What a reference statistics file holds: {"mu" [D], "sigma" [D, D] float64 on the CPU, "n"}."""
    mu, sigma = features_to_statistics(features)
    return {"mu": mu.cpu(), "sigma": sigma.cpu(), "n": int(features.shape[0])}


def statistics_to_fid(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """FID of two Gaussians (mu [D], sigma [D, D]); may be a tiny negative number from round-off."""
    mu1, sigma1, mu2, sigma2 = (torch.as_tensor(t, dtype=torch.float64) for t in (mu1, sigma1, mu2, sigma2))
    mu2, sigma2 = mu2.to(mu1.device), sigma2.to(mu1.device)
    return fid_with_reference_factor(mu1, sigma1, mu2, sigma2, covariance_factor(sigma2))


def clamp_fid(value: float) -> tuple[float, list[str]]:
    """FID is a squared distance: a negative value is round-off; clamp it to 0 and say so."""
    if value >= 0:
        return value, []
    return 0.0, [f"FID of {value:.3g} (round-off of nearly identical statistics) clamped to 0."]


def covariance_factor(sigma: torch.Tensor) -> torch.Tensor:
    """F [D, D] with sigma = F F^T: the Cholesky factor when sigma is positive definite (n > D),
    else (rank-deficient sigma) the symmetric square root from ``eigh``."""
    sigma = (sigma + sigma.T) / 2
    factor, info = torch.linalg.cholesky_ex(sigma)  # sigma = L L^T
    return factor if int(info) == 0 else symmetric_sqrt(sigma)


def symmetric_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """Square root [D, D] of a symmetric positive semi-definite matrix, via its eigenvectors."""
    # sigma = V diag(lambda) V^T  ->  sigma^(1/2) = V diag(sqrt(max(lambda, 0))) V^T
    lam, v = torch.linalg.eigh((sigma + sigma.T) / 2)
    return (v * lam.clamp_min(0).sqrt()) @ v.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2_factor: torch.Tensor) -> float:
    """tr((sigma1 sigma2)^(1/2)) with sigma2 = F F^T (``covariance_factor``).

    sigma1 sigma2 = sigma1 F F^T is similar to F^T sigma1 F (symmetric PSD): the same eigenvalues,
    so the trace of the square root is the sum of the square roots of one ``eigvalsh``. The factor
    of a fixed reference is reused, which makes interval replicates and FD-infinity points cheap;
    the product is symmetrised, and its eigenvalues are clamped at 0 (round-off).
    """
    m = sigma2_factor.T @ sigma1 @ sigma2_factor  # [D, D], symmetric PSD
    return float(torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum())


def fid_with_reference_factor(mu1, sigma1, mu2, sigma2, sigma2_factor) -> float:
    """FID given the reference's factor sigma2 = F F^T (``covariance_factor``); what ``statistics_to_fid`` computes."""
    diff = mu1 - mu2
    return float(diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2_factor))


def features_to_factor(features: torch.Tensor) -> torch.Tensor:
    """F [D, N] with sigma = F F^T (ddof 1): the centred features / sqrt(N - 1), in float64; no decomposition."""
    x = features.to(torch.float64)
    return (x - x.mean(dim=0)).T / (x.shape[0] - 1) ** 0.5


def features_to_fid(mu1, sigma1, mu2, sigma2, fake: torch.Tensor | None = None, real: torch.Tensor | None = None) -> float:
    """``statistics_to_fid``, faster where a set with no more rows N than dimensions D is at hand: its thin factor
    F [D, N] (``features_to_factor``) makes the eigenproblem N x N (tr((sigma_1 sigma_2)^(1/2)) is symmetric in
    the two sets); the same value up to round-off (the D - N + 1 zero eigenvalues are not computed at all)."""
    d = sigma1.shape[0]
    thin = [(len(x), x, other) for x, other in ((fake, sigma2), (real, sigma1)) if x is not None and len(x) <= d]
    if not thin:
        return fid_with_reference_factor(mu1, sigma1, mu2, sigma2, covariance_factor(sigma2))
    _, x, other = min(thin, key=lambda c: c[0])
    diff = mu1 - mu2
    return float(diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(other, features_to_factor(x)))


def fid_replicate(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    """FID of an interval replicate (half of each set), by the same symmetric form as the value."""
    mu1, sigma1 = features_to_statistics(fake)
    mu2, sigma2 = features_to_statistics(real)
    return {FID.key: max(features_to_fid(mu1, sigma1, mu2, sigma2, fake, real), 0.0)}, {}


def fid_replicate_from_stats(
    fake: torch.Tensor, stats: Mapping, options: MetricOptions
) -> tuple[dict[str, float], dict]:
    mu1, sigma1 = features_to_statistics(fake)
    mu2, sigma2 = statistics_from_mapping(stats, fake.device)
    return {FID.key: max(features_to_fid(mu1, sigma1, mu2, sigma2, fake), 0.0)}, {}


def rank_warning(n1: int, n2: int | None, dim: int, metric: str = "FID") -> list[str]:
    """A warning when fewer samples than feature dimensions make a covariance rank-deficient."""
    small = [f"{name}={n}" for name, n in (("n1", n1), ("n2", n2)) if n is not None and n < dim]
    if not small:
        return []
    return [
        f"{metric}: {', '.join(small)} is smaller than the feature dimension {dim}: the covariance is "
        f"rank-deficient and FID is biased and unstable; use at least {dim} samples (50,000 is standard)."
    ]


def statistics_from_mapping(stats: Mapping, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference statistics {"mu": [D], "sigma": [D, D]} (numpy or torch) -> float64 tensors."""
    if not isinstance(stats, Mapping) or "mu" not in stats or "sigma" not in stats:
        raise UsageError('reference statistics must hold "mu" and "sigma"; recompute the stats file.')
    mu = torch.as_tensor(np.asarray(stats["mu"]) if not torch.is_tensor(stats["mu"]) else stats["mu"])
    sigma = torch.as_tensor(np.asarray(stats["sigma"]) if not torch.is_tensor(stats["sigma"]) else stats["sigma"])
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise UsageError(
            f"reference statistics have mu {tuple(mu.shape)} and sigma {tuple(sigma.shape)}; "
            "expected [D] and [D, D]: recompute the stats file."
        )
    return mu.to(device, torch.float64), sigma.to(device, torch.float64)


def fid_from_reference_statistics(fake, mu2, sigma2, options, n2=None, real=None) -> tuple[dict[str, float], dict]:
    """FID of generated features [N, D] against reference statistics (and features ``real``, when at hand), with warnings."""
    if mu2.shape[0] != fake.shape[1]:
        raise UsageError(
            f"generated features have {fake.shape[1]} dimensions but the reference statistics "
            f"{mu2.shape[0]}; use the same feature extractor for both."
        )
    mu1, sigma1 = features_to_statistics(fake)
    value, warnings = clamp_fid(features_to_fid(mu1, sigma1, mu2.to(mu1.device), sigma2.to(mu1.device), fake, real))
    return {FID.key: value}, {INFO_WARNINGS: rank_warning(len(fake), n2, fake.shape[1]) + warnings}


def fid_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    mu2, sigma2 = features_to_statistics(real)
    return fid_from_reference_statistics(fake, mu2, sigma2, options, n2=len(real), real=real)


def fid_compute_from_stats(fake: torch.Tensor, stats: Mapping, options: MetricOptions) -> tuple[dict[str, float], dict]:
    mu2, sigma2 = statistics_from_mapping(stats, fake.device)
    n2 = stats.get("n")
    return fid_from_reference_statistics(fake, mu2, sigma2, options, n2=int(n2) if n2 is not None else None)


METRICS.register(
    "fid",
    Metric(
        name="fid",
        keys=(FID.key,),
        needs="pool",
        needs_reference=True,
        compute=fid_compute,
        compute_from_stats=fid_compute_from_stats,
        replicate=fid_replicate,
        replicate_from_stats=fid_replicate_from_stats,
        description=FID.description,
    ),
)
