"""The single entry point from features to metric values: ``evaluate_features``.

    result = evaluate_features(["fid", "kid", "precision"], {"pool": fake_pool}, {"pool": real_pool})
    result.values  # {"fid": ..., "kid_mean": ..., "kid_std": ..., "precision": ...}

Metrics that share a group (precision and recall; density and coverage) are computed once.
With ``options.bootstrap`` = B > 0 every sample-based value gets a percentile interval in
``result.ci``. ``result.info`` records n1 (generated), n2 (reference), and each metric's
settings (KID subset size used, k of the k-NN metrics, ...); ``result.warnings`` collects what a
reader must know (rank-deficient covariance, clamped round-off, reduced KID subsets).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from genbench.errors import UnknownNameError, UsageError
from genbench.metrics.base import (
    EXTRA_KEYS,
    INFO_REPLICATES,
    INFO_WARNINGS,
    KEYS,
    METRICS,
    Metric,
    MetricOptions,
    MetricResult,
    metric_key,
)
from genbench.metrics.bootstrap import interval_warning, percentile_interval


def default_metrics(feature_keys: set[str], reference_keys: set[str] | None = None) -> list[str]:
    """All default metrics the given feature keys allow (IS only with logits; fd_inf is opt-in).

    A metric that reads extras (``Metric.extras``: labels, mode centres) is included only when
    they are present: "fake.<key>" in ``feature_keys``, "real.<key>" in ``reference_keys``.
    """
    have = {f"fake.{k}" for k in feature_keys} | {f"real.{k}" for k in reference_keys or ()}
    return [e.name for e in METRICS.entries()
            if e.obj.default and e.obj.needs in feature_keys and set(e.obj.extras) <= have]


def higher_is_better(key: str) -> bool:
    """Whether a larger value of result key ``key`` (``fid``, ``precision``, ...) is better."""
    mk = metric_key(key)
    if mk is None:
        raise UnknownNameError(f"unknown metric key {key!r}. Known keys: {', '.join(sorted(KEYS))}.")
    return mk.higher_is_better


def check_options(options: MetricOptions) -> torch.device:
    """Refuse settings no metric can run with; return the device to compute on."""
    positive = ("kid_subsets", "kid_degree", "is_splits", "prc_k", "dc_k", "chunk_size")
    for name in positive:
        if getattr(options, name) < 1:
            raise UsageError(f"MetricOptions.{name} must be at least 1 (got {getattr(options, name)}).")
    if options.kid_subset_size < 2 or options.bootstrap < 0 or options.fd_inf_points < 2:
        raise UsageError("MetricOptions needs kid_subset_size >= 2, bootstrap >= 0 and fd_inf_points >= 2.")
    if not 0.0 < options.ci_level < 1.0:
        raise UsageError(f"MetricOptions.ci_level must lie in (0, 1), e.g. 0.95 (got {options.ci_level}).")
    try:
        device = torch.device(options.device)
    except RuntimeError as e:
        raise UsageError(f"unknown device {options.device!r}; use 'cpu', 'cuda' or 'cuda:N'.") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {options.device!r} asked for but CUDA is not available; use device='cpu'.")
    return device


def resolve_metrics(names: list[str]) -> list[Metric]:
    if not names:
        raise UsageError(f"no metrics named; choose from {', '.join(METRICS.names())}.")
    return [METRICS.get(name) for name in dict.fromkeys(names)]


def feature_matrix(features: Mapping[str, torch.Tensor], key: str, which: str) -> torch.Tensor:
    """features[key] checked to be a finite [N, D] tensor."""
    if key not in features:
        raise UsageError(
            f"the {which} features hold {sorted(features) or 'nothing'} but a metric needs {key!r}; "
            f"use a feature extractor that returns {key!r} (inception does) or drop that metric."
        )
    x = torch.as_tensor(features[key])
    if x.ndim != 2 or len(x) < 2:
        raise UsageError(f"{which} {key!r} features must be [N, D] with N >= 2 (got shape {tuple(x.shape)}).")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise UsageError(f"{which} {key!r} features contain NaN or inf; check the samples and the extractor.")
    return x


def group_metrics(metrics: list[Metric]) -> list[list[Metric]]:
    """Requested metrics, those sharing a group together, in order of first appearance."""
    groups: dict[str, list[Metric]] = {}
    for m in metrics:
        groups.setdefault(m.group or m.name, []).append(m)
    return list(groups.values())


def metric_extras(metric: Metric, fake: Mapping, real: Mapping | None, device) -> dict[str, torch.Tensor]:
    """The extras ``metric`` reads ("fake.labels", "real.mode_centres", ...), or a one-line error naming the missing one."""
    out = {}
    for name in metric.extras:
        side, _, key = name.partition(".")
        source = fake if side == "fake" else real
        if source is None or key not in source:
            who = "the generated samples carry no class labels (only class-conditional models are sampled with labels)" \
                if name == "fake.labels" else f"the reference set provides no {key!r}"
            raise UsageError(f"metric {metric.name!r} needs {name}, but {who}; drop {metric.name!r} from the metrics")
        out[name] = torch.as_tensor(source[key]).to(device)
    return out


def run_group(members, fake, real, real_stats, options, device) -> tuple[dict, dict]:
    """Compute one group of metrics on the device; returns the compute function's (values, info)."""
    metric = members[0]
    x = feature_matrix(fake, metric.needs, "generated").to(device)
    if metric.extras:
        extras = metric_extras(metric, fake, real, device)
        y = feature_matrix(real, metric.needs, "reference").to(device) if metric.needs_reference and real else None
        return metric.compute(x, y, options, extras=extras)
    if not metric.needs_reference:
        return metric.compute(x, None, options)
    if real is not None and metric.needs in real:
        y = feature_matrix(real, metric.needs, "reference").to(device)
        if y.shape[1] != x.shape[1]:
            raise UsageError(
                f"generated {metric.needs!r} features have {x.shape[1]} dimensions, reference "
                f"{y.shape[1]}; extract both with the same feature extractor."
            )
        return metric.compute(x, y, options)
    if real_stats is not None and metric.compute_from_stats is not None:
        return metric.compute_from_stats(x, real_stats, options)
    raise UsageError(
        f"metric {metric.name!r} needs reference {metric.needs!r} features"
        + (" (reference statistics serve only FID and fd_inf)" if real_stats is not None else "")
        + "; pass the reference set's features."
    )


