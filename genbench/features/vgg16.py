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

from genbench.errors import RunFailure, UsageError
from genbench.features.base import FEATURES, POOL, FeatureExtractor
from genbench.features.nets import (
    PretrainedWeights,
    WeightsFile,
    as_rgb_uint8,
    download_allowed,
    download_timeout,
    features_in_batches,
    hub_checkpoint_dir,
    locate_weights,
    missing_weights_error,
    read_weights,
    safe_state_dict,
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
    located = locate_weights(VGG16_WEIGHTS, weights)
    if located is None:
        return _download_vgg16()
    wf = read_weights(*located)
    safe_state_dict(wf)  # refuses pickled code before torch-fidelity unpickles the same bytes
    try:
        net = torch_fidelity_vgg16(io.BytesIO(wf.blob))
    except (RuntimeError, ValueError, KeyError) as e:
        raise UsageError(
            f"weights file {wf.path} does not fit torchvision's VGG16 ({str(e).splitlines()[0]}); "
            "pass torchvision's vgg16-397923af.pth"
        ) from None
    return net, wf


def _download_vgg16() -> tuple[torch.nn.Module, WeightsFile]:
    if not download_allowed():
        raise missing_weights_error(VGG16_WEIGHTS, "downloads are off (GENBENCH_OFFLINE is set)")
    try:
        with download_timeout():
            net = torch_fidelity_vgg16(None)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, timeouts, DNS failures ...
        raise missing_weights_error(VGG16_WEIGHTS, f"the download failed ({type(e).__name__})") from None
    path = hub_checkpoint_dir() / VGG16_WEIGHTS.hub_names[0]
    if not path.is_file():
        raise RunFailure(f"torchvision downloaded the VGG16 weights but {path} is missing; pass --weights PATH")
    return net, read_weights(path, "download")


class VGG16Features(FeatureExtractor):
    """torch-fidelity's VGG16: fc2 after ReLU as ``pool`` [N, 4096], and ``fc2`` before it."""

    name = "vgg16"
    feature_keys = (POOL, FC2)
    preprocessing = (
        "vgg16-v1: uint8 RGB (grey repeated to 3 channels); torch-fidelity 0.4.0 TF1-compatible "
        "bilinear resize to 224x224, ImageNet mean/std normalisation, float32"
    )

    def __init__(self, net: torch.nn.Module, weights: WeightsFile, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.weights_path = weights.path
        self.weights_source = weights.source
        self.weights_sha256 = weights.sha256
        self.standard = weights.sha256 == KNOWN_SHA256

    def extract(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        # [N, 1|3, H, W] uint8 -> {"pool": [N, 4096], "fc2": [N, 4096]}
        x = as_rgb_uint8(x, "vgg16")
        return features_in_batches(self._forward, x, batch_size, self.device)

    def _forward(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        fc2_relu, fc2 = self.net(xb)
        return {POOL: fc2_relu, FC2: fc2}

    def identity(self) -> dict:
        import torch_fidelity

        return {
            **super().identity(),
            "network": f"torch-fidelity {torch_fidelity.__version__} FeatureExtractorVGG16",
            "layers": {POOL: TF_FEATURES[0], FC2: TF_FEATURES[1]},
            "weights_source": self.weights_source,
        }


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
