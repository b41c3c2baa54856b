"""Memorisation against the reference set: the authenticity percentage (Alaa, van Breugel,
Saveliev & van der Schaar 2022, "How Faithful is your Synthetic Data?", ICML), as dgm-eval
(Stein et al. 2023) computes it, and the distance ratio it is built from.

For each generated sample g, d1(g) is the distance to its nearest reference sample r(g), and
d2(g) the distance from r(g) to r(g)'s own nearest other reference sample. g is authentic when
d2 < d1 (it lies farther from the training data than training samples lie from each other):

    authpct = 100 * mean_g [ d2(g) < d1(g) ]
    nn_ratio = median_g d1(g) / d2(g)   (ratios well below 1 flag copies of reference samples)

Both are reported per run; they speak of memorisation only when the reference set is the
model's training split. Distances are Euclidean, float32 as dgm-eval's ``torch.cdist``, in
blocks of ``options.chunk_size`` (never n x n in memory). Ties of the nearest neighbour pick
the lowest index (as ``torch.min``).
"""

from __future__ import annotations

import torch

from genbench.errors import UsageError
from genbench.metrics.base import METRICS, Metric, MetricOptions, register_key

AUTHPCT = register_key("authpct", True, "authenticity: % of samples farther from the reference than its own "
                       "nearest-neighbour spacing (Alaa et al. 2022)", bounds=(0.0, 100.0))
NN_RATIO = register_key("nn_ratio", True, "median ratio of a sample's nearest-reference distance to that "
                        "reference sample's own nearest-neighbour distance (< 1: closer than the data's spacing)",
                        bounds=(0.0, None))


def nearest(a: torch.Tensor, b: torch.Tensor, chunk: int, exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of a [A, D]: (distance, index) of its nearest row of b [B, D]; with ``exclude_self`` a is b."""
    dist, idx = [], []
    chunk = max(1, min(chunk, 2**26 // max(len(b), 1)))  # a block of at most 2^26 float64 distances (512 MiB)
    for s in range(0, len(a), chunk):
        d = torch.cdist(a[s:s + chunk], b)  # [chunk, B]
        if exclude_self:
            rows = torch.arange(d.shape[0], device=d.device)
            d[rows, rows + s] = float("inf")
        m = d.min(dim=1)
        dist.append(m.values)
        idx.append(m.indices)
    return torch.cat(dist), torch.cat(idx)


def memorisation(fake: torch.Tensor, real: torch.Tensor, chunk: int = 10_000) -> tuple[float, float, torch.Tensor]:
    """(authpct, median ratio, per-sample ratios d1/d2 [N1]) of generated fake [N1, D] against real [N2, D]."""
    if len(real) < 2:
        raise UsageError("authpct needs at least 2 reference samples (each needs a nearest other one)")
    # float64: a near-copy's distance (the quantity this metric is about) is a small difference of
    # large squared norms, which float32 loses to cancellation (and to BLAS's thread-dependent order)
    fake, real = fake.to(torch.float64), real.to(torch.float64)
    d2_real, _ = nearest(real, real, chunk, exclude_self=True)  # [N2]
    d1, i = nearest(fake, real, chunk)  # [N1]
    d2 = d2_real[i]
    authentic = d2 < d1
    ratio = d1.double() / d2.double()
    return 100.0 * float(authentic.double().mean()), float(ratio.median()), ratio


def memorisation_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions):
    auth, ratio, _ = memorisation(fake, real, options.chunk_size)
    return {AUTHPCT.key: auth, NN_RATIO.key: ratio}, {}


for _key in (AUTHPCT, NN_RATIO):
    METRICS.register(_key.key, Metric(name=_key.key, keys=(_key.key,), needs="pool", needs_reference=True,
                                      compute=memorisation_compute, group="memorisation",
                                      description=_key.description, default=False))
