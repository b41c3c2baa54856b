"""Metric protocol: pure functions over features, each declaring what it needs.

A metric family module registers ``Metric`` objects and the result keys they produce; each
result key says whether higher is better, and the leaderboard's arrows come from that flag.
``evaluate_features`` is the single entry point used by ``genbench eval``, suites and Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from genbench.errors import UsageError
from genbench.registry import Registry


@dataclass(frozen=True)
class MetricKey:
    """One number a metric produces (``fid``, ``kid_mean``, ``precision``, ``bpd``, ...)."""

    key: str
    higher_is_better: bool
    description: str = ""
    # the interval is for the population value (n -> infinity) and is centred on the estimate
    # less its estimated O(1/n) bias (FID); otherwise it covers the expectation at the n used
    bias_corrected: bool = False
    bounds: tuple[float | None, float | None] = (None, None)  # the value's range; intervals are clipped to it


@dataclass(frozen=True)
class MetricOptions:
    """Settings shared by all metrics; defaults follow torch-fidelity 0.4.0."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_degree: int = 3
    kid_gamma: float | None = None  # None -> 1 / d
    kid_coef0: float = 1.0
    is_splits: int = 10
    seed: int = 2020
    prc_k: int = 3
    dc_k: int = 5
    bootstrap: int = 0  # half-sampling replicates for confidence intervals (0: none); see bootstrap.py
    ci_level: float = 0.95
    fd_inf_points: int = 15  # number of n values for FD-infinity
    mode_min_share: float = 0.008  # a mode is captured with >= this share of samples (PacGAN: 20 of 2,500)
    mode_radius_stds: float = 3.0  # high quality: within this many standard deviations of a mode (VEEGAN)
    device: str = "cpu"
    chunk_size: int = 10_000  # rows per block in k-NN distance computations
    # precision/recall/density/coverage on min(n1, n2) samples of each set, the larger set
    # subsampled without replacement (seeded with ``seed``): coverage and recall grow with n1
    knn_equal_n: bool = True
    # a metric undefined at these sizes (fd_inf with too few samples): "raise" a UsageError, or
    # "warn" (suites): leave its keys out of the result and say why in the warnings
    on_undefined: str = "raise"


class UndefinedMetric(UsageError):
    """A metric that these inputs cannot define (too few samples for its estimator); one line naming what is needed."""


@dataclass
class MetricResult:
    values: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# compute(fake_features, real_features_or_None, options) -> (values, info)
ComputeFn = Callable[[torch.Tensor, "torch.Tensor | None", MetricOptions], "tuple[dict[str, float], dict]"]
# compute_from_stats(fake_features, reference_statistics, options) -> (values, info), for metrics
# that can run from precomputed reference statistics (FID from {"mu", "sigma"}).
StatsComputeFn = Callable[[torch.Tensor, dict, MetricOptions], "tuple[dict[str, float], dict]"]

# Entries of a feature mapping that are not features: what the generated samples were asked for, or
# what the dataset knows about its reference set. A metric names those it reads in ``Metric.extras``
# ("fake.labels", "real.mode_centres", ...) and receives them as ``compute(..., extras={name: tensor})``.
LABELS = "labels"  # [N] int64: the class each generated sample was asked for / each reference example's class
MODE_CENTRES = "mode_centres"  # reference only, [K, D]: centres of a Gaussian-mixture dataset's modes
MODE_STD = "mode_std"  # reference only, [1]: their common (isotropic) standard deviation
EXTRA_KEYS = frozenset({LABELS, MODE_CENTRES, MODE_STD})
PER_SAMPLE_EXTRAS = frozenset({LABELS})  # one row per sample: sliced with their set (halves, equal-n subsamples)

# Reserved entries of a compute function's info dict, which evaluate_features moves elsewhere:
INFO_WARNINGS = "warnings"  # list[str] -> MetricResult.warnings


