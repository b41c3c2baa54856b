"""``sfid``: the spatial Inception features of sFID (Nash, Menick, Dieleman & Battaglia 2021,
"Generating Images with Sparse Representations", ICML), as OpenAI's ADM evaluator (Dhariwal &
Nichol 2021, guided-diffusion ``evaluations/evaluator.py``) computes them.

The ADM evaluator reads the TensorFlow FID graph's ``mixed_6/conv:0`` tensor (N x 17 x 17 x 768
... of which it keeps the first 7 channels) and flattens it: 7 x 17 x 17 = 2,023 dimensions. In
the TF graph, ``mixed_6`` is the fourth 17 x 17 Inception block (``Mixed_6d`` in torch-fidelity's
and torchvision's naming: mixed_3..mixed_7 = Mixed_6a..Mixed_6e) and ``mixed_6/conv`` its 1x1
branch (conv, batch norm, ReLU), which torch-fidelity's converted weights hold as
``Mixed_6d.branch1x1``. torch-fidelity 0.4.0 exposes no spatial layer (its "768" is Mixed_6e
average-pooled), so genbench runs torch-fidelity's own network up to "768" and reads that
branch's output with a forward hook:

* ``pool`` [N, 2023]  ``Mixed_6d.branch1x1(x)[:, :7]`` flattened (channel, row, column)

The order of the 2,023 coordinates differs from ADM's (row, column, channel); a Frechet distance
does not depend on it. The Frechet distance on these features is reported as ``sfid`` (this
extractor's ``space``), never ``fid``. Weights and preprocessing are ``inception``'s (same file,
same sha256 check, ``--weights`` / ``$GENBENCH_INCEPTION_WEIGHTS`` / hub cache).
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import torch

from genbench.errors import UsageError
from genbench.features.base import FEATURES, POOL
from genbench.features.inception import INCEPTION_WEIGHTS, KNOWN_SHA256, TF_NAME
from genbench.features.nets import PretrainedFeatures, load_pretrained

CHANNELS = 7  # ADM evaluator: spatial features[..., :7]
TF_LAYER = "768"  # torch-fidelity's output that the forward pass stops at (Mixed_6e, pooled; discarded)


def torch_fidelity_inception_768(source: io.BytesIO | None):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with contextlib.redirect_stdout(sys.stderr):
        return FeatureExtractorInceptionV3(TF_NAME, [TF_LAYER], feature_extractor_weights_path=source)


class SpatialInceptionFeatures(PretrainedFeatures):
    """sFID features: torch-fidelity InceptionV3 Mixed_6d 1x1 branch, first 7 channels, [N, 2023]."""

    name = "sfid"
    space = "sfid"  # its Frechet distance is reported as ``sfid``
    feature_keys = (POOL,)
    network = "FeatureExtractorInceptionV3"
    layers = ("Mixed_6d.branch1x1[:, :7] (TF mixed_6/conv)",)
    known_sha256 = KNOWN_SHA256
    preprocessing = (
        "inception-v1: uint8 RGB (grey repeated to 3 channels); torch-fidelity 0.4.0 "
        "TF1-compatible bilinear resize to 299x299, (x - 128) / 128, float32"
    )

    def _forward(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        grabbed: list[torch.Tensor] = []
        hook = self.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: grabbed.append(out))
        try:
            self.net(xb)
        finally:
            hook.remove()
        spatial = grabbed[0][:, :CHANNELS]  # [N, 7, 17, 17]
        return {POOL: spatial.reshape(len(spatial), -1).float()}  # [N, 2023]


@FEATURES.register("sfid", description="sFID features: Inception mixed_6/conv, first 7 channels (2,023 dims; ADM evaluator)")
def build_sfid(arg=None, weights: Path | None = None, device="cpu") -> SpatialInceptionFeatures:
    if arg:
        raise UsageError(f"'sfid' takes no argument, got 'sfid:{arg}'; use --features sfid")
    net, wf = load_pretrained(INCEPTION_WEIGHTS, torch_fidelity_inception_768, weights, "torch-fidelity's InceptionV3",
                              "pass the FID weights (weights-inception-2015-12-05-6726825d.pth)")
    return SpatialInceptionFeatures(net, wf, device)
