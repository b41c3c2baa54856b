"""``fashion-mnist``: Zalando's Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747).

60,000 train / 10,000 test greyscale 28x28 images of 10 clothing classes, exactly 6,000 and
1,000 per class. The splits are the published ones. Pixels 0..255 map to [-1, 1] as
u / 127.5 - 1 (exactly invertible by ``images_to_uint8``).

Files: ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (or the same names without .gz),
looked for under ``--data-root DIR`` in ``DIR/fashion-mnist/``, ``DIR/FashionMNIST/raw/`` and
``DIR`` itself; then in ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu:
``apt-get install dataset-fashion-mnist``); then in the genbench cache, downloaded there by
torchvision when online. Decoding is genbench's own IDX reader; the published label counts
are checked, so MNIST files (same names) are refused with a clear message.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from genbench.data.base import DATASETS
from genbench.data.torchvision_sets import IdxImageDataset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class FashionMnist(IdxImageDataset):
    name = "fashion-mnist"
    description = "Fashion-MNIST, 60,000 train / 10,000 test, 28x28 greyscale (Debian package, --data-root, or download)"
    tv_name = "FashionMNIST"
    root_subdirs = ("fashion-mnist", "FashionMNIST/raw", ".")
    system_dirs = (DEBIAN_DIR,)
    package_hint = "apt-get install dataset-fashion-mnist (Debian/Ubuntu; files land in /usr/share/datasets/fashion-mnist)"
    label_counts: ClassVar[dict[str, tuple[int, ...]]] = {"train": (6000,) * 10, "test": (1000,) * 10}

    def info(self) -> dict:
        return {**super().info(), "classes": list(CLASSES)}


DATASETS.register(FashionMnist.name, FashionMnist(), description=FashionMnist.description)
