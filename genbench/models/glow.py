"""``glow``: Glow on images (Kingma & Dhariwal 2018).

``n_levels`` levels, each a squeeze, ``n_steps`` flow steps (ActNorm with data-dependent
initialisation, invertible 1x1 convolution in LU form, affine coupling over a channel split with
log-scale log sigmoid(h + 2)), then a split whose factored-out half has a learned conditional
prior N(mu(h_1), sigma(h_1)) (every level but the last). Coupling networks are Glow's
conv3x3 - ReLU - conv1x1 - ReLU - zero-initialised conv3x3 of width ``hidden``; the top prior is
N(0, I) (the paper learns it; stated difference). ``additive: true`` selects additive coupling.

Pixels are uniformly dequantised and scaled to [-0.5, 0.5] as in the paper; ``log_likelihood``
is the exact density of the dequantised data on [-1, 1] (kind ``exact``). Sampling is one inverse
pass (NFE 1) from latents z ~ N(0, T^2 I) with T = ``temperature`` (the paper's reduced-temperature
sampling, 0.7 in its figures), giving dequantised pixels that the runner floors back to 8 bits
(``sample_quantisation = "floor"``); the temperature goes into the recipe (so into the run's hash) and
into each result's train report. ``n_levels`` squeezes need H and W divisible by 2^n_levels
(8x8: n_levels <= 3; 28x28: <= 2).
"""

from __future__ import annotations

from typing import Any

from genbench.errors import UsageError
from genbench.models.base import MODELS
from genbench.models.nets.flow_layers import (
    ActNorm,
    Coupling,
    FactorOut,
    ImageFlowFamily,
    InvConv1x1,
    MultiScaleFlow,
    Squeeze,
    check_squeezes,
)


@MODELS.register("glow", description="Glow: ActNorm, LU 1x1 convolutions, affine couplings, multi-scale (Kingma & Dhariwal 2018); exact likelihood, NFE 1, temperature option")
class Glow(ImageFlowFamily):
    family = "glow"
    preprocessing = "affine"

    def __init__(self, data_shape, modality, num_classes=None, n_levels: int = 2, n_steps: int = 4, hidden: int = 64,
                 additive: bool = False, temperature: float = 1.0):
        super().__init__(data_shape, modality, num_classes, n_levels=n_levels, n_steps=n_steps, hidden=hidden,
                         additive=additive, temperature=temperature)

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config: dict[str, Any]) -> None:
        if int(config.get("n_levels", 2)) < 1 or int(config.get("n_steps", 4)) < 1 or not float(config.get("temperature", 1.0)) > 0:
            raise UsageError("glow needs n_levels >= 1, n_steps >= 1 and temperature > 0; fix the recipe's config")
        check_squeezes("glow", data_shape, int(config.get("n_levels", 2)), 1, "n_levels")

    def sampling_temperature(self) -> float:
        return float(self.config["temperature"])

    def build_flow(self) -> MultiScaleFlow:
        cfg = self.config
        c, h, w = self.data_shape
        stages, splits, latents = [], [], []
        for level in range(cfg["n_levels"]):
            c, h, w = 4 * c, h // 2, w // 2
            stage = [Squeeze()]
            for _ in range(cfg["n_steps"]):
                stage += [ActNorm(c), InvConv1x1(c),
                          Coupling((c, h, w), "channel", 0, not cfg["additive"], "glow", cfg["hidden"], scale="sigmoid")]
            stages.append(stage)
            if level < cfg["n_levels"] - 1:
                splits.append(FactorOut(c, learned_prior=True))
                latents.append((c // 2, h, w))
                c -= c // 2
        latents.append((c, h, w))
        return MultiScaleFlow(stages, splits, latents)
