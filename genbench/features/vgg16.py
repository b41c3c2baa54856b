"""``vgg16``: torch-fidelity 0.4.0's VGG16 feature extractor, for precision/recall.

Improved precision and recall (Kynkaanniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved
Precision and Recall Metric for Assessing Generative Models") embed images with the fc2 layer
of an ImageNet VGG16 (Simonyan & Zisserman 2015). torch-fidelity 0.4.0 ships that extractor
(``torch_fidelity.feature_extractor_vgg16.FeatureExtractorVGG16``: torchvision's VGG16 with the
classifier cut after fc2, inputs resized to 224x224 with its TF1-compatible bilinear resize and
normalised with the ImageNet mean/std); genbench uses it as it is and returns, in one pass:

* ``pool`` [N, 4096]  torch-fidelity's "fc2_relu", its default layer for precision/recall
* ``fc2``  [N, 4096]  the same layer before the ReLU

Weights, in order: ``--weights PATH``, ``$GENBENCH_VGG16_WEIGHTS``, the torch hub cache
(``vgg16-397923af.pth``, torchvision's ImageNet weights, where torch-fidelity's download puts
them), else a download by torch-fidelity/torchvision when online (not with GENBENCH_OFFLINE=1).
The published file's sha256 is ``KNOWN_SHA256`` (553,433,881 bytes; torch hub puts its first 8
hex digits, 397923af, in the name); taken from several independent public records that
agree. Another file is accepted with ``standard=False``.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import torch

from genbench.errors import UsageError
from genbench.features.base import FEATURES, POOL
from genbench.features.nets import (
    PretrainedFeatures,
    PretrainedWeights,
    WeightsFile,
    load_pretrained,
    locate_weights,
)

FC2 = "fc2"
KNOWN_SHA256 = "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
VGG16_WEIGHTS = PretrainedWeights(
    what="VGG16 ImageNet weights",
    env="GENBENCH_VGG16_WEIGHTS",
    hub_names=("vgg16-397923af.pth",),
    known_sha256=KNOWN_SHA256,
)
TF_FEATURES = ("fc2_relu", "fc2")  # torch-fidelity's names for pool and fc2


def torch_fidelity_vgg16(source: io.BytesIO | None):
    """torch-fidelity's VGG16 returning (fc2_relu, fc2); ``None`` lets it download."""
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    with contextlib.redirect_stdout(sys.stderr):
        return FeatureExtractorVGG16("vgg16", list(TF_FEATURES), feature_extractor_weights_path=source)


def load_vgg16(weights: Path | str | None) -> tuple[torch.nn.Module, WeightsFile]:
    return load_pretrained(VGG16_WEIGHTS, torch_fidelity_vgg16, weights, "torchvision's VGG16",
                           "pass torchvision's vgg16-397923af.pth")


class VGG16Features(PretrainedFeatures):
    """torch-fidelity's VGG16: fc2 after ReLU as ``pool`` [N, 4096], and ``fc2`` before it."""

    name = "vgg16"
    feature_keys = (POOL, FC2)
    network = "FeatureExtractorVGG16"
    layers = TF_FEATURES
    known_sha256 = KNOWN_SHA256
    preprocessing = (
        "vgg16-v1: uint8 RGB (grey repeated to 3 channels); torch-fidelity 0.4.0 TF1-compatible "
        "bilinear resize to 224x224, ImageNet mean/std normalisation, float32"
    )


@FEATURES.register("vgg16", description="torch-fidelity's VGG16 fc2 features (precision/recall, Kynkaanniemi et al.)")
def build_vgg16(arg=None, weights=None, device="cpu") -> VGG16Features:
    if arg:
        raise UsageError(f"'vgg16' takes no argument, got 'vgg16:{arg}'; use --features vgg16")
    net, wf = load_vgg16(weights)
    return VGG16Features(net, wf, device)


def vgg16_weights_present(weights: Path | str | None = None) -> bool:
    """Whether weights can be had without a download (argument, environment or hub cache).

    A ``weights`` path or environment variable naming a missing file raises UsageError.
    """
    return locate_weights(VGG16_WEIGHTS, weights) is not None
