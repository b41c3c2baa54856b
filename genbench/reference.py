"""Reference features and statistics: computed once, cached, reused.

``reference_features`` turns a dataset split into feature arrays with a given extractor and
caches them under ``CACHE/reference`` as safetensors (written atomically), keyed by everything
they depend on: dataset, split, n, the extractor's name, its weights' sha256, its
preprocessing version, the subset seed and this module's format version. A second call with
the same key reads the file; a change in any of them computes a new entry.

``save_stats``/``load_stats`` write and read a portable statistics file (features, the mean
and covariance of ``pool`` in float64 with ddof 1 as FID uses them (Heusel et al. 2017), and
metadata), which ``genbench eval X stats.safetensors`` accepts as its reference input.

``default_features`` picks the extractor a dataset is evaluated with when none is named.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from genbench import cache
from genbench.data.base import IMAGES, Dataset, Samples, get_dataset
from genbench.errors import UsageError
from genbench.features.base import POOL, FeatureExtractor

REFERENCE_FORMAT = "genbench-reference-v1"
STATS_FORMAT = "genbench-stats-v1"
SUBSET_SEED = 0  # n < split size: a random subset drawn with torch.Generator().manual_seed(0)
MU, SIGMA = "mu", "sigma"
_FEATURE_PREFIX = "features."


# ----------------------------------------------------------------------------------------------
# Cached reference features


def reference_key(dataset: str, split: str, n: int | None, extractor: FeatureExtractor) -> dict:
    """Everything the reference features depend on (hashed into the cache file name)."""
    ident = extractor.identity()
    return {
        "format": REFERENCE_FORMAT,
        "dataset": dataset,
        "split": split,
        "n": n,
        "subset_seed": SUBSET_SEED,
        "features": ident["features"],
        "weights_sha256": ident["weights_sha256"],
        "preprocessing": ident["preprocessing"],
    }


def reference_cache_path(key: dict) -> Path:
    """``CACHE/reference/<dataset>-<split>-<n>-<features>-<sha256(key)[:16]>.safetensors``."""
    stem = "-".join(_safe(str(v)) for v in (key["dataset"], key["split"], key["n"] or "all", key["features"]))
    return cache.subdir("reference") / f"{stem}-{cache.content_key(key)[:16]}.safetensors"


def reference_features(
    dataset: str,
    split: str,
    n: int | None,
    extractor: FeatureExtractor,
    data_root: Path | None = None,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Features of ``n`` examples of ``dataset:split`` (all when ``n`` is None), cached on disk."""
    if n is not None and n < 1:
        raise UsageError(f"reference size n must be >= 1, got {n}; pass a positive --n or leave it out")
    key = reference_key(dataset, split, n, extractor)
    path = reference_cache_path(key)
    cached = _read_cached(path, key)
    if cached is not None:
        return cached
    samples = reference_samples(dataset, split, n, data_root)
    feats = extractor.extract(extractor_input(samples, extractor, f"dataset {dataset!r}"), batch_size=batch_size)
    cache.atomic_save_tensors(path, feats, {"key": _canonical(key), "n": str(len(samples))})
    return feats


def reference_extras(dataset: str, split: str, n: int | None, data_root: Path | None = None) -> dict[str, torch.Tensor]:
    """What the dataset knows about the reference set beyond its features, for the metrics that read it:
    ``labels`` [N] (the same subset as ``reference_features``) where the dataset has labels, and
    ``mode_centres`` [K, D] / ``mode_std`` [1] where it is a Gaussian mixture."""
    from genbench.metrics.base import LABELS, MODE_CENTRES, MODE_STD

    ds = get_dataset(dataset)
    out: dict[str, torch.Tensor] = {}
    if ds.num_classes:
        y = reference_samples(dataset, split, n, data_root).y
        if y is not None:
            out[LABELS] = y.long()
    modes = ds.modes()
    if modes is not None:
        out[MODE_CENTRES] = modes[0]
        out[MODE_STD] = torch.tensor([modes[1]], dtype=torch.float64)
    return out


