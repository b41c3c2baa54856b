"""The single entry point from features to metric values: ``evaluate_features``.

    result = evaluate_features(["fid", "kid", "precision"], {"pool": fake_pool}, {"pool": real_pool})
    result.values  # {"fid": ..., "kid_mean": ..., "kid_std": ..., "precision": ...}

Metrics that share a group (precision and recall; density and coverage) are computed once, and
when both groups are asked for, the reference set's k-NN search runs once for both
(``neighbours.shared_searches``). The k-NN metrics are evaluated at equal n by default
(``options.knn_equal_n``): the larger set is subsampled to the smaller one's size, with a fixed
seed. With ``options.bootstrap`` = B > 0 every sample-based value gets a half-sampling interval
in ``result.ci`` (see ``bootstrap.py``; the method is recorded as ``result.info["ci_method"]``).
``result.info`` records n1 (generated), n2 (reference), and each metric's settings (KID subset
size used, k of the k-NN metrics, ...); ``result.warnings`` collects what a reader must know
(rank-deficient covariance, clamped round-off, reduced KID subsets, k-NN metrics at unequal n).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from genbench.errors import UnknownNameError, UsageError
import dataclasses

from genbench.metrics import neighbours
from genbench.metrics.base import (
    EXTRA_KEYS,
    INFO_WARNINGS,
    PER_SAMPLE_EXTRAS,
    KEYS,
    METRICS,
    Metric,
    MetricOptions,
    MetricResult,
    UndefinedMetric,
    metric_key,
    space_key,
)
from genbench.metrics.bootstrap import CI_METHOD, half_indices, half_sampling_interval, interval_warning


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
    if options.on_undefined not in ("raise", "warn"):
        raise UsageError(f"MetricOptions.on_undefined must be 'raise' or 'warn' (got {options.on_undefined!r}).")
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


def feature_matrix(features: Mapping[str, torch.Tensor], key: str, which: str, min_n: int = 2) -> torch.Tensor:
    """features[key] checked to be a finite [N, D] tensor with N >= min_n (fewer: UndefinedMetric)."""
    if key not in features:
        raise UsageError(
            f"the {which} features hold {sorted(features) or 'nothing'} but a metric needs {key!r}; "
            f"use a feature extractor that returns {key!r} (inception does) or drop that metric."
        )
    x = torch.as_tensor(features[key])
    if x.ndim != 2:
        raise UsageError(f"{which} {key!r} features must be [N, D] (got shape {tuple(x.shape)}).")
    if len(x) < min_n:
        raise UndefinedMetric(f"{which} {key!r} features must be [N, D] with N >= {min_n} (got shape {tuple(x.shape)}).")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise UsageError(f"{which} {key!r} features contain NaN or inf; check the samples and the extractor.")
    return x


def group_metrics(metrics: list[Metric]) -> list[list[Metric]]:
    """Requested metrics, those sharing a group together, in order of first appearance."""
    groups: dict[str, list[Metric]] = {}
    for m in metrics:
        groups.setdefault(m.group or m.name, []).append(m)
    return list(groups.values())


@dataclasses.dataclass
class GroupInputs:
    """What one group of metrics is computed on: generated x [N1, D] and reference y [N2, D] or statistics,
    and the extras its metrics read ({"fake.labels": [N1], "real.mode_centres": [K, D], ...})."""

    x: torch.Tensor
    y: torch.Tensor | None
    stats: Mapping | None
    info: dict
    extras: dict = dataclasses.field(default_factory=dict)


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


def take_rows(inputs: GroupInputs, fake_rows: torch.Tensor | None, real_rows: torch.Tensor | None, info: dict) -> GroupInputs:
    """The rows ``fake_rows`` of x and ``real_rows`` of y (None: all), with their per-sample extras."""
    def rows(t, idx):
        return t if t is None or idx is None else t[idx.to(t.device)]

    extras = {name: rows(t, fake_rows if name.startswith("fake.") else real_rows)
              if name.partition(".")[2] in PER_SAMPLE_EXTRAS else t for name, t in inputs.extras.items()}
    return GroupInputs(rows(inputs.x, fake_rows), rows(inputs.y, real_rows), inputs.stats, info, extras)


def group_inputs(members, fake, real, real_stats, options, device, memo: dict) -> GroupInputs:
    """The checked feature matrices of one group, on the device; k-NN groups at equal n when asked.

    ``memo`` shares the tensors between groups of one evaluation (so that precision/recall and
    density/coverage see the same subsample and the reference k-NN search can run once).
    """
    metric = members[0]
    if metric.extras:  # not shared: the inputs carry this metric's extras
        inputs = group_inputs_plain(metric, fake, real, real_stats, options, device)
        inputs.extras = metric_extras(metric, fake, real, device)
        return inputs
    key = (metric.needs, metric.equal_n and options.knn_equal_n, metric.needs_reference, metric.min_n)
    if key not in memo:
        memo[key] = group_inputs_plain(metric, fake, real, real_stats, options, device)
    return memo[key]


def group_inputs_plain(metric: Metric, fake, real, real_stats, options, device) -> GroupInputs:
    """The checked feature matrices of ``metric``'s group (at equal n for k-NN metrics when asked)."""
    x = feature_matrix(fake, metric.needs, "generated", metric.min_n).to(device)
    if not metric.needs_reference:
        return GroupInputs(x, None, None, {})
    if real is not None and metric.needs in real:
        y = feature_matrix(real, metric.needs, "reference", metric.min_n).to(device)
        if y.shape[1] != x.shape[1]:
            raise UsageError(
                f"generated {metric.needs!r} features have {x.shape[1]} dimensions, reference "
                f"{y.shape[1]}; extract both with the same feature extractor."
            )
        return equal_n(x, y, options) if metric.equal_n and options.knn_equal_n else GroupInputs(x, y, None, {})
    if real_stats is not None and metric.compute_from_stats is not None:
        return GroupInputs(x, None, real_stats, {})
    raise UsageError(
        f"metric {metric.name!r} needs reference {metric.needs!r} features"
        + (" (reference statistics serve only FID and fd_inf)" if real_stats is not None else "")
        + "; pass the reference set's features."
    )