def sample_sizes(fake: Mapping, real: Mapping | None, real_stats: Mapping | None) -> dict:
    n1 = next((len(v) for k, v in fake.items() if k not in EXTRA_KEYS), 0)
    if real:
        n2 = next((len(v) for k, v in real.items() if k not in EXTRA_KEYS), None)
    else:
        n2 = int(real_stats["n"]) if real_stats is not None and "n" in real_stats else None
    return {"n1": n1, "n2": n2}


def evaluate_features(
    names: list[str],
    fake: dict[str, torch.Tensor],
    real: dict[str, torch.Tensor] | None,
    options: MetricOptions = MetricOptions(),
    real_stats: dict | None = None,
) -> MetricResult:
    """Compute the metrics ``names`` on generated features ``fake`` against ``real`` (or ``real_stats``).

    fake/real map feature keys ("pool", "logits") to [N, D] tensors, and may carry extras
    (``labels`` [N], reference ``mode_centres`` [K, D] and ``mode_std``) for the metrics that read
    them (``Metric.extras``); ``real_stats`` may hold
    precomputed {"mu", "sigma"[, "n"]} for FID and fd_inf when reference features are absent.
    """
    device = check_options(options)
    metrics = resolve_metrics(names)
    result = MetricResult(info={**sample_sizes(fake, real, real_stats), "device": str(device), "seed": options.seed})
    if options.bootstrap:
        result.info.update(bootstrap=options.bootstrap, ci_level=options.ci_level)
    for members in group_metrics(metrics):
        values, info = run_group(members, fake, real, real_stats, options, device)
        info = dict(info)
        result.warnings += [w for w in info.pop(INFO_WARNINGS, []) if w not in result.warnings]
        replicates = info.pop(INFO_REPLICATES, {})
        result.info.update(info)
        for key in (k for m in members for k in m.keys):
            result.values[key] = values[key]
            if key in replicates:
                result.ci[key] = percentile_interval(replicates[key], options.ci_level)
                result.warnings += interval_warning(key, values[key], result.ci[key])
    return result
