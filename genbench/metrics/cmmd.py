"""CMMD (Jayasumana et al. 2024, "Rethinking FID: Towards a Better Evaluation Metric for Image
Generation", CVPR): the squared maximum mean discrepancy between CLIP image embeddings with a
Gaussian RBF kernel, sigma = 10, scaled by 1000.

    k(x, y) = exp(-||x - y||^2 / (2 sigma^2))
    CMMD = 1000 * ( mean_{i,j} k(x_i, x_j) + mean_{i,j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j) )

with every mean over all pairs, i = j included (the paper's reference code, a V-statistic, not
KID's unbiased U-statistic). Embeddings are L2-normalised first, as CMMD's embedding code
returns them; float64, kernel sums in blocks of ``options.chunk_size`` rows.
"""

from __future__ import annotations

import torch

from genbench.metrics.base import METRICS, Metric, MetricOptions, register_key

SIGMA = 10.0
SCALE = 1000.0
CMMD = register_key("cmmd", False, "CMMD: RBF-kernel MMD^2 (sigma 10) x 1000 on CLIP embeddings (Jayasumana et al. 2024)")


def mean_rbf(a: torch.Tensor, b: torch.Tensor, sigma: float, chunk: int) -> torch.Tensor:
    """mean_{i,j} exp(-||a_i - b_j||^2 / (2 sigma^2)) for a [A, D], b [B, D] (float64)."""
    gamma = 1.0 / (2.0 * sigma**2)
    b_sq = (b * b).sum(dim=1)  # [B]
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for s in range(0, len(a), chunk):
        ab = a[s:s + chunk]
        d2 = (ab * ab).sum(dim=1)[:, None] + b_sq[None, :] - 2.0 * ab @ b.T  # [chunk, B]
        total += torch.exp(-gamma * d2).sum()
    return total / (len(a) * len(b))


def cmmd(x: torch.Tensor, y: torch.Tensor, sigma: float = SIGMA, scale: float = SCALE, chunk: int = 10_000) -> float:
    """CMMD of embeddings x [N1, D] and y [N2, D] (L2-normalised here), float64."""
    x = torch.nn.functional.normalize(x.to(torch.float64), dim=1)
    y = torch.nn.functional.normalize(y.to(torch.float64), dim=1)
    mmd2 = mean_rbf(x, x, sigma, chunk) + mean_rbf(y, y, sigma, chunk) - 2.0 * mean_rbf(x, y, sigma, chunk)
    return float(scale * mmd2)


def cmmd_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions):
    return {CMMD.key: cmmd(fake, real, chunk=options.chunk_size)}, {"cmmd_sigma": SIGMA, "cmmd_scale": SCALE}


METRICS.register(
    "cmmd",
    Metric(name="cmmd", keys=(CMMD.key,), needs="pool", needs_reference=True, compute=cmmd_compute,
           description=CMMD.description, default=False),
)