def equal_n(x: torch.Tensor, y: torch.Tensor, options: MetricOptions) -> GroupInputs:
    """Both sets at min(n1, n2): the larger subsampled without replacement, seeded with options.seed."""
    n = min(len(x), len(y))
    generator = torch.Generator().manual_seed(options.seed)
    pick = lambda t: t if len(t) == n else t[torch.randperm(len(t), generator=generator)[:n].sort().values.to(t.device)]
    return GroupInputs(pick(x), pick(y), None, {"knn_n": n})


def compute_group(members: list[Metric], inputs: GroupInputs, options: MetricOptions, replicate: bool = False):
    """One group's (values, info) on its inputs; ``replicate`` picks the metric's replicate function."""
    metric = members[0]
    if inputs.stats is not None:
        fn = (metric.replicate_from_stats if replicate else None) or metric.compute_from_stats
        return fn(inputs.x, inputs.stats, options)
    fn = (metric.replicate if replicate else None) or metric.compute
    if metric.extras:
        return fn(inputs.x, inputs.y, options, extras=inputs.extras)
    return fn(inputs.x, inputs.y, options)


def unequal_n_warning(n1: int, n2: int | None, keys: list[str]) -> list[str]:
    """A note when k-NN metrics are computed on sets of different sizes (options.knn_equal_n off)."""
    if not keys or n2 is None or n1 == n2:
        return []
    return [
        f"{', '.join(keys)} computed at n1={n1} generated against n2={n2} reference samples: recall and "
        "coverage grow with n1 (coverage 0.97 -> 1.00 from n1 = 360 to 1,000 at n2 = 360), so these rows "
        "compare only at equal sizes; evaluate at equal n (knn_equal_n)."
    ]


