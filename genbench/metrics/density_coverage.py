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

When precision/recall are asked for too, the reference radii come from one shared k-NN search
(``neighbours.shared_searches``), re-ranked by these distances: the same numbers.
"""

from __future__ import annotations

import torch

from genbench.metrics.base import (
    MetricOptions,
    register_group,
    register_key,
)
from genbench.metrics.neighbours import (
    as_distance_dtype,
    check_neighbourhood,
    cross_balls,
    reference_radius,
)

DENSITY = register_key("density", True, "density, k-NN balls of real samples (Naeem et al. 2020)", bounds=(0, None))
COVERAGE = register_key("coverage", True, "coverage, k-NN balls of real samples (Naeem et al. 2020)", bounds=(0, 1))


def density_coverage(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[float, float]:
    """(density, coverage) of generated features [N1, D] against real features [N2, D].

    Membership is ``<=`` (a closed ball, as in the paper), where prdc uses ``<``; see the module text.
    """
    values, _ = dc_compute(fake, real, options)
    return values[DENSITY.key], values[COVERAGE.key]


def dc_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    """Density and coverage of generated features [N1, D] against real features [N2, D]."""
    k, chunk = options.dc_k, options.chunk_size
    fake, real = as_distance_dtype(fake), as_distance_dtype(real)
    check_neighbourhood(len(real), k, "density/coverage")
    # distances as prdc computes them (scikit-learn's float64 squared distances)
    real_radius = reference_radius(real, k, chunk, upcast=True)  # [n2]
    balls = cross_balls(real, fake, real_radius, chunk, upcast=True)
    per_fake = balls.real_balls_per_fake.double()  # [n1] real balls around each generated sample
    values = {
        DENSITY.key: float(per_fake.sum() / (k * len(fake))),
        COVERAGE.key: float(balls.real_ball_occupied.double().mean()),
    }
    return values, {"dc_k": k}


register_group("density_coverage", (DENSITY, COVERAGE), dc_compute, equal_n=True)
