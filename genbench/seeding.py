"""Per-sample seeds, so that results depend neither on the batch size nor on the device.

Every sample ``i`` of a run with seed ``s`` owns a CPU ``torch.Generator`` seeded with
``sample_seed(s, i)``; all its noise (initial latent, per-step noise of stochastic samplers)
is drawn from that generator on the CPU and then moved to the device, so the same sample is
bit-identical whatever batch it falls into (after NVlabs/edm's StackedRandomGenerator).

A ``SeededNoise`` may also carry one class label per sample (``labels``, [N] int64), which a
class-conditional family samples from; ``balanced_labels`` gives sample ``i`` the class
``i mod C``, so every class is asked for equally often and a sample's class, like its noise,
does not depend on the batch it falls into.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a run seeded with ``seed``."""
    digest = hashlib.sha256(f"genbench:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def balanced_labels(n: int, num_classes: int, start: int = 0) -> torch.Tensor:
    """Classes of samples ``start .. start + n - 1`` of a run: sample i asks for class i mod C. [n] int64."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return torch.arange(start, start + n, dtype=torch.int64) % num_classes


class SeededNoise:
    """Noise for a batch of samples, each row from its own generator, and optionally each row's class label."""

    def __init__(self, seeds: list[int], device: torch.device | str = "cpu", labels: torch.Tensor | None = None):
        self.seeds = list(seeds)
        self.device = torch.device(device)
        self._gens = [torch.Generator().manual_seed(s) for s in self.seeds]
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
            if labels.shape != (len(self.seeds),):
                raise ValueError(f"labels must be [N] with one class per sample (N = {len(self.seeds)}), got {tuple(labels.shape)}")
        self.labels = labels  # [N] int64 on the CPU, or None

    @classmethod
    def for_run(cls, seed: int, n: int, device: torch.device | str = "cpu", start: int = 0,
                num_classes: int | None = None) -> "SeededNoise":
        """Noise of samples ``start .. start + n - 1`` of a run; with ``num_classes``, their balanced labels too."""
        labels = balanced_labels(n, num_classes, start) if num_classes else None
        return cls([sample_seed(seed, i) for i in range(start, start + n)], device, labels)

    def __len__(self) -> int:
        return len(self.seeds)

    def batches(self, batch_size: int):
        """Split into consecutive SeededNoise views that share the generators' state."""
        for start in range(0, len(self), batch_size):
            sub = SeededNoise.__new__(SeededNoise)
            sub.seeds = self.seeds[start : start + batch_size]
            sub.device = self.device
            sub._gens = self._gens[start : start + batch_size]
            sub.labels = None if self.labels is None else self.labels[start : start + batch_size]
            yield sub

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal noise of shape [len(self), *shape]."""
        rows = [torch.randn(shape, generator=g, dtype=dtype) for g in self._gens]
        return torch.stack(rows).to(self.device)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform [0, 1) noise of shape [len(self), *shape]."""
        rows = [torch.rand(shape, generator=g, dtype=dtype) for g in self._gens]
        return torch.stack(rows).to(self.device)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        rows = [torch.randint(high, shape, generator=g) for g in self._gens]
        return torch.stack(rows).to(self.device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for training-time randomness."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
