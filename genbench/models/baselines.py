"""Reference rows of a leaderboard, as model families: ``data`` (real examples) and ``noise`` (uniform noise).

A benchmark's numbers mean little without the values of its two ends. ``data`` returns real examples of
the split it was fitted on (the train split in a suite), scored against the reference split (test), so
its row is what a perfect model would get at that sample size: the floor of FID/FVD, the ceiling of
precision and coverage. ``noise`` returns independent uniform noise over the data's range (pixels
uniform in [-1, 1] for images and videos that hold black and white), the value of a model that learned nothing. Both go through
the runner like any family (recipes ``real-data`` and ``noise``); nothing in the runner knows them.

``data`` keeps a seeded random subset of at most ``capacity`` training examples in its checkpoint; sample
i is the stored example that sample i's own generator picks (uniform, with replacement, so a sample does
not depend on its batch; with n samples from m stored examples about n^2 / 2m are repeats). NFE is 1
(one pass, as ``tiny`` counts its closed-form sampler).
"""

from __future__ import annotations

import torch

from genbench.data.base import IMAGES, POINTS, Samples
from genbench.data.video import VIDEO
from genbench.models.base import MODELS, NATIVE, GenerativeModel, Progress, TrainBudget
from genbench.registry import check_choice
from genbench.seeding import SeededNoise


@MODELS.register("data", description="real examples of the training split (the data row of a leaderboard)")
class RealData(GenerativeModel):
    family = "data"
    modalities = (POINTS, IMAGES, VIDEO)

    def __init__(self, data_shape, modality, num_classes=None, capacity: int = 2000):
        super().__init__(data_shape, modality, num_classes, capacity=capacity)
        self.register_buffer("examples", torch.zeros(int(capacity), *self.data_shape))  # [capacity, *data_shape]
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Keep a seeded random subset of min(N, capacity) examples."""
        m = min(len(data), self.examples.shape[0])
        keep = torch.randperm(len(data), generator=generator)[:m]
        self.examples.zero_()
        self.examples[:m] = data.x[keep].to(self.examples)
        self.count.fill_(m)
        if progress:
            progress(budget.steps, budget.steps)
        return {"examples": float(m)}

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        check_choice(sampler, self.supported_samplers(), "sampler for the data family")
        idx = noise.randint(max(int(self.count), 1)).reshape(-1)  # [N]: each sample's pick from its own generator
        return self.examples[idx.to(self.examples.device)].clone(), 1.0


@MODELS.register("noise", description="uniform noise over the data's range (the noise row of a leaderboard)")
class UniformNoise(GenerativeModel):
    family = "noise"
    modalities = (POINTS, IMAGES, VIDEO)

    def __init__(self, data_shape, modality, num_classes=None):
        super().__init__(data_shape, modality, num_classes)
        self.register_buffer("low", torch.full((), -1.0))
        self.register_buffer("high", torch.full((), 1.0))

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Record the data's range: its smallest and largest value ([-1, 1] for images and videos holding black and white)."""
        self.low.fill_(float(data.x.min()))
        self.high.fill_(float(data.x.max()))
        if progress:
            progress(budget.steps, budget.steps)
        return {"low": float(self.low), "high": float(self.high)}

    @torch.no_grad()
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        check_choice(sampler, self.supported_samplers(), "sampler for the noise family")
        u = noise.rand(*self.data_shape).to(self.low.device)  # [N, *data_shape] in [0, 1)
        return self.low + (self.high - self.low) * u, 1.0