def _read_cached(path: Path, key: dict) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    try:
        tensors, meta = cache.load_tensors(path)
    except UsageError:
        return None  # a damaged entry is recomputed and replaced
    return tensors if meta.get("key") == _canonical(key) else None


def reference_samples(dataset: str, split: str, n: int | None, data_root: Path | None = None) -> Samples:
    """The split, or a seeded random subset of ``n`` of it (the whole split when n >= its size)."""
    ds = get_dataset(dataset)
    samples = ds.load(ds.check_split(split), data_root)
    if n is None or n >= len(samples):
        return samples
    return samples.take(n, torch.Generator().manual_seed(SUBSET_SEED))


def extractor_input(samples: Samples, extractor: FeatureExtractor, what: str) -> torch.Tensor:
    """uint8 N x C x H x W for images; float N x D for points (only the point extractors take those)."""
    if samples.modality == IMAGES:
        return samples.uint8()
    if extractor.input_kind == "images":
        raise UsageError(f"{what} holds points, but --features {extractor.name} needs images; use --features raw")
    return samples.x


# ----------------------------------------------------------------------------------------------
# Portable statistics files


def features_to_statistics(pool: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean and covariance (ddof 1) of [N, D] features, in float64: {"mu": [D], "sigma": [D, D]}."""
    if pool.dim() != 2 or pool.shape[0] < 2:
        raise UsageError(f"statistics need at least 2 feature vectors, got shape {tuple(pool.shape)}; use a larger --n")
    x = pool.double()
    # mu = mean_i x_i ; sigma = sum_i (x_i - mu)(x_i - mu)^T / (N - 1)
    mu = x.mean(dim=0)
    centred = x - mu
    return {MU: mu, SIGMA: centred.T @ centred / (x.shape[0] - 1)}


def save_stats(path: Path, features: dict[str, torch.Tensor], identity: dict, dataset_info: dict) -> Path:
    """Write features, mu/sigma of ``pool`` and metadata to one safetensors file (atomically)."""
    tensors = {_FEATURE_PREFIX + k: v for k, v in features.items()}
    if POOL in features:
        tensors.update(features_to_statistics(features[POOL]))
    n = int(next(iter(features.values())).shape[0]) if features else 0
    import genbench

    meta = {
        "format": STATS_FORMAT,
        "features": str(identity.get("features")),
        "n": str(n),
        "identity": _canonical(identity),
        "dataset": _canonical(dataset_info),
        "genbench": genbench.__version__,
    }
    cache.atomic_save_tensors(Path(path), tensors, meta)
    return Path(path)


def load_stats(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """``(features, {"mu", "sigma"}, metadata)`` of a file written by ``save_stats``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"statistics file {path} does not exist; write one with `genbench stats DATASET --out {path}`")
    tensors, raw = cache.load_tensors(path)
    if raw.get("format") != STATS_FORMAT:
        raise UsageError(f"{path} is not a genbench statistics file; write one with `genbench stats DATASET --out FILE`")
    features = {k[len(_FEATURE_PREFIX):]: v for k, v in tensors.items() if k.startswith(_FEATURE_PREFIX)}
    stats = {k: tensors[k] for k in (MU, SIGMA) if k in tensors}
    meta = {
        **raw,
        "n": int(raw.get("n", 0)),
        "identity": json.loads(raw.get("identity", "{}")),
        "dataset": json.loads(raw.get("dataset", "{}")),
    }
    return features, stats, meta


# ----------------------------------------------------------------------------------------------
# Default extractor


def default_features(dataset: Dataset, weights: Path | None) -> str:
    """``inception`` for natural (RGB) images when its weights are here (argument, environment or
    hub cache; no download), else ``domain:<name>`` when a classifier for the dataset is shipped,
    else ``raw``; points are always ``raw``."""
    from genbench.features.domain import shipped_classifier_names
    from genbench.features.inception import inception_weights_present

    if dataset.modality != IMAGES:
        return "raw"
    natural = len(dataset.shape) == 3 and dataset.shape[0] == 3
    if natural and inception_weights_present(weights):
        return "inception"
    if dataset.name in shipped_classifier_names():
        return f"domain:{dataset.name}"
    return "raw"


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", s)
