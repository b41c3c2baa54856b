"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

Pixels are 0..16 in the source; they are put on the 8-bit grid, u = round(x * 255 / 16), and
mapped to [-1, 1] as u / 127.5 - 1, so that models train on exactly what uint8 feature
extractors and bits/dim see. Split: a fixed
permutation (``numpy.random.RandomState(0).permutation(1797)``), the first 1,437 images
(80%) are ``train``, the remaining 360 are ``test``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from genbench.data.base import DATASETS, IMAGES, Dataset, Samples, uint8_to_images

N_TRAIN = 1437


@lru_cache(maxsize=1)
def _load_all() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.RandomState(0).permutation(len(d.target))
    return d.images[perm].astype(np.float32), d.target[perm].astype(np.int64)


class Digits(Dataset):
    modality = IMAGES
    num_classes = 10
    description = "scikit-learn's 8x8 digits (1,437 train / 360 test, fixed permutation seed 0)"
    name = "digits"
    shape = (1, 8, 8)

    def load(self, split: str = "train", data_root: Path | None = None) -> Samples:
        self.check_split(split)
        images, labels = _load_all()
        sl = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, None)
        # [N, 8, 8] in 0..16 -> uint8 grid -> [N, 1, 8, 8] in [-1, 1]
        u = torch.from_numpy(np.rint(images[sl] * (255.0 / 16.0))).to(torch.uint8)
        x = uint8_to_images(u).unsqueeze(1)
        return Samples(x, torch.from_numpy(labels[sl]), IMAGES)

    def info(self) -> dict:
        return {**super().info(), "split": "RandomState(0).permutation, 1437 train / 360 test"}


DATASETS.register("digits", Digits(), description=Digits.description)
