"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs", NeurIPS).

    IS = exp(E_x KL(p(y|x) || p(y)))

computed on ``is_splits`` splits of the generated logits, after a shuffle with numpy
``RandomState(seed).permutation`` (torch-fidelity 0.4.0's convention), in float64; the result is
the mean and the (ddof 0) standard deviation over splits. Needs the "logits" features.
"""

from __future__ import annotations

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.metrics.base import (
    METRICS,
    Metric,
    MetricOptions,
    register_key,
)

IS_MEAN = register_key("is_mean", True, "Inception Score, mean over splits (Salimans et al. 2016)", bounds=(1.0, None))
IS_STD = register_key("is_std", False, "Inception Score, standard deviation over splits")


def shuffle_order(n: int, seed: int) -> torch.Tensor:
    """The permutation [n] torch-fidelity applies before splitting."""
    return torch.from_numpy(np.random.RandomState(seed).permutation(n))


def split_scores(p: torch.Tensor, log_p: torch.Tensor, splits: int) -> torch.Tensor:
    """exp(mean KL(p(y|x) || p(y))) of each split of class probabilities p [N, C] -> [splits]."""
    n = p.shape[0]
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        # p(y) is the split's marginal; KL summed over classes, averaged over samples
        q = p[lo:hi].mean(dim=0, keepdim=True)  # [1, C]
        kl = (p[lo:hi] * (log_p[lo:hi] - q.log())).sum(dim=1)  # [hi - lo]
        scores.append(kl.mean().exp())
    return torch.stack(scores)


def logits_to_probabilities(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, C] -> (softmax, log_softmax) in float64."""
    z = logits.to(torch.float64)
    return z.softmax(dim=1), z.log_softmax(dim=1)


def isc_features_to_metric(logits: torch.Tensor, options: MetricOptions) -> dict[str, float]:
    """Inception Score mean and std over ``options.is_splits`` shuffled splits."""
    if len(logits) < options.is_splits:
        raise UsageError(
            f"IS needs at least is_splits={options.is_splits} samples (got {len(logits)}); "
            "generate more samples or lower is_splits."
        )
    order = shuffle_order(len(logits), options.seed).to(logits.device)
    p, log_p = logits_to_probabilities(logits[order])
    scores = split_scores(p, log_p, options.is_splits)
    return {IS_MEAN.key: float(scores.mean()), IS_STD.key: float(scores.std(correction=0))}


def is_compute(
    logits: torch.Tensor, real: torch.Tensor | None, options: MetricOptions
) -> tuple[dict[str, float], dict]:
    return isc_features_to_metric(logits, options), {"is_splits": options.is_splits}


METRICS.register(
    "is",
    Metric(
        name="is",
        keys=(IS_MEAN.key, IS_STD.key),
        needs="logits",
        needs_reference=False,
        compute=is_compute,
        description=IS_MEAN.description,
    ),
)
