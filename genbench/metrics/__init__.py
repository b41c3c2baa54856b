"""Metrics: pure functions over features, one module per family, registered in ``METRICS``.

``evaluate_features`` is the entry point; ``default_metrics`` and ``higher_is_better`` answer
what can be computed and which direction is better.
"""

from genbench.metrics.base import (
    KEYS,
    METRICS,
    Metric,
    MetricKey,
    MetricOptions,
    MetricResult,
    register_key,
)
from genbench.metrics.bootstrap import warn_if_different_n
from genbench.metrics.evaluate import (
    default_metrics,
    evaluate_features,
    higher_is_better,
)

__all__ = [
    "KEYS",
    "METRICS",
    "Metric",
    "MetricKey",
    "MetricOptions",
    "MetricResult",
    "default_metrics",
    "evaluate_features",
    "higher_is_better",
    "register_key",
    "warn_if_different_n",
]
