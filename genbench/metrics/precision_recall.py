"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall
Metric for Assessing Generative Models", NeurIPS).

Each set's manifold is the union of balls around its samples with the distance to the k-th
nearest neighbour (k = 3) as radius. Precision is the fraction of generated samples inside the
real manifold; recall the fraction of real samples inside the generated manifold. Conventions
of torch-fidelity 0.4.0's ``prc_features_to_metric``: generated set first, radii from the
(k+1)-th smallest distance counting the sample itself, membership with <=.

When density/coverage are asked for too, the reference radii come from one shared k-NN search
(``neighbours.shared_searches``); the radii are the same numbers.
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
    kth_nearest_distance,
    reference_radius,
)

PRECISION = register_key(
    "precision", True, "improved precision, k-NN balls (Kynkäänniemi et al. 2019)", bounds=(0, 1)
)
RECALL = register_key("recall", True, "improved recall, k-NN balls (Kynkäänniemi et al. 2019)", bounds=(0, 1))


def precision_recall(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[float, float]:
    """(precision, recall) of generated features [N1, D] against real features [N2, D]."""
    values, _ = prc_compute(fake, real, options)
    return values[PRECISION.key], values[RECALL.key]


def prc_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    """Precision and recall: the fraction of generated samples in the real manifold, and of real in the generated."""
    k, chunk = options.prc_k, options.chunk_size
    fake, real = as_distance_dtype(fake), as_distance_dtype(real)
    check_neighbourhood(min(len(fake), len(real)), k, "precision/recall")
    real_radius = reference_radius(real, k, chunk)  # [n2]
    fake_radius = kth_nearest_distance(fake, k, chunk)  # [n1]
    balls = cross_balls(real, fake, real_radius, chunk, fake_radius=fake_radius)
    values = {
        PRECISION.key: float((balls.real_balls_per_fake > 0).double().mean()),
        RECALL.key: float(balls.in_fake_balls.double().mean()),
    }
    return values, {"prc_k": k}


register_group("precision_recall", (PRECISION, RECALL), prc_compute, equal_n=True)
