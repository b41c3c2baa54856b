"""Bootstrap confidence intervals and checks for comparing results across sample sizes.

Every sample-based metric gets a percentile bootstrap interval (Efron & Tibshirani 1993,
"An Introduction to the Bootstrap", ch. 13): the generated set is resampled with replacement
``options.bootstrap`` times, the reference set (or its statistics) is held fixed, the metric is
recomputed on each resample and the interval is read off the replicates' percentiles.
All metrics draw the same resamples: replicate ``r`` is the ``r``-th draw of a CPU generator
seeded with ``options.seed``, so intervals are reproducible and independent of the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch

from genbench.metrics.base import MetricOptions, MetricResult


def iter_resample_indices(n: int, options: MetricOptions, device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Yield ``options.bootstrap`` index vectors [n] drawn with replacement from range(n)."""
    generator = torch.Generator().manual_seed(options.seed)
    for _ in range(options.bootstrap):
        yield torch.randint(0, n, (n,), generator=generator).to(device)


def resample_counts(index: torch.Tensor, n: int) -> torch.Tensor:
    """How often each of the n original samples occurs in a resample: [n] long."""
    return torch.bincount(index, minlength=n)


def percentile_interval(replicates: torch.Tensor, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates [B] at confidence ``level`` (0.95 -> 2.5%, 97.5%)."""
    # linear interpolation between order statistics, as numpy.percentile's default
    alpha = (1.0 - level) / 2.0
    q = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)
    lo, hi = torch.quantile(replicates.detach().double().cpu(), q).tolist()
    return float(lo), float(hi)


def interval_warning(key: str, value: float, interval: tuple[float, float]) -> list[str]:
    """A note when the point estimate lies outside its own bootstrap interval.

    Resampling with replacement duplicates about a third of the generated samples. That biases
    FID and KID upward (fewer distinct samples) and shrinks generated k-NN radii (duplicates sit
    at distance 0), so recall and coverage replicates drop: the percentile interval then
    measures spread, not location.
    """
    lo, hi = interval
    if lo <= value <= hi:
        return []
    return [
        f"{key}: the estimate {value:.4g} lies outside its bootstrap interval [{lo:.4g}, {hi:.4g}]; "
        "resampling with replacement duplicates samples and biases this metric, so read the interval as spread."
    ]


def _record_n(record: object) -> tuple[object, object, object]:
    info: Mapping = record.info if isinstance(record, MetricResult) else record  # type: ignore[assignment]
    n_fake = info.get("n1", info.get("n_fake"))
    n_real = info.get("n2", info.get("n_real"))
    return n_fake, n_real, info.get("kid_subset_size")


def warn_if_different_n(records: Iterable[MetricResult | Mapping]) -> list[str]:
    """Warnings for results that are compared although computed at different sample sizes.

    FID, KID (through its subset size), precision/recall and density/coverage all depend on
    n: FID is biased upward by roughly c/n (Chong & Forsyth 2020), and k-NN radii shrink as
    n grows. ``records`` are MetricResults or mappings holding ``n1``/``n_fake``,
    ``n2``/``n_real`` and optionally ``kid_subset_size``.
    """
    rows = [_record_n(r) for r in records]
    warnings = []
    for position, what in enumerate(("generated samples (n1)", "reference samples (n2)", "KID subset sizes")):
        seen = sorted({row[position] for row in rows if row[position] is not None}, key=str)
        if len(seen) > 1:
            warnings.append(
                f"results compared at different numbers of {what}: {', '.join(map(str, seen))}; "
                "FID, KID and k-NN metrics depend on n, so compare at equal n (or use fd_inf for FID)."
            )
    return warnings
