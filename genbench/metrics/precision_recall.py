"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall
Metric for Assessing Generative Models", NeurIPS).

Each set's manifold is the union of balls around its samples with the distance to the k-th
nearest neighbour (k = 3) as radius. Precision is the fraction of generated samples inside the
real manifold; recall the fraction of real samples inside the generated manifold. Conventions
of torch-fidelity 0.4.0's ``prc_features_to_metric``: generated set first, radii from the
(k+1)-th smallest distance counting the sample itself, membership with <=.

Bootstrap: the real radii and, for each generated sample, whether it lies in the real manifold
are fixed, so a resample's precision is a weighted mean. Recall needs the generated radii inside
the resample; they come from each generated sample's L nearest neighbours (L = 8 (k+1)), and the
(real, generated) pairs closer than the L-th neighbour distance are kept from the one pass, so a
replicate costs O(N L) instead of two passes over N^2 distances. A replicate whose radii need more
than L neighbours (very rare) is recomputed from scratch.
"""

from __future__ import annotations

import torch

from genbench.metrics import neighbours
from genbench.metrics.base import (
    INFO_REPLICATES,
    MetricOptions,
    register_group,
    register_key,
)
from genbench.metrics.bootstrap import iter_resample_indices, resample_counts
from genbench.metrics.neighbours import (
    as_distance_dtype,
    check_neighbourhood,
    cross_balls,
    kth_nearest_distance,
    nearest_distances,
    resampled_radii,
)

PRECISION = register_key("precision", True, "improved precision, k-NN balls (Kynkäänniemi et al. 2019)")
RECALL = register_key("recall", True, "improved recall, k-NN balls (Kynkäänniemi et al. 2019)")


def neighbour_list_length(k: int, n: int) -> int:
    """Neighbours kept per generated sample for bootstrap radii (a resample misses ~37% of them)."""
    return min(n, 8 * (k + 1))


def recall_of(fake: torch.Tensor, real: torch.Tensor, k: int, chunk: int) -> float:
    """Fraction of real samples inside the generated manifold (recomputed from scratch)."""
    fake_radius = kth_nearest_distance(fake, k, chunk)
    balls = cross_balls(real, fake, None, chunk, fake_radius=fake_radius)
    return float(balls.in_fake_balls.double().mean())


def precision_recall(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[float, float]:
    """(precision, recall) of generated features [N1, D] against real features [N2, D]."""
    k, chunk = options.prc_k, options.chunk_size
    fake, real = as_distance_dtype(fake), as_distance_dtype(real)
    check_neighbourhood(min(len(fake), len(real)), k, "precision/recall")
    real_radius = kth_nearest_distance(real, k, chunk)
    fake_radius = kth_nearest_distance(fake, k, chunk)
    balls = cross_balls(real, fake, real_radius, chunk, fake_radius=fake_radius)
    return float((balls.real_balls_per_fake > 0).double().mean()), float(balls.in_fake_balls.double().mean())


def recall_replicate(real, fake, counts, pairs, nearest, index, k, chunk) -> float:
    """Recall of one resample, from the kept pairs (or from scratch when they do not suffice)."""
    radius, resolved = resampled_radii(*nearest, counts, k)
    if pairs is None or not resolved:
        return recall_of(fake[index], real, k, chunk)
    j, i, d = pairs
    # real j is covered when some resampled generated i has it within its resampled radius
    hit = (counts[i] > 0) & (d <= radius[i])
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device).index_fill_(0, j[hit], True)
    return float(covered.double().mean())


def prc_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    """Precision and recall, and their bootstrap replicates when ``options.bootstrap`` > 0."""
    k, chunk = options.prc_k, options.chunk_size
    fake, real = as_distance_dtype(fake), as_distance_dtype(real)
    check_neighbourhood(min(len(fake), len(real)), k, "precision/recall")
    n1 = len(fake)
    length = neighbour_list_length(k, n1) if options.bootstrap else k + 1
    nearest = nearest_distances(fake, length, chunk)  # ([n1, L], [n1, L])
    real_radius = kth_nearest_distance(real, k, chunk)
    balls = cross_balls(
        real,
        fake,
        real_radius,
        chunk,
        fake_radius=nearest[0][:, k],
        fake_pair_bound=nearest[0][:, -1] if options.bootstrap else None,
        max_pairs=neighbours.MAX_PAIRS_PER_SAMPLE * (n1 + len(real)),
    )
    in_real = (balls.real_balls_per_fake > 0).double()  # [n1]
    values = {PRECISION.key: float(in_real.mean()), RECALL.key: float(balls.in_fake_balls.double().mean())}
    info: dict = {"prc_k": k}
    if options.bootstrap:
        info[INFO_REPLICATES] = pr_replicates(real, fake, in_real, balls.pairs, nearest, options)
        info["prc_bootstrap_pairs"] = None if balls.pairs is None else len(balls.pairs[0])
    return values, info


def pr_replicates(real, fake, in_real, pairs, nearest, options: MetricOptions) -> dict[str, torch.Tensor]:
    """Precision and recall of each bootstrap resample of the generated set: {key: [B]}."""
    n1 = len(fake)
    precision_b, recall_b = [], []
    for index in iter_resample_indices(n1, options, fake.device):
        counts = resample_counts(index, n1)
        # precision: the resample's mean of the fixed "inside the real manifold" flags
        precision_b.append(float(counts.double() @ in_real) / n1)
        recall_b.append(recall_replicate(real, fake, counts, pairs, nearest, index, options.prc_k, options.chunk_size))
    return {
        PRECISION.key: torch.tensor(precision_b, dtype=torch.float64),
        RECALL.key: torch.tensor(recall_b, dtype=torch.float64),
    }


register_group("precision_recall", (PRECISION, RECALL), prc_compute)
