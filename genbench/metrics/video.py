"""Video metrics beyond the Frechet distance of video features (FVD is ``fid`` on a video extractor's ``pool``,
named ``fvd`` by its feature space; see ``metrics.base.FD_NAMES``).

* ``fid_frame``: per-frame FID. Every frame of every video is one sample in an image feature space
  (``frame_pool``: the dataset's image domain classifier), and FID (Heusel et al. 2017) compares the two
  sets of frames: it sees whether each frame looks right, not whether the frames belong together, so a
  model whose frames are drawn independently can match real videos here while its FVD is far off.
* ``tc``: temporal consistency, the mean cosine similarity of consecutive frames' image features
  (``frame_similarity``), the CLIP frame consistency of Esser et al. 2023 ("Structure and
  Content-Guided Video Synthesis with Diffusion Models") in the domain space. It needs no reference set,
  so it is a property of the samples alone and says nothing about their quality: compare it with the
  real data's row. Frames that do not change score 1, and so does noise, nearly: measured on
  moving-digits (500 videos each), real videos 0.958, real frames shuffled across videos 0.362,
  uniform noise 0.980 (the classifier maps every noise frame to much the same features). Read it beside
  per-frame FID and FVD.
"""

from __future__ import annotations

import torch

from genbench.metrics.base import METRICS, Metric, MetricOptions, register_key
from genbench.metrics.fid import fid_compute, fid_replicate

FRAME_POOL = "frame_pool"
FRAME_SIMILARITY = "frame_similarity"

FID_FRAME = register_key("fid_frame", False, "per-frame FID: FID of all frames as images (Heusel et al. 2017)",
                         bias_corrected=True, bounds=(0.0, None))
TC = register_key("tc", True, "temporal consistency: mean cosine similarity of consecutive frames' features "
                  "(Esser et al. 2023)", bounds=(-1.0, 1.0))


def fid_frame_compute(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    """FID of frame features [N1 * T, D] against [N2 * T, D]."""
    values, info = fid_compute(fake, real, options)
    return {FID_FRAME.key: values["fid"]}, info


def fid_frame_replicate(fake: torch.Tensor, real: torch.Tensor, options: MetricOptions) -> tuple[dict[str, float], dict]:
    values, info = fid_replicate(fake, real, options)
    return {FID_FRAME.key: values["fid"]}, info


def tc_compute(similarity: torch.Tensor, real: torch.Tensor | None, options: MetricOptions) -> tuple[dict[str, float], dict]:
    """Mean of the consecutive-frame cosine similarities [N, T - 1]."""
    return {TC.key: float(similarity.double().mean())}, {}


METRICS.register("fid_frame", Metric(
    name="fid_frame", keys=(FID_FRAME.key,), needs=FRAME_POOL, needs_reference=True, compute=fid_frame_compute,
    replicate=fid_frame_replicate, description=FID_FRAME.description))
METRICS.register("tc", Metric(
    name="tc", keys=(TC.key,), needs=FRAME_SIMILARITY, needs_reference=False, compute=tc_compute,
    description=TC.description))
