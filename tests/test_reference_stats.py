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


# ---------------------------------------------------------------- the cache key names the data (issue 15, item 8)


class RootFile(Dataset):
    """Points read from ``DATA_ROOT/rootfile.npy``: two --data-root copies can hold different data."""

    name = "rootfile"
    shape = (2,)
    splits = ("test",)

    def load(self, split="test", data_root=None) -> Samples:
        return Samples(torch.from_numpy(np.load(Path(data_root) / "rootfile.npy")), None, "points")


@pytest.fixture
def rootfile(monkeypatch):
    from genbench.data.base import DATASETS
    from genbench.registry import Entry

    DATASETS.names()  # load the package before adding to it
    monkeypatch.setitem(DATASETS._entries, "rootfile", Entry("rootfile", RootFile(), "test data"))


def test_changing_a_toy_datasets_definition_gives_new_features(monkeypatch):
    from genbench.data.toy2d import EightGaussians

    fe = CountingRaw()
    before = reference_features("toy2d:8gaussians", "test", 50, fe)
    monkeypatch.setattr(EightGaussians, "std", 0.5)
    after = reference_features("toy2d:8gaussians", "test", 50, fe)
    assert fe.calls == 2 and not torch.equal(before[POOL], after[POOL])
    monkeypatch.setattr("genbench.data.toy2d.SPLIT_SEEDS", {"train": 0, "test": 7})
    reseeded = reference_features("toy2d:8gaussians", "test", 50, fe)
    assert fe.calls == 3 and not torch.equal(after[POOL], reseeded[POOL])


def test_two_data_roots_with_different_contents_are_two_entries(tmp_path, rootfile):
    g = torch.Generator().manual_seed(0)
    for name, shift in (("a", 0.0), ("b", 5.0)):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "rootfile.npy", (torch.randn(30, 2, generator=g) + shift).numpy())
    fe = CountingRaw()
    fa = reference_features("rootfile", "test", None, fe, data_root=tmp_path / "a")
    fb = reference_features("rootfile", "test", None, fe, data_root=tmp_path / "b")
    assert fe.calls == 2 and not torch.equal(fa[POOL], fb[POOL])
    assert torch.equal(reference_features("rootfile", "test", None, fe, data_root=tmp_path / "a")[POOL], fa[POOL])
    assert fe.calls == 2  # the first root's entry is still there and still right
    np.save(tmp_path / "a" / "rootfile.npy", np.zeros((30, 2), dtype=np.float32))  # same root, new contents
    assert torch.equal(reference_features("rootfile", "test", None, fe, data_root=tmp_path / "a")[POOL], torch.zeros(30, 2))
    assert fe.calls == 3


def test_key_names_everything_the_features_depend_on():
    key = reference_key("toy2d:moons", "test", 10, CountingRaw())
    assert key["dataset_info"] == get_dataset("toy2d:moons").info()
    assert len(key["data_sha256"]) == 64 and "torch" in key["versions"]
    assert key["feature_keys"] == [POOL] and "layers" in key and "data_root" in key


# ---------------------------------------------------------------- stats files: format by suffix, identity checked


def _feats(n=40, d=5):
    g = torch.Generator().manual_seed(1)
    return {POOL: torch.randn(n, d, generator=g), "logits": torch.randn(n, 3, generator=g)}


IDENT = {"features": "raw", "weights_sha256": None, "preprocessing": "raw-v1", "standard_weights": True}


def test_npz_stats_file_is_numpy_without_pickle_and_round_trips(tmp_path):
    feats = _feats()
    npz = save_stats(tmp_path / "s.npz", feats, IDENT, {"name": "x"})
    st = save_stats(tmp_path / "s.safetensors", feats, IDENT, {"name": "x"})
    with np.load(npz, allow_pickle=False) as z:  # plain numpy arrays, no pickled objects
        np.testing.assert_array_equal(z["features.pool"], feats[POOL].numpy())
    assert npz.read_bytes()[:2] == b"PK" and st.read_bytes()[:2] != b"PK"
    (fa, sa, ma), (fb, sb, mb) = load_stats(npz), load_stats(st)
    assert all(torch.equal(fa[k], fb[k]) for k in feats) and torch.equal(sa[SIGMA], sb[SIGMA])
    assert ma["identity"] == mb["identity"] == IDENT and ma["n"] == 40
    from genbench.reference import is_stats_file

    np.savez(tmp_path / "images.npz", x=np.zeros((2, 4, 4), np.uint8))
    assert is_stats_file(str(npz)) and is_stats_file(str(st)) and not is_stats_file(str(tmp_path / "images.npz"))
    with pytest.raises(UsageError, match=r"name it \.safetensors or \.npz"):
        save_stats(tmp_path / "s.pkl", feats, IDENT, {})


