"""Likelihood in bits per dimension, with the convention stated (Theis et al. 2016; Ho et al. 2020).

Images are 8-bit. A continuous model of data in [-1, 1] is evaluated on uniformly dequantised
pixels x = (u + U[0, 1)) / 128 - 1, and its log-density is converted to the density of data in
[0, 1] (add D ln 2) before ``bpd = -log p_[0,1](x) / (D ln 2) + 8`` — the same number as the
common "NLL / (D ln 2) + 8 for data scaled to [0, 1]" convention. A discrete model over the 256
pixel values reports ``bpd = -log P(u) / (D ln 2)`` directly.
"""

from __future__ import annotations

import math

import torch

from genbench.data.base import images_to_uint8
from genbench.metrics.base import register_key

NLL = register_key("nll", False, "negative log-likelihood in nats per example (points)")
CONVENTION = "bits/dim: 8-bit data, uniform dequantisation, -log p / (D ln 2) + 8 for data scaled to [0, 1]"


def dequantise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 u -> (u + U[0,1)) / 128 - 1, uniform dequantisation in model space.

    float32 output, kept inside its bin [u / 128 - 1, (u + 1) / 128 - 1): rounding to float32 could
    otherwise land on the upper edge, so ``dequantised_to_uint8`` (floor) returns u exactly.
    """
    u = images_to_uint8(x).double()
    noise = torch.rand(u.shape, generator=generator, dtype=torch.float64)
    y = ((u + noise) / 128.0 - 1.0).float()
    # the bin's upper edge (u + 1) / 128 - 1 is exact in float32; stay one ulp below it
    upper = ((u + 1.0) / 128.0 - 1.0).float()
    return torch.minimum(y, torch.nextafter(upper, torch.full_like(upper, -2.0)))


def bits_per_dim(log_likelihood: torch.Tensor, dims: int, discrete: bool = False) -> float:
    """Mean bits/dim from per-example log-likelihoods in nats.

    ``discrete``: ``log_likelihood`` is log P over 256 levels per pixel; else it is a log-density
    of dequantised data in [-1, 1].
    """
    ll = log_likelihood.double()
    if discrete:
        return float((-ll / (dims * math.log(2))).mean())
    # log p on [0, 1] = log p on [-1, 1] + D ln 2 (the map y = (x + 1) / 2 has Jacobian 2^-D)
    ll01 = ll + dims * math.log(2)
    return float((-ll01 / (dims * math.log(2)) + 8.0).mean())
