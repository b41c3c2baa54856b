"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", ICLR).

KID is the unbiased estimate of the squared maximum mean discrepancy with the polynomial
kernel k(x, y) = (gamma x.y + coef0)^degree, gamma = 1/d, coef0 = 1, degree 3, averaged over
``kid_subsets`` random subsets of ``kid_subset_size`` samples of each set. Subsets are drawn
exactly as torch-fidelity 0.4.0 draws them (numpy ``RandomState(seed)``, for each subset one
``choice(n1, m, replace=False)`` then one ``choice(n2, m, replace=False)``), so the numbers agree.

Two equivalent ways to get the per-subset kernel sums: ``pair_sums_direct`` builds each
m x m kernel (cost ~ subsets * m^2 * d); ``pair_sums_gram`` writes each subset as a count
vector c and sums c^T K c over blocks of the full kernel matrix (cost ~ n^2 * d, once for all
subsets). The cheaper one is chosen from their flop counts.
"""

from __future__ import annotations

from collections.abc import Callable

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

# the estimate may be negative (it is unbiased), the population MMD^2 is not: intervals start at 0
KID_MEAN = register_key(
    "kid_mean", False, "Kernel Inception Distance, mean over subsets (Bińkowski et al. 2018)", bounds=(0.0, None)
)
KID_STD = register_key("kid_std", False, "Kernel Inception Distance, standard deviation over subsets")

PairSums = Callable[..., torch.Tensor]


def kid_subset_size(n1: int, n2: int, options: MetricOptions) -> int:
    """The subset size used: the configured one, or fewer when a set is smaller."""
    m = min(n1, n2, options.kid_subset_size)
    if m < 2:
        raise UsageError(f"KID needs at least 2 samples in each set (got n1={n1}, n2={n2}); generate more samples.")
    return m


def kid_subset_indices(n1: int, n2: int, subsets: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Subset indices ([subsets, size] into set 1, [subsets, size] into set 2), torch-fidelity's draws."""
    rng = np.random.RandomState(seed)
    rows_1, rows_2 = [], []
    for _ in range(subsets):
        rows_1.append(rng.choice(n1, size, replace=False))
        rows_2.append(rng.choice(n2, size, replace=False))
    return torch.from_numpy(np.stack(rows_1)), torch.from_numpy(np.stack(rows_2))


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, options: MetricOptions) -> torch.Tensor:
    """k(x, y) = (gamma x.y + coef0)^degree for x [N, D], y [M, D] -> [N, M]."""
    gamma = options.kid_gamma if options.kid_gamma is not None else 1.0 / x.shape[1]
    # in place: one [N, M] buffer
    return (x @ y.T).mul_(gamma).add_(options.kid_coef0).pow_(options.kid_degree)


def kernel_diagonal(x: torch.Tensor, options: MetricOptions) -> torch.Tensor:
    """k(x_i, x_i) for x [N, D] -> [N]."""
    gamma = options.kid_gamma if options.kid_gamma is not None else 1.0 / x.shape[1]
    return ((x * x).sum(dim=1) * gamma + options.kid_coef0) ** options.kid_degree


def pair_sums_direct(x, y, rows_x, rows_y, options, same: bool) -> torch.Tensor:
    """Sum of k over pairs (x[rows_x[s]], y[rows_y[s]]) for each subset s -> [S].

    With ``same`` (y is x and rows_y is rows_x) the diagonal pairs (p, p) are left out.
    """
    sums = torch.empty(len(rows_x), dtype=torch.float64, device=x.device)
    rows_x, rows_y = rows_x.to(x.device), rows_y.to(x.device)
    for s in range(len(rows_x)):
        k = polynomial_kernel(x[rows_x[s]], y[rows_y[s]], options)  # [m, m]
        sums[s] = k.sum() - k.diagonal().sum() if same else k.sum()
    return sums


def subset_counts(rows: torch.Tensor, n: int, device) -> torch.Tensor:
    """Subsets as count vectors: rows [S, m] of indices into range(n) -> [S, n] float64."""
    rows = rows.to(device)
    counts = torch.zeros(rows.shape[0], n, dtype=torch.float64, device=device)
    return counts.scatter_add_(1, rows, torch.ones_like(rows, dtype=torch.float64))


