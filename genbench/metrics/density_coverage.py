"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
Generative Models", ICML).

With B(x, r) the ball around real sample x whose radius is the distance to its k-th nearest
real neighbour (k = 5):

    density  = 1 / (k M) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]      (M generated samples Y_j)
    coverage = 1 / N     sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]    (N real samples X_i)

These equal the ``prdc`` package's ``compute_prdc`` on generic data, with one deliberate
difference: prdc tests membership with a strict ``<``, so a sample exactly on a ball's edge is
outside it. When samples repeat at least k+1 times (radius 0), prdc scores two identical sets 0
on every metric. Here, as in the paper's closed balls and in Kynkäänniemi et al.'s
precision/recall, membership is ``<=``, and such identical sets score coverage 1 and density
(k+1)/k. The two conventions also part on distances that tie with a radius after rounding to
float32 (5 of 25 million pairs at 5,000 x 2,048), each moving density by 1/(k M).

Distances are computed as prdc computes them through scikit-learn (squared distances in float64,
rounded to the features' dtype), chunk x chunk blocks at a time.

Bootstrap: the real radii are fixed, so each generated sample's ball count is fixed and a
resample's density is a weighted mean; for coverage the (real, generated) pairs within the real
radii are kept from the one pass and a replicate only checks which of them were drawn.
"""

from __future__ import annotations

import dataclasses

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
)

DENSITY = register_key("density", True, "density, k-NN balls of real samples (Naeem et al. 2020)")
COVERAGE = register_key("coverage", True, "coverage, k-NN balls of real samples (Naeem et al. 2020)")


def density_coverage(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[float, float]:
    """(density, coverage) of generated features [N1, D] against real features [N2, D].

    Membership is ``<=`` (a closed ball, as in the paper), where prdc uses ``<``; see the module text.
    """
    values, _ = dc_compute(fake, real, dataclasses.replace(options, bootstrap=0))
    return values[DENSITY.key], values[COVERAGE.key]


def coverage_replicate(real, fake, real_radius, counts, pairs, index, chunk) -> float:
    """Coverage of one resample, from the kept pairs (or a fresh pass when they overflowed)."""
    if pairs is None:
        balls = cross_balls(real, fake[index], real_radius, chunk, upcast=True)
        return float(balls.real_ball_occupied.double().mean())
    j, i, _ = pairs
    # real ball j is covered when some generated sample inside it was drawn
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device).index_fill_(0, j[counts[i] > 0], True)
    return float(covered.double().mean())


def dc_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    """Density and coverage, and their bootstrap replicates when ``options.bootstrap`` > 0."""
    k, chunk = options.dc_k, options.chunk_size
    fake, real = as_distance_dtype(fake), as_distance_dtype(real)
    check_neighbourhood(len(real), k, "density/coverage")
    n1 = len(fake)
    # distances as prdc computes them (scikit-learn's float64 squared distances)
    real_radius = kth_nearest_distance(real, k, chunk, upcast=True)  # [n2]
    balls = cross_balls(
        real,
        fake,
        real_radius,
        chunk,
        real_pair_bound=real_radius if options.bootstrap else None,
        max_pairs=neighbours.MAX_PAIRS_PER_SAMPLE * (n1 + len(real)),
        upcast=True,
    )
    per_fake = balls.real_balls_per_fake.double()  # [n1] real balls around each generated sample
    values = {
        DENSITY.key: float(per_fake.sum() / (k * n1)),
        COVERAGE.key: float(balls.real_ball_occupied.double().mean()),
    }
    info: dict = {"dc_k": k}
    if options.bootstrap:
        info[INFO_REPLICATES] = dc_replicates(real, fake, real_radius, per_fake, balls.pairs, options)
    return values, info


def dc_replicates(real, fake, real_radius, per_fake, pairs, options: MetricOptions) -> dict[str, torch.Tensor]:
    """Density and coverage of each bootstrap resample of the generated set: {key: [B]}."""
    n1, k = len(fake), options.dc_k
    density_b, coverage_b = [], []
    for index in iter_resample_indices(n1, options, fake.device):
        counts = resample_counts(index, n1)
        # density: the resample's mean of the fixed per-sample ball counts, over k
        density_b.append(float(counts.double() @ per_fake) / (k * n1))
        coverage_b.append(coverage_replicate(real, fake, real_radius, counts, pairs, index, options.chunk_size))
    return {
        DENSITY.key: torch.tensor(density_b, dtype=torch.float64),
        COVERAGE.key: torch.tensor(coverage_b, dtype=torch.float64),
    }


register_group("density_coverage", (DENSITY, COVERAGE), dc_compute)
