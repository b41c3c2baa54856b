"""Mode metrics of Gaussian-mixture toy data (VEEGAN, Srivastava et al. 2017, sec. 5.1; PacGAN,
Lin et al. 2018, sec. 5.1), computed on the generated points and the dataset's known modes.

Every generated point is assigned to its nearest mode centre. It is of **high quality** when it
lies within ``mode_radius_stds`` = 3 standard deviations of that centre (VEEGAN). A mode is
**captured** when at least ``mode_min_share`` = 0.8% of the samples are high-quality points
assigned to it (PacGAN's threshold of 20 of 2,500 samples, as a share so that it does not depend
on n). Keys:

* ``modes_captured``: the number of captured modes (8gaussians: at most 8; 25gaussians: 25);
* ``high_quality``: the share of high-quality samples (real data: 1 - exp(-4.5) = 0.989 in 2-D);
* ``mode_kl``: KL(p || uniform) of the high-quality samples' distribution p over the modes
  (PacGAN's reverse KL), 0 when every mode is hit equally often.

They read the reference's ``mode_centres`` and ``mode_std`` (``Dataset.modes``), which only
Gaussian-mixture datasets provide, and the generated points themselves (``raw`` features).
"""

from __future__ import annotations

import math

import torch

from genbench.errors import UsageError
from genbench.metrics.base import MetricOptions, register_group, register_key

MODES_CAPTURED = register_key("modes_captured", True, "modes holding >= 0.8% high-quality samples (PacGAN)",
                              bounds=(0.0, None))
HIGH_QUALITY = register_key("high_quality", True, "share of samples within 3 std of a mode (VEEGAN)", bounds=(0.0, 1.0))
MODE_KL = register_key("mode_kl", False, "KL of the high-quality samples' mode distribution to uniform (PacGAN)",
                       bounds=(0.0, None))
KEYS = (MODES_CAPTURED, HIGH_QUALITY, MODE_KL)
CENTRES, STD = "real.mode_centres", "real.mode_std"


def assign_to_modes(x: torch.Tensor, centres: torch.Tensor, std: float, radius_stds: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest mode [N] int64, high quality [N] bool) of points x [N, D] given centres [K, D]."""
    if x.shape[1] != centres.shape[1]:
        raise UsageError(f"mode metrics need the generated points themselves ({centres.shape[1]}-D, --features raw); "
                         f"got {x.shape[1]}-D features")
    d = torch.cdist(x.double(), centres.double().to(x.device))  # [N, K]
    dist, nearest = d.min(1)
    return nearest, dist <= radius_stds * std


def mode_scores(counts: torch.Tensor, n: int, min_share: float) -> dict[str, float]:
    """Scores from the high-quality counts per mode [K] of n samples."""
    k = len(counts)
    hq = float(counts.sum())
    captured = int((counts >= min_share * n).sum())
    if hq == 0:
        return {MODES_CAPTURED.key: 0.0, HIGH_QUALITY.key: 0.0, MODE_KL.key: math.log(k)}
    p = counts.double() / hq
    kl = float((p[p > 0] * torch.log(p[p > 0] * k)).sum())
    return {MODES_CAPTURED.key: float(captured), HIGH_QUALITY.key: hq / n, MODE_KL.key: kl}


def modes_compute(fake: torch.Tensor, real, options: MetricOptions, extras: dict) -> tuple[dict[str, float], dict]:
    centres, std = extras[CENTRES], float(extras[STD].reshape(-1)[0])
    nearest, good = assign_to_modes(fake, centres, std, options.mode_radius_stds)
    k, n = len(centres), len(fake)
    counts = torch.bincount(nearest[good], minlength=k)  # high-quality samples per mode [K]
    values = mode_scores(counts, n, options.mode_min_share)
    info: dict = {"modes_total": k, "mode_radius_stds": options.mode_radius_stds, "mode_min_share": options.mode_min_share}
    return values, info


register_group("modes", KEYS, modes_compute, needs="pool", extras=(CENTRES, STD))
