"""Sampler protocol: small pure functions over a denoiser, with schedules built separately.

A diffusion sampler has the signature (after k-diffusion's sampling.py and EDM's Algorithm 1)::

    sample_<name>(denoiser, x, sigmas, noise) -> x_0

``denoiser(x, sigma)`` returns D(x; sigma), the model's estimate of the clean data (EDM
convention, x = x_0 + sigma * eps); ``x`` starts as ``sigmas[0] * noise.randn(...)``;
``sigmas`` is a decreasing 1-D tensor ending in 0; ``noise`` is a ``SeededNoise`` for
stochastic samplers (per-sample seeds). The NFE is counted by ``CountingDenoiser``, never
computed by arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from genbench.registry import Registry
from genbench.seeding import SeededNoise

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SamplerFn = Callable[[Denoiser, torch.Tensor, torch.Tensor, "SeededNoise | None"], torch.Tensor]


@dataclass(frozen=True)
class Sampler:
    name: str
    fn: SamplerFn | None  # None for ``native`` (the family's own procedure)
    kind: str  # "diffusion" (pure function over a denoiser), "native", or a family's own kind
    stochastic: bool
    description: str
    adaptive: bool = False  # step sizes chosen by the solver for the whole batch (steps set its tolerance)
    # optional step schedule of its own, (model, steps) -> schedule (e.g. a vp sampler that follows a scheduler)
    timesteps: Callable | None = None


# model families may register samplers of their own kind (consistency, langevin) in their modules
SAMPLERS: Registry[Sampler] = Registry("sampler", package=("genbench.samplers", "genbench.models"))


def register_sampler(name: str, kind: str = "diffusion", stochastic: bool = False, description: str = "",
                     timesteps: Callable | None = None, adaptive: bool = False):
    """Decorator: register a sampler function under ``name`` (``timesteps``: its own step schedule, if any)."""

    def add(fn: SamplerFn) -> SamplerFn:
        doc = description or (fn.__doc__ or "").strip().splitlines()[0]
        SAMPLERS.register(name, Sampler(name, fn, kind, stochastic, doc, adaptive=adaptive, timesteps=timesteps), description=doc)
        return fn

    return add


def samplers_of_kind(kind: str) -> list[str]:
    return [e.name for e in SAMPLERS.entries() if e.obj.kind == kind]


class CountingDenoiser:
    """Wraps a denoiser and counts its calls (NFE per sample = calls, batch-independent)."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, sigma)


SAMPLERS.register(
    "native",
    Sampler("native", None, "native", False, "the model family's own sampling procedure (one pass or ancestral)"),
    description="the model family's own sampling procedure (one pass or ancestral)",
)
