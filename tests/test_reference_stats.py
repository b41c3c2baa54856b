"""Reference features cache, statistics files and the default extractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genbench import cache
from genbench.data.base import IMAGES, Dataset, Samples, get_dataset
from genbench.errors import UsageError
from genbench.features.base import POOL
from genbench.features.raw import RawFeatures
from genbench.reference import (
    MU,
    SIGMA,
    default_features,
    load_stats,
    reference_cache_path,
    reference_features,
    reference_key,
    save_stats,
)


class CountingRaw(RawFeatures):
    """``raw`` with a settable weights hash and a count of extract() calls."""

    def __init__(self, sha: str = "a" * 64):
        self.weights_sha256 = sha
        self.calls = 0

    def extract(self, x, batch_size=256):
        self.calls += 1
        return super().extract(x, batch_size)


def test_second_call_reads_the_cache():
    fe = CountingRaw()
    first = reference_features("digits", "test", 100, fe)
    second = reference_features("digits", "test", 100, fe)
    assert fe.calls == 1
    assert torch.equal(first[POOL], second[POOL]) and first[POOL].shape == (100, 64)
    path = reference_cache_path(reference_key("digits", "test", 100, fe))
    assert path.is_file() and path.parent == cache.subdir("reference")
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temporary file


def test_key_changes_with_n_and_weights():
    fe = CountingRaw("e" * 64)
    k100 = reference_key("digits", "test", 100, fe)
    assert reference_cache_path(k100) != reference_cache_path(reference_key("digits", "test", 50, fe))
    assert reference_cache_path(k100) != reference_cache_path(reference_key("digits", "test", 100, CountingRaw("b" * 64)))
    assert reference_cache_path(k100) != reference_cache_path(reference_key("digits", "train", 100, fe))
    reference_features("digits", "test", 100, fe)
    reference_features("digits", "test", 50, fe)
    assert fe.calls == 2
    other = CountingRaw("f" * 64)
    reference_features("digits", "test", 100, other)
    assert other.calls == 1


def test_subset_is_seeded_and_full_split_when_n_is_none():
    fe = CountingRaw("c" * 64)
    full = reference_features("digits", "test", None, fe)[POOL]
    assert full.shape == (360, 64)
    sub = reference_features("digits", "test", 30, fe)[POOL]
    x = get_dataset("digits").load("test").take(30, torch.Generator().manual_seed(0)).uint8()
    assert torch.equal(sub, x.reshape(30, -1).float() / 255.0)


def test_damaged_cache_entry_is_recomputed():
    fe = CountingRaw("d" * 64)
    reference_features("digits", "test", 20, fe)
    reference_cache_path(reference_key("digits", "test", 20, fe)).write_bytes(b"garbage")
    again = reference_features("digits", "test", 20, fe)
    assert fe.calls == 2 and again[POOL].shape == (20, 64)


def test_bad_n_and_bad_split():
    with pytest.raises(UsageError, match="n must be >= 1"):
        reference_features("digits", "test", 0, CountingRaw())
    with pytest.raises(UsageError, match="no split 'validation'"):
        reference_features("digits", "validation", 10, CountingRaw())


def test_points_dataset_with_an_image_extractor_is_refused():
    class ImageOnly(CountingRaw):
        name = "fake-images"
        input_kind = "images"

    with pytest.raises(UsageError, match="holds points"):
        reference_features("toy2d:moons", "test", 10, ImageOnly())


def test_stats_file_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    feats = {POOL: torch.randn(50, 6, generator=g), "logits": torch.randn(50, 10, generator=g)}
    ident = {"features": "raw", "weights_sha256": None, "preprocessing": "raw-v1", "standard_weights": True}
    path = save_stats(tmp_path / "s.safetensors", feats, ident, {"name": "digits", "split": "test", "n": 50})
    f2, stats, meta = load_stats(path)
    assert torch.equal(f2[POOL], feats[POOL]) and torch.equal(f2["logits"], feats["logits"])
    x = feats[POOL].double().numpy()
    np.testing.assert_allclose(stats[MU].numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats[SIGMA].numpy(), np.cov(x, rowvar=False, ddof=1), rtol=1e-10, atol=1e-12)
    assert stats[MU].dtype == torch.float64
    assert meta["features"] == "raw" and meta["n"] == 50
    assert meta["identity"] == ident and meta["dataset"]["split"] == "test"


def test_load_stats_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_stats(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    cache.atomic_save_tensors(other, {"w": torch.zeros(2)})
    with pytest.raises(UsageError, match="not a genbench statistics file"):
        load_stats(other)


class FakeRGB(Dataset):
    modality = IMAGES
    name = "fake-rgb"
    shape = (3, 32, 32)

    def load(self, split="train", data_root=None) -> Samples:
        return Samples(torch.zeros(4, 3, 32, 32), None, IMAGES)


def test_default_features(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("GENBENCH_INCEPTION_WEIGHTS", raising=False)
    assert default_features(get_dataset("toy2d:moons"), None) == "raw"
    assert default_features(get_dataset("digits"), None) == "domain:digits"
    assert default_features(get_dataset("mnist5k"), None) == "domain:mnist5k"
    assert default_features(get_dataset("fashion-mnist"), None) == "domain:fashion-mnist"
    assert default_features(FakeRGB(), None) == "raw"  # no inception weights here, no classifier
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert default_features(FakeRGB(), weights) == "inception"
    monkeypatch.setenv("GENBENCH_INCEPTION_WEIGHTS", str(weights))
    assert default_features(FakeRGB(), None) == "inception"
    with pytest.raises(UsageError, match="does not exist"):
        default_features(FakeRGB(), Path(tmp_path / "missing.pth"))
