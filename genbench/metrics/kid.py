"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", ICLR).

KID is the unbiased estimate of the squared maximum mean discrepancy with the polynomial
kernel k(x, y) = (gamma x.y + coef0)^degree, gamma = 1/d, coef0 = 1, degree 3, averaged over
``kid_subsets`` random subsets of ``kid_subset_size`` samples of each set. Subsets are drawn
exactly as torch-fidelity 0.4.0 draws them (numpy ``RandomState(seed)``, for each subset one
``choice(n1, m, replace=False)`` then one ``choice(n2, m, replace=False)``), so the numbers agree.

Two equivalent ways to get the per-subset kernel sums: ``pair_sums_direct`` builds each
m x m kernel (cost ~ subsets * m^2 * d); ``pair_sums_gram`` writes each subset as a count
vector c and sums c^T K c over blocks of the full kernel matrix (cost ~ n^2 * d, once for all
subsets and bootstrap replicates). The cheaper one is chosen from their flop counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.metrics.base import (
    INFO_REPLICATES,
    INFO_WARNINGS,
    METRICS,
    Metric,
    MetricOptions,
    register_key,
)
from genbench.metrics.bootstrap import iter_resample_indices

KID_MEAN = register_key("kid_mean", False, "Kernel Inception Distance, mean over subsets (Bińkowski et al. 2018)")
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


def choose_pair_sums(n1: int, n2: int, dim: int, m: int, replicates: int, options: MetricOptions) -> PairSums:
    """The cheaper of the direct and the Gram computation, from their flop counts (in units of 2 dim)."""
    subsets = options.kid_subsets
    s_all = subsets * (1 + replicates)
    # direct: one m x m kernel per subset for x-x and x-y, per reference subset for y-y
    direct = m * m * (2 * s_all + subsets)
    # gram: kernel blocks once per pass over the subsets (half of x-x and y-y by symmetry) ...
    passes = 1 + math.ceil(subsets * replicates / replicate_rows(n1, n2, subsets, options))
    kernel = (n1 * n1 / 2 + n1 * n2) * passes + n2 * n2 / 2
    # ... plus the count-vector products, 2 S per kernel entry
    counts = (s_all * (n1 * n1 / 2 + n1 * n2) + subsets * n2 * n2 / 2) / dim
    return pair_sums_gram if kernel + counts < direct else pair_sums_direct


def replicate_rows(n1: int, n2: int, subsets: int, options: MetricOptions) -> int:
    """Subset rows per pass over replicates, so that count matrices stay within chunk_size^2 entries."""
    per_group = max(1, options.chunk_size * options.chunk_size // (max(n1, n2) * subsets))
    return per_group * subsets


def mmd2_unbiased(xx: torch.Tensor, yy: torch.Tensor, xy: torch.Tensor, m: int) -> torch.Tensor:
    """Unbiased MMD^2 from off-diagonal sums xx, yy and the cross sum xy of m x m kernels: [S]."""
    return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def subset_mmd2(x, y, rows_x, rows_y, yy, pair_sums: PairSums, options) -> torch.Tensor:
    """MMD^2 [S] of subsets rows_x of x against rows_y of y, given the y-y sums yy [S]."""
    xx = pair_sums(x, x, rows_x, rows_x, options, same=True)
    xy = pair_sums(x, y, rows_x, rows_y, options, same=False)
    return mmd2_unbiased(xx, yy, xy, rows_x.shape[1])


def kid_replicates(x, y, rows_x, rows_y, yy, pair_sums: PairSums, options) -> torch.Tensor:
    """KID mean of each bootstrap resample of x (the subsets index into the resample): [B]."""
    per_group = replicate_rows(len(x), len(y), rows_x.shape[0], options) // rows_x.shape[0]
    means, group = [], []
    for index in iter_resample_indices(len(x), options):
        group.append(index[rows_x])  # resample positions -> original rows, [S, m]
        if len(group) == per_group:
            means.append(_group_means(x, y, group, rows_y, yy, pair_sums, options))
            group = []
    if group:
        means.append(_group_means(x, y, group, rows_y, yy, pair_sums, options))
    return torch.cat(means)


def _group_means(x, y, group, rows_y, yy, pair_sums, options) -> torch.Tensor:
    rows = torch.cat(group)  # [G * S, m]
    mmd = subset_mmd2(x, y, rows, rows_y.repeat(len(group), 1), yy.repeat(len(group)), pair_sums, options)
    return mmd.view(len(group), -1).mean(dim=1)  # [G]


def kid_features_to_metric(
    fake: torch.Tensor, real: torch.Tensor, options: MetricOptions
) -> tuple[dict[str, float], dict]:
    """KID mean and std over subsets (torch-fidelity's definition), in float64 on the features' device."""
    x, y = fake.to(torch.float64), real.to(torch.float64)
    n1, n2 = len(x), len(y)
    m = kid_subset_size(n1, n2, options)
    rows_x, rows_y = kid_subset_indices(n1, n2, options.kid_subsets, m, options.seed)
    pair_sums = choose_pair_sums(n1, n2, x.shape[1], m, options.bootstrap, options)
    # the reference subsets never change, so their sums serve every replicate
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
    if options.bootstrap:
        info[INFO_REPLICATES] = {KID_MEAN.key: kid_replicates(x, y, rows_x, rows_y, yy, pair_sums, options)}
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
