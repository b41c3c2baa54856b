"""``toy2d:*``: synthetic 2-D distributions, generated with a fixed seed per split.

Mixtures of Gaussians and the checkerboard have exact log-densities (nats); the swiss roll,
moons and spirals do not (``log_prob`` returns None). Train and test splits are drawn with
seeds 0 and 1 respectively, so every run sees the same points.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from genbench.data.base import DATASETS, POINTS, Dataset, Samples

SPLIT_SIZES = {"train": 20_000, "test": 5_000}
SPLIT_SEEDS = {"train": 0, "test": 1}


class Toy2D(Dataset):
    modality = POINTS
    shape = (2,)
    kind = ""
    description = ""

    def __init__(self) -> None:
        self.name = f"toy2d:{self.kind}"

    def load(self, split: str = "train", data_root: Path | None = None) -> Samples:
        self.check_split(split)
        rng = np.random.default_rng(SPLIT_SEEDS[split])
        x = self.draw(SPLIT_SIZES[split], rng)
        return Samples(torch.as_tensor(x, dtype=torch.float32), None, POINTS)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def info(self) -> dict:
        return {**super().info(), "split_sizes": SPLIT_SIZES, "split_seeds": SPLIT_SEEDS}


class GaussianMixture(Toy2D):
    """Equal-weight isotropic Gaussian mixture with known centres."""

    std = 0.1

    def centres(self) -> np.ndarray:
        raise NotImplementedError

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        c = self.centres()
        idx = rng.integers(len(c), size=n)
        return c[idx] + self.std * rng.standard_normal((n, 2))

    def modes(self) -> tuple[torch.Tensor, float]:
        """The mixture's centres [K, 2] (float64) and its per-coordinate standard deviation."""
        return torch.as_tensor(self.centres(), dtype=torch.float64), float(self.std)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.as_tensor(self.centres(), dtype=torch.float64)
        # [N, K] squared distances to each centre
        d2 = ((x.double()[:, None, :] - c[None]) ** 2).sum(-1)
        log_comp = -d2 / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)
        return torch.logsumexp(log_comp, dim=1) - math.log(len(c))


class EightGaussians(GaussianMixture):
    kind = "8gaussians"
    description = "8 Gaussians (std 0.2) on a circle of radius 2; exact density"
    std = 0.2

    def centres(self) -> np.ndarray:
        a = np.arange(8) * (2 * np.pi / 8)
        return 2.0 * np.stack([np.cos(a), np.sin(a)], 1)


class TwentyFiveGaussians(GaussianMixture):
    kind = "25gaussians"
    description = "25 Gaussians (std 0.05) on the 5x5 grid {-2..2}^2; exact density"
    std = 0.05

    def centres(self) -> np.ndarray:
        g = np.arange(-2, 3, dtype=np.float64)
        return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


class Checkerboard(Toy2D):
    kind = "checkerboard"
    description = "uniform on the 8 dark unit squares of a 4x4 board on [-2, 2]^2; exact density 1/8"

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # pick a dark square (i + j even), then a uniform point inside it
        cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0], dtype=np.float64)
        idx = rng.integers(len(cells), size=n)
        return cells[idx] - 2.0 + rng.random((n, 2))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        inside = ((x > -2) & (x < 2)).all(1)
        cell = torch.floor(x + 2.0).long()
        dark = (cell.sum(1) % 2) == 0
        return torch.where(inside & dark, torch.full_like(x[:, 0], -math.log(8.0)), torch.full_like(x[:, 0], -math.inf))


class SwissRoll(Toy2D):
    kind = "swissroll"
    description = "2-D swiss roll (noise 0.25, scaled by 1/5); no analytic density"

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        t = 1.5 * np.pi * (1 + 2 * rng.random(n))
        x = np.stack([t * np.cos(t), t * np.sin(t)], 1) + 0.25 * rng.standard_normal((n, 2))
        return x / 5.0


class Moons(Toy2D):
    kind = "moons"
    description = "two interleaving half circles (noise 0.05), centred; no analytic density"

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        upper = rng.random(n) < 0.5
        t = np.pi * rng.random(n)
        x = np.where(upper[:, None], np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
        return (x - np.array([0.5, 0.25])) * 1.5 + 0.05 * rng.standard_normal((n, 2))


class Spirals(Toy2D):
    kind = "2spirals"
    description = "two interleaved spirals (noise 0.1, scaled by 1/3); no analytic density"

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        t = np.sqrt(rng.random(n)) * 3 * np.pi
        sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        x = sign[:, None] * np.stack([-t * np.cos(t), t * np.sin(t)], 1)
        return (x + 0.1 * 3 * rng.standard_normal((n, 2))) / 3.0


for _cls in (EightGaussians, TwentyFiveGaussians, Checkerboard, SwissRoll, Moons, Spirals):
    _ds = _cls()
    DATASETS.register(_ds.name, _ds, description=_cls.description)
