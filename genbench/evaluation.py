"""``genbench eval``: metrics between a generated set and a reference set (the torch-fidelity use case).

An input is an image folder, an ``.npz``/``.npy`` array, ``dataset:NAME[:SPLIT]``, or (reference
only) a statistics file written by ``genbench stats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genbench.data.base import IMAGES, ROUND, Samples, get_modality
from genbench.errors import UsageError


@dataclass
class FeatureSet:
    """Features of one input, with what is needed to report on it."""

    features: dict[str, torch.Tensor]
    n: int
    source: str
    stats: dict[str, torch.Tensor] | None = None


def is_stats_file(ref: str) -> bool:
    from genbench.reference import is_stats_file as _is_stats_file

    return _is_stats_file(ref)


def resolve_eval_features(features: str, inputs: list[Samples | None], refs: list[str], weights: Path | None,
                          stats_meta: dict | None = None) -> str:
    """``auto``: the features a statistics file records; raw for points; the dataset's default for
    ``dataset:`` inputs; else inception."""
    if features != "auto":
        return features
    if stats_meta is not None and stats_meta.get("features"):
        return str(stats_meta["features"])
    loaded = [s for s in inputs if s is not None]
    if any(s.modality != IMAGES for s in loaded):  # points, SMILES: the modality's own feature space
        return default_features_for(loaded, refs)
    from genbench.reference import default_features
    from genbench.data.base import parse_dataset_ref

    for ref in refs:
        if ref.startswith("dataset:"):
            ds, _ = parse_dataset_ref(ref[len("dataset:"):])
            return default_features(ds, weights)
    return "inception"


def default_features_for(loaded: list[Samples], refs: list[str]) -> str:
    """The non-image modality's default (raw, chem); ``chem:NAME`` when a ``dataset:`` input is a
    molecule dataset, so that novelty is measured against its train split."""
    from genbench.data.base import parse_dataset_ref

    modality = get_modality(next(s.modality for s in loaded if s.modality != IMAGES))
    for ref in refs:
        if ref.startswith("dataset:"):
            ds, _ = parse_dataset_ref(ref[len("dataset:"):])
            if ds.modality == modality.name:
                return modality.default_features_for(ds.name)
    return modality.default_features_for(None)


def subsample(s: Samples, n: int | None, seed: int) -> Samples:
    if n is None or n >= len(s):
        return s
    return s.take(n, torch.Generator().manual_seed(seed))


def samples_to_featureset(s: Samples, extractor, ref: str, batch_size: int) -> FeatureSet:
    """Features of ``s``, given to the extractor as its modality says (images: uint8 on the grid)."""
    modality = get_modality(s.modality)
    modality.check_extractor(extractor, f"input {ref}")
    return FeatureSet(extractor.extract(modality.features_input(s.x, ROUND), batch_size=batch_size), len(s), ref)


def load_featureset(ref: str, n: int | None, seed: int, extractor, batch_size: int, samples: Samples | None,
                    stats_file: tuple | None = None) -> FeatureSet:
    """Features of an input; a statistics file must match the extractor's features, weights and preprocessing."""
    if samples is None and stats_file is not None:
        from genbench.reference import check_stats_identity

        feats, stats, meta = stats_file
        check_stats_identity(ref, meta, extractor.identity())
        count = int(next(iter(feats.values())).shape[0]) if feats else int(meta.get("n", 0))
        return FeatureSet(feats, count, ref, stats)
    return samples_to_featureset(subsample(samples, n, seed), extractor, ref, batch_size)


def evaluate(input1: str, input2: str, features: str = "auto", weights: str | Path | None = None,
             metrics: list[str] | None = None, n: int | None = None, seed: int = 2020, device: str = "auto",
             batch_size: int = 256, bootstrap: int = 0, kid_subset_size: int = 1000, data_root: str | Path | None = None,
             fast: bool = False) -> dict[str, Any]:
    """Metrics of ``input1`` (generated) against ``input2`` (reference) as a flat dict; ``fast``: the feature
    network's opt-in fast path (``fast_path`` in the output, and a warning: not the exact numbers)."""
    from genbench.data.files import load_input
    from genbench.features.base import build_features
    from genbench.metrics import MetricOptions, default_metrics, evaluate_features
    from genbench.reference import load_stats
    from genbench.runner import resolve_device

    dev = resolve_device(device)
    root = Path(data_root) if data_root else None
    w = Path(weights) if weights else None
    if n is not None and n < 2:
        raise UsageError(f"--n {n} is too small; metrics need at least 2 samples per set")
    s1 = load_input(input1, root)
    stats_file = load_stats(Path(input2)) if is_stats_file(input2) else None
    s2 = None if stats_file is not None else load_input(input2, root)
    fname = resolve_eval_features(features, [s1, s2], [input1, input2], w, stats_file[2] if stats_file else None)
    extractor = build_features(fname, weights=w, device=dev)
    if fast:
        extractor.use_fast_path()
    f1 = load_featureset(input1, n, seed, extractor, batch_size, s1)
    f2 = load_featureset(input2, n, seed + 1, extractor, batch_size, s2, stats_file)
    check_dims(f1, f2)
    names = metrics or default_metrics(set(f1.features))
    if kid_subset_size < 2:
        raise UsageError(f"--kid-subset-size {kid_subset_size} is too small; use at least 2 (default 1000)")
    options = MetricOptions(bootstrap=bootstrap, device=dev, kid_subset_size=kid_subset_size)
    res = evaluate_features(names, f1.features, f2.features or None, options, real_stats=f2.stats, space=extractor.space)
    out: dict[str, Any] = dict(res.values)
    # n_fake / n_real: the sizes used (the one name for n everywhere); n1 / n2 are deprecated aliases
    out.update({"n_fake": f1.n, "n_real": f2.n, "n1": f1.n, "n2": f2.n, "features": fname, **extractor.identity()})
    if res.ci:
        out["ci"] = {k: list(v) for k, v in res.ci.items()}
    if res.info:
        out["info"] = res.info
    warnings = list(res.warnings) + ([f"fast path ({extractor.fast_path}): features and metrics deviate from the "
                                        "exact path; `genbench bench images` measures by how much"] if fast else [])
    if warnings:
        out["warnings"] = warnings
    return out


def check_dims(f1: FeatureSet, f2: FeatureSet) -> None:
    for key in set(f1.features) & set(f2.features):
        d1, d2 = f1.features[key].shape[1:], f2.features[key].shape[1:]
        if d1 != d2:
            raise UsageError(f"the two inputs have {key} features of different dimensions ({tuple(d1)} vs {tuple(d2)}); "
                             "give inputs of the same shape or compare them with the same --features")
