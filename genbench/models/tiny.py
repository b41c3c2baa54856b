"""``tiny``: a full-covariance Gaussian fitted in closed form.

Registered like the real families so that the whole pipeline (train, sample, likelihood,
checkpoint, metrics, store, leaderboard) is tested in milliseconds on the CPU.
"""

from __future__ import annotations

import math

import torch

from genbench.data.base import ROUND, Samples
from genbench.models.base import MODELS, NATIVE, TEMPERATURE, GenerativeModel, Progress, TrainBudget, check_positive_option
from genbench.registry import check_choice
from genbench.seeding import SeededNoise


@MODELS.register("tiny", description="a full-covariance Gaussian fitted in closed form (pipeline tests)")
class TinyGaussian(GenerativeModel):
    family = "tiny"
    sample_quantisation = ROUND  # trained on the 8-bit grid u / 127.5 - 1
    likelihood_kind = "exact"

    def __init__(self, data_shape, modality, num_classes=None, shrinkage: float = 1e-3):
        super().__init__(data_shape, modality, num_classes, shrinkage=shrinkage)
        d = math.prod(self.data_shape)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale_tril", torch.eye(d))

    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        # [N, D] in float64 for a stable covariance
        x = data.x.reshape(len(data), -1).double()
        mu = x.mean(0)
        cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
        cov = cov + self.config["shrinkage"] * torch.eye(x.shape[1], dtype=cov.dtype)
        self.mean.copy_(mu.float())
        self.scale_tril.copy_(torch.linalg.cholesky(cov).float())
        if progress:
            progress(1, 1)
        return {"nll": float(-self.log_likelihood(data.x.to(self.device)).mean())}

    @classmethod
    def sampling_options(cls, sampler, config=None) -> dict[str, str]:
        return {TEMPERATURE: "scale T of the latent: x = mu + T L z (1: the fitted Gaussian)"}

    @classmethod
    def check_sampling_options(cls, sampler, options, config=None) -> None:
        super().check_sampling_options(sampler, options, config)
        check_positive_option(cls.family, TEMPERATURE, options)

    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None,
               temperature: float = 1.0) -> tuple[torch.Tensor, float]:
        check_choice(sampler, self.supported_samplers(), "sampler for the tiny family")
        self.check_sampling_options(sampler, {TEMPERATURE: temperature})
        d = self.mean.numel()
        z = temperature * noise.randn(d).to(self.mean.device)
        # [N, D] = mu + T L z
        x = self.mean + z @ self.scale_tril.T
        if self.modality == "images":
            x = x.clamp(-1, 1)
        return x.reshape(len(noise), *self.data_shape), 1.0

    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        dist = torch.distributions.MultivariateNormal(self.mean.double(), scale_tril=self.scale_tril.double())
        return dist.log_prob(x.reshape(x.shape[0], -1).double()).float()