def n_examples(features: Mapping) -> int | None:
    """The number of examples a feature mapping describes: the rows of ``pool`` where there is one (other keys
    may hold a row per frame, and a mapping read back from the cache has its keys in another order), else of
    its first feature."""
    if "pool" in features:
        return len(features["pool"])
    return next((len(v) for k, v in features.items() if k not in EXTRA_KEYS), None)


def sample_sizes(fake: Mapping, real: Mapping | None, real_stats: Mapping | None) -> dict:
    n1 = n_examples(fake) or 0
    if real:
        n2 = n_examples(real)
    else:
        n2 = int(real_stats["n"]) if real_stats is not None and "n" in real_stats else None
    return {"n1": n1, "n2": n2}


def evaluate_features(
    names: list[str],
    fake: dict[str, torch.Tensor],
    real: dict[str, torch.Tensor] | None,
    options: MetricOptions = MetricOptions(),
    real_stats: dict | None = None,
    space: str | None = None,
) -> MetricResult:
    """Compute the metrics ``names`` on generated features ``fake`` against ``real`` (or ``real_stats``).

    fake/real map feature keys ("pool", "logits") to [N, D] tensors, and may carry extras
    (``labels`` [N], reference ``mode_centres`` [K, D] and ``mode_std``) for the metrics that read
    them (``Metric.extras``); ``real_stats`` may hold
    precomputed {"mu", "sigma"[, "n"]} for FID and fd_inf when reference features are absent.
    ``space`` (the extractor's ``space``, e.g. "dinov2") names the result keys in that feature
    space (``fd_dinov2``, ``kid_mean_dinov2``; see ``space_key``); None keeps Inception's names.
    """
    result = _evaluate_features(names, fake, real, options, real_stats)
    return name_space(result, space) if space else result


def name_space(result: MetricResult, space: str) -> MetricResult:
    """``result`` with every metric key (values, intervals, their bias in info) named in ``space``."""
    rename = {k: space_key(k, space) for k in result.values}
    info = {(rename[k[:-5]] + "_bias" if k.endswith("_bias") and k[:-5] in rename else k): v
            for k, v in result.info.items()}
    # warnings name the metric as computed ("FID: n1=16 ... rank-deficient", "kid_mean: ..."): name it in the space
    words = {**rename, "FID": rename.get("fid", space_key("fid", space))}
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(words, key=len, reverse=True))) + r")\b")
    warnings = [pattern.sub(lambda m: words[m.group(1)], w) for w in result.warnings]
    return MetricResult({rename[k]: v for k, v in result.values.items()},
                        {rename.get(k, k): v for k, v in result.ci.items()}, {**info, "space": space}, warnings)


def _evaluate_features(names, fake, real, options, real_stats) -> MetricResult:
    device = check_options(options)
    groups = group_metrics(resolve_metrics(names))
    result = MetricResult(info={**sample_sizes(fake, real, real_stats), "device": str(device), "seed": options.seed})
    memo: dict = {}
    computed: list[tuple[list[Metric], GroupInputs, dict]] = []
    with neighbours.shared_searches(knn_neighbours(groups, options)):
        for members in groups:
            try:
                inputs = group_inputs(members, fake, real, real_stats, options, device, memo)
                values, info = compute_group(members, inputs, options)
            except UndefinedMetric as e:
                if options.on_undefined == "raise" and not members[0].may_be_undefined:
                    raise
                result.warnings.append(f"{str(e)} ({', '.join(k for m in members for k in m.keys)} left undefined)")
                continue
            info = {**inputs.info, **info}
            result.warnings += [w for w in info.pop(INFO_WARNINGS, []) if w not in result.warnings]
            result.info.update(info)
            for key in (k for m in members for k in m.keys):
                result.values[key] = values[key]
            computed.append((members, inputs, values))
    if not options.knn_equal_n:
        knn = [k for members, _, _ in computed if members[0].equal_n for m in members for k in m.keys]
        result.warnings += unequal_n_warning(result.info["n1"], result.info["n2"], knn)
    if options.bootstrap:
        add_intervals(result, computed, options)
    return result