def pair_sums_gram(x, y, rows_x, rows_y, options, same: bool) -> torch.Tensor:
    """Same sums as ``pair_sums_direct``, as c_x^T K c_y over chunk x chunk blocks of K."""
    c = options.chunk_size
    cx = subset_counts(rows_x, len(x), x.device)  # [S, Nx]
    cy = cx if same else subset_counts(rows_y, len(y), x.device)  # [S, Ny]
    total = torch.zeros(len(rows_x), dtype=torch.float64, device=x.device)
    for i0 in range(0, len(x), c):
        # with same, K is symmetric: blocks above the diagonal count twice, those below not at all
        for j0 in range(i0 if same else 0, len(y), c):
            k = polynomial_kernel(x[i0 : i0 + c], y[j0 : j0 + c], options)  # [bi, bj]
            weight = 2.0 if same and j0 > i0 else 1.0
            total += weight * ((cx[:, i0 : i0 + c] @ k) * cy[:, j0 : j0 + c]).sum(dim=1)
    if same:
        # leave out the pairs (p, p): sum_p k(x_p, x_p)
        total -= cx @ kernel_diagonal(x, options)
    return total


def choose_pair_sums(n1: int, n2: int, dim: int, m: int, options: MetricOptions) -> PairSums:
    """The cheaper of the direct and the Gram computation, from their flop counts (in units of 2 dim)."""
    subsets = options.kid_subsets
    # direct: one m x m kernel per subset for x-x, x-y and y-y
    direct = m * m * 3 * subsets
    # gram: the kernel blocks once (half of x-x and y-y by symmetry) ...
    kernel = n1 * n1 / 2 + n1 * n2 + n2 * n2 / 2
    # ... plus the count-vector products, 2 S per kernel entry
    counts = subsets * kernel / dim
    return pair_sums_gram if kernel + counts < direct else pair_sums_direct


def mmd2_unbiased(xx: torch.Tensor, yy: torch.Tensor, xy: torch.Tensor, m: int) -> torch.Tensor:
    """Unbiased MMD^2 from off-diagonal sums xx, yy and the cross sum xy of m x m kernels: [S]."""
    return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def subset_mmd2(x, y, rows_x, rows_y, yy, pair_sums: PairSums, options) -> torch.Tensor:
    """MMD^2 [S] of subsets rows_x of x against rows_y of y, given the y-y sums yy [S]."""
    xx = pair_sums(x, x, rows_x, rows_x, options, same=True)
    xy = pair_sums(x, y, rows_x, rows_y, options, same=False)
    return mmd2_unbiased(xx, yy, xy, rows_x.shape[1])


def kid_features_to_metric(
    fake: torch.Tensor, real: torch.Tensor, options: MetricOptions
) -> tuple[dict[str, float], dict]:
    """KID mean and std over subsets (torch-fidelity's definition), in float64 on the features' device."""
    x, y = fake.to(torch.float64), real.to(torch.float64)
    n1, n2 = len(x), len(y)
    m = kid_subset_size(n1, n2, options)
    rows_x, rows_y = kid_subset_indices(n1, n2, options.kid_subsets, m, options.seed)
    pair_sums = choose_pair_sums(n1, n2, x.shape[1], m, options)
    yy = pair_sums(y, y, rows_y, rows_y, options, same=True)
    mmd = subset_mmd2(x, y, rows_x, rows_y, yy, pair_sums, options)  # [subsets]
    values = {KID_MEAN.key: float(mmd.mean()), KID_STD.key: float(mmd.std(correction=0))}
    info: dict = {
        "kid_subset_size": m,
        "kid_subsets": options.kid_subsets,
        "kid_method": pair_sums.__name__.removeprefix("pair_sums_"),
    }
    info[INFO_WARNINGS] = (
        [
            f"KID subset size reduced from {options.kid_subset_size} to {m} (n1={n1}, n2={n2}); "
            "KID is comparable only at equal subset size."
        ]
        if m < options.kid_subset_size
        else []
    )
    return values, info


METRICS.register(
    "kid",
    Metric(
        name="kid",
        keys=(KID_MEAN.key, KID_STD.key),
        needs="pool",
        needs_reference=True,
        compute=kid_features_to_metric,
        description=KID_MEAN.description,
    ),
)
