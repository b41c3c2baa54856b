"""The ``video`` modality: a set of videos is a ``Samples`` whose ``x`` is float32 [N, T, C, H, W] in [-1, 1].

Frames follow the image convention (``genbench.data.base``): models see [-1, 1], feature extractors
see uint8, quantised by the map the model declares (``sample_quantisation``), so ``features_input``
is ``images_to_uint8`` applied to every frame: uint8 [N, T, C, H, W]. The extractors that take video
declare ``input_kind = "video"``; the default feature space is the dataset's shipped domain video
classifier (``domain:<dataset>``, ``genbench.features.video_domain``). Previews (the sample figures of
a leaderboard) are the frames of the first few videos, one video per row of the grid.
"""

from __future__ import annotations

import torch

from genbench.data.base import MODALITIES, Modality, Samples, dequantise_uniform, images_to_uint8

VIDEO = "video"
PREVIEW_FRAMES = 64  # frames kept per spec for the sample figure: 64 // T whole videos


def videos_to_uint8(x: torch.Tensor, quantisation: str) -> torch.Tensor:
    """Videos [N, T, C, H, W] in [-1, 1] -> uint8 [N, T, C, H, W] by the named map (frame by frame)."""
    if x.ndim != 5:
        raise ValueError(f"videos must be [N, T, C, H, W], got shape {tuple(x.shape)}")
    return images_to_uint8(x, quantisation)


def video_preview(x: torch.Tensor, quantisation: str):
    """The frames of the first 64 // T videos as uint8 [videos * T, C, H, W] (a grid row per video when T = 8)."""
    videos = max(1, PREVIEW_FRAMES // x.shape[1])
    return videos_to_uint8(x[:videos], quantisation).flatten(0, 1).numpy()


MODALITIES.register(VIDEO, Modality(VIDEO, Samples, (VIDEO,), "domain", videos_to_uint8, features_name_dataset=True,
                                    preview=video_preview, likelihood_input=dequantise_uniform,
                                    example_dataset="moving-digits-mini"),
                    description="float N x T x C x H x W in [-1, 1], uint8 frames for the extractors")
