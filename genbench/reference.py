"""Reference features and statistics: computed once, cached, reused.

``reference_features`` turns a dataset split into feature arrays with a given extractor and
caches them under ``CACHE/reference`` as safetensors (written atomically), keyed by everything
they depend on: dataset name, definition (``info()``), a sha256 of the split's values, the data
root, split, n, the subset seed, the extractor's name, weights sha256, preprocessing, layers and
output keys, the torch and torch-fidelity versions, and this module's format version. A second call with
the same key reads the file; a change in any of them computes a new entry.

``save_stats``/``load_stats`` write and read a portable statistics file (features, the mean
and covariance of ``pool`` in float64 with ddof 1 as FID uses them (Heusel et al. 2017), and
metadata: the extractor's identity and the dataset), as ``.safetensors`` or ``.npz`` by its
suffix, which ``genbench eval X stats.safetensors`` accepts as its reference input; a file made
with other weights or preprocessing than the extractor in use is refused (``check_stats_identity``).

``default_features`` picks the extractor a dataset is evaluated with when none is named.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import torch

from genbench import cache
from genbench.data.base import IMAGES, ROUND, Dataset, Samples, get_dataset, get_modality
from genbench.errors import UsageError
from genbench.features.base import POOL, FeatureExtractor

REFERENCE_FORMAT = "genbench-reference-v2"
STATS_FORMAT = "genbench-stats-v1"
SUBSET_SEED = 0  # n < split size: a random subset drawn with torch.Generator().manual_seed(0)
MU, SIGMA = "mu", "sigma"
_FEATURE_PREFIX = "features."


# ----------------------------------------------------------------------------------------------
# Cached reference features


def reference_key(dataset: str, split: str, n: int | None, extractor: FeatureExtractor,
                  data_root: Path | None = None, data_sha256: str | None = None) -> dict:
    """Everything the reference features depend on (hashed into the cache file name): the dataset's
    definition (``info()``) and content (sha256 of the split's values), where it was read from, the
    extractor's identity and layers, and the versions of the libraries that compute them."""
    ident = extractor.identity()
    if data_sha256 is None:
        data_sha256 = samples_sha256(load_split(dataset, split, data_root))
    return {
        "format": REFERENCE_FORMAT,
        "dataset": dataset,
        "dataset_info": get_dataset(dataset).info(),
        "data_sha256": data_sha256,
        "data_root": str(Path(data_root).resolve()) if data_root else None,
        "split": split,
        "n": n,
        "subset_seed": SUBSET_SEED,
        "features": ident["features"],
        "weights_sha256": ident["weights_sha256"],
        "preprocessing": ident["preprocessing"],
        "feature_keys": list(extractor.feature_keys),
        "layers": [str(v) for v in getattr(extractor, "layers", ())],
        "versions": feature_library_versions(),
    }


def feature_library_versions() -> dict[str, str]:
    """Versions of the libraries whose kernels compute features (a new version can change the last bits)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": torch.__version__}
    try:
        out["torch-fidelity"] = version("torch-fidelity")
    except PackageNotFoundError:
        pass
    return out


def samples_sha256(samples: Samples) -> str:
    """sha256 of a split's values (shape, dtype and bytes): any change of the data gives another key."""
    return samples.content_sha256()


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
    full = load_split(dataset, split, data_root)
    key = reference_key(dataset, split, n, extractor, data_root, samples_sha256(full))
    path = reference_cache_path(key)
    cached = _read_cached(path, key)
    if cached is not None:
        return cached
    samples = take_subset(full, n)
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
    return take_subset(load_split(dataset, split, data_root), n)


def load_split(dataset: str, split: str, data_root: Path | None = None) -> Samples:
    ds = get_dataset(dataset)
    return ds.load(ds.check_split(split), data_root)


def take_subset(samples: Samples, n: int | None) -> Samples:
    if n is None or n >= len(samples):
        return samples
    return samples.take(n, torch.Generator().manual_seed(SUBSET_SEED))


def extractor_input(samples: Samples, extractor: FeatureExtractor, what: str) -> torch.Tensor:
    """What the extractor takes, as the samples' modality says: uint8 N x C x H x W for images; float N x D
    for points (only the point extractors take those); strings for SMILES (only ``chem`` takes those)."""
    modality = get_modality(samples.modality)
    modality.check_extractor(extractor, what)
    return modality.features_input(samples.x, ROUND)


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


STATS_SUFFIXES = (".safetensors", ".npz")
_NPZ_META = "__genbench_stats__"  # a 0-d unicode array holding the metadata JSON (no pickle)


def save_stats(path: Path, features: dict[str, torch.Tensor], identity: dict, dataset_info: dict) -> Path:
    """Write features, mu/sigma of ``pool`` and metadata to one file (atomically), in the format its
    suffix names: ``.safetensors``, or ``.npz`` (numpy arrays, readable with ``allow_pickle=False``)."""
    path = Path(path)
    suffix = stats_suffix(path)
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
    if suffix == ".safetensors":
        cache.atomic_save_tensors(path, tensors, meta)
    else:
        import numpy as np

        buf = io.BytesIO()
        arrays = {k: v.detach().cpu().contiguous().numpy() for k, v in tensors.items()}
        np.savez(buf, **arrays, **{_NPZ_META: np.array(_canonical(meta))})
        cache.atomic_write_bytes(path, buf.getvalue())
    return path


def stats_suffix(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in STATS_SUFFIXES:
        raise UsageError(f"statistics file {path} has suffix {suffix or '(none)'!r}; name it .safetensors or .npz")
    return suffix


def is_stats_file(ref: str | Path) -> bool:
    """True for an existing ``.safetensors`` file, or an ``.npz`` written by ``save_stats``."""
    path = Path(ref)
    if not path.is_file():
        return False
    if path.suffix.lower() == ".safetensors":
        return True
    if path.suffix.lower() != ".npz":
        return False
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return f"{_NPZ_META}.npy" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def load_stats(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """``(features, {"mu", "sigma"}, metadata)`` of a file written by ``save_stats``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"statistics file {path} does not exist; write one with `genbench stats DATASET --out {path}`")
    tensors, raw = _read_npz_stats(path) if path.suffix.lower() == ".npz" else cache.load_tensors(path)
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


def _read_npz_stats(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise UsageError(f"{path} is not a readable .npz statistics file ({e}); write one with `genbench stats DATASET --out FILE.npz`") from None
    meta = arrays.pop(_NPZ_META, None)
    raw = json.loads(str(meta)) if meta is not None else {}
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, raw


def check_stats_identity(path: Path | str, meta: dict, identity: dict) -> None:
    """Refuse a statistics file made with other features, weights or preprocessing than ``identity``
    (its numbers would be compared in two different feature spaces)."""
    made = meta.get("identity") or {"features": meta.get("features")}
    for field, what in (("features", "features"), ("weights_sha256", "feature weights (sha256)"),
                        ("preprocessing", "preprocessing")):
        if field in made and made.get(field) != identity.get(field):
            fix = (f"pass --features {made.get('features')}" if field == "features" else
                   "pass the --weights the file was made with, or rebuild it with `genbench stats` and these weights"
                   if field == "weights_sha256" else "rebuild it with `genbench stats` and this genbench version")
            raise UsageError(f"statistics file {path} was computed with {what} {made.get(field)!r}, but the extractor "
                             f"here has {identity.get(field)!r}; {fix}")


# ----------------------------------------------------------------------------------------------
# Default extractor


def default_features(dataset: Dataset, weights: Path | None) -> str:
    """``inception`` for natural (RGB) images when its weights are here (argument, environment or
    hub cache; no download), else ``domain:<name>`` when a classifier for the dataset is shipped,
    else ``raw``; points are always ``raw``."""
    from genbench.features.domain import shipped_classifier_names
    from genbench.features.inception import inception_weights_present

    if dataset.modality != IMAGES:
        return get_modality(dataset.modality).default_features_for(dataset.name)
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
