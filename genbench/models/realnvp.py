"""``realnvp``: multi-scale RealNVP on images (Dinh, Sohl-Dickstein & Bengio 2017).

Architecture (paper section 3.6): at each scale but the last, three affine couplings with
alternating checkerboard masks, a squeeze, three affine couplings with alternating channel masks,
and half the channels factored out to the N(0, I) prior; the last scale is four checkerboard
couplings. Coupling networks are convolutional ResNets (``n_blocks`` residual blocks of width
``hidden``) with RealNVP's bounded log-scale ``scale * tanh``. Where the paper normalises with
batch norm, each coupling is preceded by an ActNorm (Glow's data-initialised per-channel affine),
which is deterministic and identical in training and evaluation.

Pixels are uniformly dequantised and logit-transformed (section 4.1, alpha = ``logit_alpha``);
``log_likelihood`` is the exact density of the dequantised data on [-1, 1] (kind ``exact``).
Sampling is one inverse pass (NFE 1); samples are dequantised pixels, floored back to 8 bits by
the runner (``sample_quantisation = "floor"``).
``n_scales`` scales squeeze n_scales - 1 times, so H and W must be divisible by 2^(n_scales - 1)
and keep at least 2x2 pixels for the last checkerboard (8x8: n_scales <= 3; 28x28: <= 3).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from genbench.errors import UsageError
from genbench.models.base import MODELS
from genbench.models.nets.flow_layers import (
    ActNorm,
    Coupling,
    FactorOut,
    ImageFlowFamily,
    MultiScaleFlow,
    Squeeze,
    check_squeezes,
)


@MODELS.register("realnvp", description="multi-scale RealNVP: checkerboard/channel affine couplings, ResNet nets, factor-out (Dinh et al. 2017); exact likelihood, NFE 1")
class RealNVPMultiScale(ImageFlowFamily):
    family = "realnvp"
    preprocessing = "logit"

    def __init__(self, data_shape, modality, num_classes=None, n_scales: int = 2, hidden: int = 32, n_blocks: int = 2,
                 logit_alpha: float = 0.05):
        super().__init__(data_shape, modality, num_classes, n_scales=n_scales, hidden=hidden, n_blocks=n_blocks,
                         logit_alpha=logit_alpha)

    @classmethod
    def check_fits(cls, data_shape, modality, num_classes, config: dict[str, Any]) -> None:
        n_scales = int(config.get("n_scales", 2))
        if n_scales < 1 or int(config.get("n_blocks", 2)) < 1 or not 0 < float(config.get("logit_alpha", 0.05)) < 0.5:
            raise UsageError("realnvp needs n_scales >= 1, n_blocks >= 1 and 0 < logit_alpha < 0.5; fix the recipe's config")
        check_squeezes("realnvp", data_shape, n_scales - 1, 2, "n_scales")

    def build_flow(self) -> MultiScaleFlow:
        cfg = self.config
        c, h, w = self.data_shape
        stages, splits, latents = [], [], []

        def couplings(shape, mask, parities):
            layers: list[nn.Module] = []
            for p in parities:
                layers += [ActNorm(shape[0]), Coupling(shape, mask, p, True, "resnet", cfg["hidden"], cfg["n_blocks"], "tanh")]
            return layers

        for _ in range(cfg["n_scales"] - 1):
            # checkerboard x3, squeeze, channel x3, then factor out half the channels
            stage = couplings((c, h, w), "checkerboard", (0, 1, 0)) + [Squeeze()]
            c, h, w = 4 * c, h // 2, w // 2
            stages.append(stage + couplings((c, h, w), "channel", (0, 1, 0)))
            split = FactorOut(c, learned_prior=False)
            splits.append(split)
            latents.append((c // 2, h, w))
            c -= c // 2
        stages.append(couplings((c, h, w), "checkerboard", (0, 1, 0, 1)))
        latents.append((c, h, w))
        return MultiScaleFlow(stages, splits, latents)
