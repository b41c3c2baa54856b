"""``inception``: the FID InceptionV3 of torch-fidelity 0.4.0, pool features and unbiased logits.

The network is torch-fidelity's own ``FeatureExtractorInceptionV3`` (TensorFlow-compatible
InceptionV3 of Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
Vision", with the 2015-12-05 weights used by FID, Heusel et al. 2017, and by the Inception
Score, Salimans et al. 2016). genbench does not re-implement it: it feeds the network uint8
RGB images (grey repeated to three channels) and reads two of its outputs in one pass:

* ``pool``   [N, 2048]  torch-fidelity's "2048" (FID, KID, precision/recall)
* ``logits`` [N, 1008]  torch-fidelity's "logits_unbiased", the logits without the fc bias (IS)

Weights, in order: the ``weights`` argument (``--weights PATH``), ``$GENBENCH_INCEPTION_WEIGHTS``,
the torch hub cache (``torch.hub.get_dir()/checkpoints``, file ``weights-inception-2015-12-05-
6726825d.pth`` where torch-fidelity downloads it, or pytorch-fid's ``pt_inception-2015-12-05-
6726825d.pth``), else a download by torch-fidelity when online (``GENBENCH_OFFLINE=1`` forbids
it). A local file is unpickled with ``weights_only=True`` before torch-fidelity loads it.

The published file's full sha256 is ``KNOWN_SHA256`` (95,628,359 bytes): the two file names
above are the same bytes, and torch hub's naming convention puts the first 8 hex digits of
this sha256 (6726825d) in the name. The full value was taken from several independent public
records that agree (torch-fidelity itself pins no hash); genbench compares the whole sha256.
A file with another hash is accepted but marked ``standard=False`` in the identity, so its
numbers are never mistaken for FID/IS comparable with papers.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import torch

from genbench.errors import UsageError
from genbench.features.base import FEATURES, LOGITS, POOL
from genbench.features.nets import (
    PretrainedFeatures,
    PretrainedWeights,
    WeightsFile,
    load_pretrained,
    locate_weights,
)

KNOWN_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_WEIGHTS = PretrainedWeights(
    what="InceptionV3 FID weights",
    env="GENBENCH_INCEPTION_WEIGHTS",
    hub_names=("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth"),
    known_sha256=KNOWN_SHA256,
)
TF_FEATURES = ("2048", "logits_unbiased")  # torch-fidelity's names for pool and logits
TF_NAME = "inception-v3-compat"
# Images per InceptionV3 forward on the CPU, whatever ``batch_size`` the caller passes: features then
# never depend on it (oneDNN picks other kernels at other batch sizes); 16 images ran fastest of
# 16/64/128 on a 2-core Xeon (issue 11), and the 299x299 activations held at once grow with the chunk.
CPU_CHUNK = 16


def torch_fidelity_inception(source: io.BytesIO | None):
    """torch-fidelity's InceptionV3 returning (2048, logits_unbiased); ``None`` lets it download."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with contextlib.redirect_stdout(sys.stderr):
        return FeatureExtractorInceptionV3(TF_NAME, list(TF_FEATURES), feature_extractor_weights_path=source)


def load_inception(weights: Path | str | None) -> tuple[torch.nn.Module, WeightsFile]:
    """Resolve, read and load the weights; returns the network (CPU, eval) and its weights file."""
    return load_pretrained(INCEPTION_WEIGHTS, torch_fidelity_inception, weights, "torch-fidelity's InceptionV3",
                           "pass the FID weights (weights-inception-2015-12-05-6726825d.pth)")