def test_stats_cli_writes_the_format_its_suffix_names_and_eval_reads_it(tmp_path):
    from genbench.api import compute_stats, evaluate

    path, meta = compute_stats("dataset:toy2d:moons:test", features="raw", out=tmp_path / "m.npz", n=200)
    assert meta["n"] == 200 and path.read_bytes()[:2] == b"PK"
    _, _, m = load_stats(path)
    assert m["features"] == "raw"
    a = evaluate("toy2d:moons:train", str(path), metrics=["fid"], n=200)  # NAME:SPLIT without dataset: too
    b = evaluate("dataset:toy2d:moons:train", "dataset:toy2d:moons:test", metrics=["fid"], n=200, seed=2020)
    assert a["n_fake"] == 200 and a["n_real"] == 200 and a["fid"] > 0
    with pytest.raises(UsageError, match="name it"):
        compute_stats("toy2d:moons", features="raw", out=tmp_path / "m.txt")
    assert not (tmp_path / "m.txt").exists() and b["n_real"] == 200


@pytest.fixture(scope="module")
def other_digits_classifier(tmp_path_factory):
    """The shipped digits classifier with perturbed weights: same name and preprocessing, other sha256."""
    from safetensors.torch import load_file, save_file

    from genbench.features.domain import META_KEY, safetensors_metadata, shipped_dir

    src = shipped_dir() / "digits.safetensors"
    state = load_file(str(src))
    g = torch.Generator().manual_seed(3)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in state.items()}
    out = tmp_path_factory.mktemp("other") / "digits-other.safetensors"
    save_file(state, str(out), metadata={META_KEY: safetensors_metadata(src.read_bytes())[META_KEY]})
    return out


def test_stats_file_made_with_other_weights_is_refused(tmp_path, other_digits_classifier, one_torch_thread):
    from genbench.api import compute_stats, evaluate
    from genbench.features.base import build_features

    path, _ = compute_stats("digits:test", features="domain:digits", out=tmp_path / "d.safetensors", device="cpu")
    shipped = build_features("domain:digits").weights_sha256
    other = build_features("domain:digits", weights=other_digits_classifier).weights_sha256
    with pytest.raises(UsageError) as e:
        evaluate("dataset:digits:train", str(path), features="domain:digits", weights=other_digits_classifier,
                 metrics=["fid"], n=100, device="cpu")
    assert shipped in str(e.value) and other in str(e.value) and "\n" not in str(e.value)
    # --features auto takes the features the file records (domain:digits, not inception or raw)
    res = evaluate("dataset:digits:train", str(path), metrics=["fid"], n=100, device="cpu")
    assert res["features"] == "domain:digits" and res["weights_sha256"] == shipped and res["n_real"] == 360


def test_stats_file_with_other_preprocessing_is_refused(tmp_path):
    from genbench.evaluation import evaluate

    save_stats(tmp_path / "p.safetensors", _feats(d=2), {**IDENT, "preprocessing": "raw-v0"}, {})
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).standard_normal((40, 2)).astype(np.float32))
    with pytest.raises(UsageError, match="preprocessing 'raw-v0'"):
        evaluate(str(tmp_path / "pts.npy"), str(tmp_path / "p.safetensors"), metrics=["fid"])


def test_genbench_evaluate_works_twice_in_one_process(tmp_path):
    import genbench

    np.save(tmp_path / "a.npy", np.random.default_rng(0).standard_normal((50, 2)).astype(np.float32))
    np.save(tmp_path / "b.npy", np.random.default_rng(1).standard_normal((50, 2)).astype(np.float32))
    first = genbench.evaluate(str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), metrics=["fid"])
    second = genbench.evaluate(str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), metrics=["fid"])
    assert callable(genbench.evaluate) and first["fid"] == second["fid"]
    assert (first["n_fake"], first["n_real"], first["n1"], first["n2"]) == (50, 50, 50, 50)


# ---------------------------------------------------------------- files get the umask's mode (issue 15, item 17)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, mask, mode):
    import os

    old = os.umask(mask)
    try:
        cache.atomic_write_bytes(tmp_path / "board.md", b"x")
        save_stats(tmp_path / "s.safetensors", _feats(), IDENT, {})
        save_stats(tmp_path / "s.npz", _feats(), IDENT, {})
    finally:
        os.umask(old)
    for name in ("board.md", "s.safetensors", "s.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_weights_directory_is_named_as_a_directory(tmp_path):
    from genbench.features.base import build_features

    for name in ("domain:digits", "inception"):
        with pytest.raises(UsageError, match="is a directory"):
            build_features(name, weights=tmp_path)