def knn_neighbours(groups: list[list[Metric]], options: MetricOptions) -> int:
    """Neighbours per reference sample one search must find to serve both k-NN groups (0: not both asked)."""
    asked = {members[0].group for members in groups}
    if {"precision_recall", "density_coverage"} <= asked:
        return max(options.prc_k, options.dc_k) + 1
    return 0


def add_intervals(result: MetricResult, computed: list, options: MetricOptions) -> None:
    """Half-sampling intervals of every computed value that has one (see bootstrap.py)."""
    with_ci = [(members, inputs, values) for members, inputs, values in computed if members[0].intervals]
    if not with_ci:
        return
    result.info.update(bootstrap=options.bootstrap, ci_level=options.ci_level, ci_method=CI_METHOD)
    replicates, too_small = replicate_values(with_ci, options)
    result.warnings += list(too_small.values())
    for members, inputs, values in (g for g in with_ci if id(g[0][0]) not in too_small):
        # kid_std and is_std are spreads over subsets/splits, not estimates: no interval
        for key in (k for m in members for k in m.keys if k in replicates and not k.endswith("_std")):
            bias_corrected = KEYS[key].bias_corrected
            ci, bias = half_sampling_interval(
                values[key], torch.tensor(replicates[key], dtype=torch.float64), len(inputs.x),
                options.ci_level, bias_corrected,
            )
            result.ci[key] = ci = clip(ci, KEYS[key].bounds)
            if inputs.stats is not None:
                result.warnings.append(
                    f"{key}: the reference is given as statistics, so its interval covers the generated "
                    "set's sampling only; pass reference features for an interval over both sets."
                )
            if bias_corrected:
                result.info[f"{key}_bias"] = bias
                result.warnings += interval_warning(key, values[key], ci, bias)


def replicate_values(with_ci: list, options: MetricOptions) -> tuple[dict[str, list[float]], dict[int, str]]:
    """Each key's values on options.bootstrap pairs of halves, and why a group had none (too few samples)."""
    plain = dataclasses.replace(options, bootstrap=0)
    replicates: dict[str, list[float]] = {}
    too_small: dict[int, str] = {}
    for b in range(options.bootstrap):
        halves: dict = {}  # one pair of halves per distinct input, shared by the groups using it
        with neighbours.shared_searches(knn_neighbours([m for m, _, _ in with_ci], options)):
            for members, inputs, _ in with_ci:
                if id(inputs) not in halves:
                    # replicate b's halves depend on (seed, b) only, not on which metrics were asked for
                    halves[id(inputs)] = halve(inputs, torch.Generator().manual_seed(options.seed * 100_003 + b))
                keys = [k for m in members for k in m.keys]
                try:
                    values, _ = compute_group(members, halves[id(inputs)], plain, replicate=True)
                except UsageError as e:  # e.g. k-NN metrics on halves of 3 samples: no interval, say why
                    note = f"no interval for {', '.join(keys)}: half of each set is too small ({e})"
                    too_small.setdefault(id(members[0]), note)
                    continue
                for k in (k for k in keys if k in values):
                    replicates.setdefault(k, []).append(values[k])
    return replicates, too_small


def clip(interval: tuple[float, float], bounds: tuple[float | None, float | None]) -> tuple[float, float]:
    """The interval within the value's range (FID's population value is >= 0: a normal interval need not be)."""
    lo, hi = interval
    if bounds[0] is not None:
        lo, hi = max(lo, bounds[0]), max(hi, bounds[0])
    if bounds[1] is not None:
        lo, hi = min(lo, bounds[1]), min(hi, bounds[1])
    return lo, hi


def halve(inputs: GroupInputs, generator: torch.Generator) -> GroupInputs:
    """Half of each set, drawn without replacement (the reference statistics, if that is all there is, kept)."""
    fake_rows = half_indices(len(inputs.x), generator)
    real_rows = None if inputs.y is None else half_indices(len(inputs.y), generator)
    return take_rows(inputs, fake_rows, real_rows, {})