@dataclass(frozen=True)
class Metric:
    """A metric as ``--metrics`` names it. Metrics sharing a ``group`` are computed once together."""

    name: str
    keys: tuple[str, ...]
    needs: str  # feature key: "pool" or "logits"
    needs_reference: bool
    compute: ComputeFn
    group: str = ""
    description: str = ""
    compute_from_stats: StatsComputeFn | None = None
    default: bool = True  # part of "all that the features allow" (fd_inf is opt-in)
    extras: tuple[str, ...] = ()  # non-feature entries it reads, "fake.<key>" or "real.<key>" (EXTRA_KEYS)
    # half-sampling replicates for intervals: None leaves the metric without one (fd_inf);
    # ``replicate``/``replicate_from_stats`` default to compute/compute_from_stats and may be a
    # faster computation of the same values
    intervals: bool = True
    replicate: ComputeFn | None = None
    replicate_from_stats: StatsComputeFn | None = None
    equal_n: bool = False  # a k-NN metric, evaluated at equal n when options.knn_equal_n
    min_n: int = 2  # fewest feature rows it is defined on (fewer: UndefinedMetric)
    # undefined on some real inputs (no valid molecule): left out with a warning even when
    # options.on_undefined is "raise", since such a set is a result, not a mistake
    may_be_undefined: bool = False


METRICS: Registry[Metric] = Registry("metric", package="genbench.metrics")
KEYS: dict[str, MetricKey] = {}


def register_key(
    key: str,
    higher_is_better: bool,
    description: str = "",
    bias_corrected: bool = False,
    bounds: tuple[float | None, float | None] = (None, None),
) -> MetricKey:
    mk = MetricKey(key, higher_is_better, description, bias_corrected, bounds)
    if key in KEYS and KEYS[key] != mk:
        raise ValueError(f"metric key {key!r} is registered twice with different meanings")
    KEYS[key] = mk
    return mk


def register_group(
    group: str, keys: tuple[MetricKey, ...], compute: ComputeFn, needs: str = "pool", equal_n: bool = False,
    extras: tuple[str, ...] = (),
) -> None:
    """One metric per key (named as the key), all computed by one call of ``compute`` per evaluation."""
    for mk in keys:
        METRICS.register(mk.key, Metric(name=mk.key, keys=(mk.key,), needs=needs, needs_reference=True,
                                        compute=compute, group=group, description=mk.description,
                                        equal_n=equal_n, extras=extras))


def split_space(key: str) -> tuple[str, str | None]:
    """(base key, feature space) of a result key: ``fd_dinov2`` -> ("fid", "dinov2"), ``fid`` -> ("fid", None)."""
    METRICS.names()  # make sure every metric module has registered its keys
    if key in KEYS:
        return key, None
    published = {name: space for space, name in FD_NAMES.items()}
    base, _, space = (f"fd_{published[key]}" if key in published else key).rpartition("_")
    base = "fid" if base == "fd" else base
    return (base, space) if base in KEYS and space else (key, None)


def metric_key(key: str) -> MetricKey | None:
    """The key's meaning; a key named in a feature space (``fd_dinov2``, ``kid_mean_clip``) has its base key's."""
    base, space = split_space(key)
    if base not in KEYS:
        return None
    mk = KEYS[base]
    if space is None:
        return mk
    return MetricKey(key, mk.higher_is_better, f"{mk.description} in {space} features", mk.bias_corrected, mk.bounds)


# Frechet distances with a published name of their own, by feature space: sFID (Nash et al. 2021); FVD
# (Unterthiner et al. 2018), the Frechet distance of video features: ``fvd`` in the shipped domain video
# space (as FID is ``fid`` in the shipped domain image spaces), ``fvd_i3d`` in I3D's
FD_NAMES = {"sfid": "sfid", "video": "fvd", "i3d": "fvd_i3d"}


def space_key(key: str, space: str | None) -> str:
    """A result key named in feature space ``space`` (None: Inception, where FID is FID).

    An FD in DINOv2 space is ``fd_dinov2``, never ``fid``; every other key gains the suffix
    (``kid_mean_dinov2``, ``precision_dinov2``, ``vendi_dinov2``), so that a number keeps the name
    of its space in JSON, the store and every table."""
    if not space:
        return key
    if key == "fid":
        return FD_NAMES.get(space, f"fd_{space}")  # sFID and FVD keep their published names
    return f"{key}_{space}"


# Keys that do not come from features: likelihood and cost, filled in by the runner.
BPD = register_key("bpd", False, "bits per dimension (8-bit data, uniform dequantisation)")
NFE = register_key("nfe", False, "network function evaluations per sample")
SAMPLE_TIME = register_key("sample_s_per_1k", False, "wall-clock seconds to draw 1,000 samples")
TRAIN_TIME = register_key("train_s", False, "wall-clock seconds of training (0 when loaded)")