class InceptionFeatures(PretrainedFeatures):
    """torch-fidelity's FID InceptionV3: pool [N, 2048] and unbiased logits [N, 1008]."""

    name = "inception"
    feature_keys = (POOL, LOGITS)
    network = "FeatureExtractorInceptionV3"
    layers = TF_FEATURES
    known_sha256 = KNOWN_SHA256
    preprocessing = (
        "inception-v1: uint8 RGB (grey repeated to 3 channels); torch-fidelity 0.4.0 "
        "TF1-compatible bilinear resize to 299x299, (x - 128) / 128, float32"
    )

    def extract(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        # [N, 1|3, H, W] uint8 -> {pool: [N, 2048], logits: [N, 1008]}; fixed chunks on the CPU
        return super().extract(x, CPU_CHUNK if self.device.type == "cpu" else batch_size)


@FEATURES.register("inception", description="torch-fidelity's FID InceptionV3: pool 2048 + unbiased logits 1008")
def build_inception(arg=None, weights=None, device="cpu") -> InceptionFeatures:
    if arg:
        raise UsageError(f"'inception' takes no argument, got 'inception:{arg}'; use --features inception")
    net, wf = load_inception(weights)
    return InceptionFeatures(net, wf, device)


def inception_weights_present(weights: Path | str | None = None) -> bool:
    """Whether weights can be had without a download (argument, environment or hub cache).

    A ``weights`` path or environment variable naming a missing file raises UsageError.
    """
    return locate_weights(INCEPTION_WEIGHTS, weights) is not None


# ----------------------------------------------------------------------------------------------
# Random, non-degenerate weights in torch-fidelity's format (for parity tests without downloads)


def make_random_inception_weights(path: Path | str, seed: int = 0, logit_scale: float = 3.0) -> Path:
    """Write a random InceptionV3 state dict that torch-fidelity loads, and return ``path``.

    Convolutions are Kaiming-normal (He et al. 2015); every BatchNorm's running statistics are
    set to the batch statistics of a small calibration batch (so each layer's output is roughly
    standardised and the 2048 pool features are neither dead nor exploding); the fc weights are
    scaled so that the unbiased logits spread by about ``logit_scale`` across classes on that
    batch (a non-trivial Inception Score). Takes one 299x299 forward pass of 6 images.
    """
    g = torch.Generator().manual_seed(seed)
    net = torch_fidelity_inception(io.BytesIO(_skeleton_state_dict_bytes()))
    _init_random_(net, g)
    pool = _calibrate_batchnorm_(net, _calibration_images(g))  # [6, 2048]
    _scale_fc_(net, pool, g, logit_scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def _skeleton_state_dict_bytes() -> bytes:
    """A state dict with the right keys and shapes (from torchvision's InceptionV3 definition)."""
    import torchvision

    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    buf = io.BytesIO()
    torch.save(tv.state_dict(), buf)
    return buf.getvalue()


def _init_random_(net: torch.nn.Module, g: torch.Generator) -> None:
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu", generator=g)
        elif isinstance(m, torch.nn.BatchNorm2d):
            # gamma ~ U(0.8, 1.2), beta ~ N(0, 0.1^2): standardised outputs, not all identical
            m.weight.data = 0.8 + 0.4 * torch.rand(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)


def _calibration_images(g: torch.Generator, n: int = 3, size: int = 32) -> torch.Tensor:
    # n smooth colour fields and n uniform-noise images: [2n, 3, size, size] uint8
    low = torch.rand(n, 3, 4, 4, generator=g) * 255
    smooth = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.rand(n, 3, size, size, generator=g) * 255
    return torch.cat([smooth, noise]).round().to(torch.uint8)


def _calibrate_batchnorm_(net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Running mean/var := statistics of one training-mode pass; returns that pass's pool features."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, exactly its statistics
    net.train()
    with torch.no_grad():
        pool, _ = net(images)
    net.eval()
    for bn in bns:
        bn.momentum = 0.1
    return pool


def _scale_fc_(net: torch.nn.Module, pool: torch.Tensor, g: torch.Generator, logit_scale: float) -> None:
    w = torch.randn(net.fc.weight.shape, generator=g)  # [1008, 2048]
    with torch.no_grad():
        # spread of the unbiased logits across classes, averaged over images
        spread = (pool @ w.T).std(dim=1).mean()
        net.fc.weight.copy_(w * (logit_scale / spread))
        net.fc.bias.copy_(0.1 * torch.randn(net.fc.bias.shape, generator=g))
