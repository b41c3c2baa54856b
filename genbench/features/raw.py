"""``raw``: points, or flattened pixels, used as features as they are."""

from __future__ import annotations

import torch

from genbench.features.base import FEATURES, POOL, FeatureExtractor


class RawFeatures(FeatureExtractor):
    """Points or flattened pixels as features (uint8 images are scaled to [0, 1])."""

    name = "raw"
    input_kind = "points"
    feature_keys = (POOL,)
    preprocessing = "raw-v1: float points as given; uint8 pixels / 255, flattened"

    def extract(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        # [N, ...] -> [N, D]
        return {POOL: x.reshape(x.shape[0], -1).float().cpu()}


@FEATURES.register("raw", description="points or flattened pixels as they are (no network)")
def build_raw(arg=None, weights=None, device="cpu") -> RawFeatures:
    return RawFeatures()
