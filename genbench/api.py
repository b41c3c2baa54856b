"""The public Python API: ``evaluate``, ``run_suite``, ``load_results``, ``compute_stats``.

Each CLI command is a thin wrapper over one of these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate(input1: str, input2: str, **kwargs: Any) -> dict[str, Any]:
    """Metrics of a generated set against a reference set (see ``genbench.evaluation.evaluate``)."""
    from genbench.evaluation import evaluate as _evaluate

    return _evaluate(input1, input2, **kwargs)


def run_suite(suite: Any = "default", **kwargs: Any):
    """Run a suite end to end (see ``genbench.pipeline.run_suite``); returns a RunSummary."""
    from genbench.pipeline import run_suite as _run_suite

    return _run_suite(suite, **kwargs)


def load_results(out: str | Path):
    """A run's stored records as a pandas DataFrame."""
    from genbench.store import load_results as _load_results

    return _load_results(out)


def compute_stats(dataset: str, features: str = "auto", out: str | Path | None = None, n: int | None = None,
                  weights: str | Path | None = None, device: str = "auto", data_root: str | Path | None = None,
                  cache_dir: str | Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """Reference features/statistics of ``DATASET[:SPLIT]`` or ``dataset:DATASET[:SPLIT]`` (cached);
    optionally written to ``out`` as .safetensors or .npz (by its suffix)."""
    from genbench import cache
    from genbench.data.base import parse_dataset_ref
    from genbench.data.files import DATASET_PREFIX
    from genbench.features.base import build_features
    from genbench.reference import default_features, reference_features, save_stats, stats_suffix
    from genbench.runner import resolve_device

    if cache_dir is not None:
        cache.set_cache_dir(cache_dir)
    ds, split = parse_dataset_ref(dataset[len(DATASET_PREFIX):] if dataset.startswith(DATASET_PREFIX) else dataset)
    if out is not None:
        stats_suffix(Path(out))  # a bad suffix is refused before any work
    w = Path(weights) if weights else None
    fname = default_features(ds, w) if features == "auto" else features
    extractor = build_features(fname, weights=w, device=resolve_device(device))
    feats = reference_features(ds.name, split, n, extractor, data_root=Path(data_root) if data_root else None)
    count = int(next(iter(feats.values())).shape[0])
    meta = {"dataset": ds.name, "split": split, "n": count, "features": fname}
    if out is not None:
        save_stats(Path(out), feats, extractor.identity(), {**ds.info(), "split": split, "n": count})
    return (Path(out) if out else None), meta
