"""``i3d``: Inception-v1 inflated to 3-D (I3D; Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?"),
the network of FVD (Unterthiner et al. 2018, "Towards Accurate Generative Models of Video").

FVD is the Frechet distance of I3D's 400 Kinetics logits (averaged over time) between generated and
real videos, reported here as ``fvd_i3d`` (the domain video space's is ``fvd``). Preprocessing as the
FVD reference code does it: frames resized to 224x224 (bilinear), grey repeated to RGB, scaled to
[-1, 1]. I3D's final average pool spans 2x7x7 (time x space); clips too short to leave 2 time steps
after the network's three temporal stride-2 stages (fewer than 9 frames) are pooled over what is left,
so their features are defined but differ from a 16-frame clip's (the reference uses 16 frames).

The network follows DeepMind's kinetics-i3d layout with TensorFlow's "SAME" padding, and its
parameter names are those of the PyTorch port pytorch-i3d (``Conv3d_1a_7x7.conv3d.weight``, ...,
``logits.conv3d.bias``), so that its ``rgb_imagenet.pt`` state dict loads as it is. genbench downloads
nothing: the weights come from ``--weights FILE`` or ``$GENBENCH_I3D_WEIGHTS``, either a state dict saved
with ``torch.save`` (read with ``weights_only=True``, so a file cannot run code) or a ``.safetensors``
file of the same tensors. The file's sha256 is recorded; as no published hash has been verified here the
features are marked ``standard_weights: false``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data.video import VIDEO
from genbench.errors import UsageError
from genbench.features.base import FEATURES, POOL, FeatureExtractor, check_weights_path, sha256_file
from genbench.features.nets import features_in_batches

WEIGHTS_ENV = "GENBENCH_I3D_WEIGHTS"
SIZE = 224
PREPROCESSING = "i3d-fvd-v1: uint8 [N, T, C, H, W] -> bilinear resize to 224x224, grey to RGB, x / 127.5 - 1"
# Inception modules: (name, in channels, [b0, b1a, b1b, b2a, b2b, b3b] output channels)
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_padding(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TensorFlow's "SAME" padding of a [T, H, W] input as F.pad's (w_front, w_back, h_front, h_back, t_front, t_back)."""
    pads = []
    for s, k, st in zip(size, kernel, stride):
        total = max(k - st, 0) if s % st == 0 else max(k - s % st, 0)
        pads.append((total // 2, total - total // 2))
    return [p for pair in reversed(pads) for p in pair]


class Unit3D(nn.Module):
    """Conv3d with SAME padding, BatchNorm (eps 1e-3) and ReLU; the logits layer has a bias and neither."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn_relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.bn_relu = tuple(kernel), tuple(stride), bn_relu
        self.conv3d = nn.Conv3d(c_in, c_out, self.kernel, self.stride, bias=not bn_relu)
        if bn_relu:
            self.bn = nn.BatchNorm3d(c_out, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride)))
        return F.relu(self.bn(x)) if self.bn_relu else x


class MaxPoolSame(nn.Module):
    """Max-pool with SAME padding (zeros; the inputs are ReLU outputs)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride)), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches, concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 max-pool -> 1x1."""

    def __init__(self, c_in: int, c: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(c_in, c[0])
        self.b1a, self.b1b = Unit3D(c_in, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(c_in, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(c_in, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """x [N, 3, T, H, W] in [-1, 1] -> Kinetics logits averaged over time [N, num_classes]."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.end_points = nn.ModuleDict({
            "Conv3d_1a_7x7": Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),
            "MaxPool3d_2a_3x3": MaxPoolSame((1, 3, 3), (1, 2, 2)),
            "Conv3d_2b_1x1": Unit3D(64, 64),
            "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3)),
            "MaxPool3d_3a_3x3": MaxPoolSame((1, 3, 3), (1, 2, 2)),
            **{name: InceptionModule(*MIXED[name]) for name in ("Mixed_3b", "Mixed_3c")},
            "MaxPool3d_4a_3x3": MaxPoolSame((3, 3, 3), (2, 2, 2)),
            **{name: InceptionModule(*MIXED[name]) for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f")},
            "MaxPool3d_5a_2x2": MaxPoolSame((2, 2, 2), (2, 2, 2)),
            **{name: InceptionModule(*MIXED[name]) for name in ("Mixed_5b", "Mixed_5c")},
        })
        self.logits = Unit3D(1024, num_classes, bn_relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.end_points.values():
            x = block(x)
        # average pool 2x7x7 (stride 1; less where the clip is smaller), 1x1x1 logits, mean over the time left
        t, h, w = x.shape[2:]
        x = F.avg_pool3d(x, (min(2, t), min(7, h), min(7, w)), stride=1)
        return self.logits(x).mean(dim=(2, 3, 4))  # [N, num_classes]

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        # pytorch-i3d keeps the blocks as attributes (``Mixed_3b.b0...``); here they sit in ``end_points``
        prefixed = {(f"end_points.{k}" if k.split(".")[0] in self.end_points else k): v for k, v in state.items()}
        # files saved before BatchNorm counted its batches lack num_batches_tracked (unused in eval): fill them
        for k, v in self.state_dict().items():
            if k.endswith("num_batches_tracked"):
                prefixed.setdefault(k, torch.zeros_like(v))
        return super().load_state_dict(prefixed, strict=strict, assign=assign)

    def state_dict_as_pytorch_i3d(self) -> dict[str, torch.Tensor]:
        """The parameters under pytorch-i3d's names (what ``load_state_dict`` takes)."""
        return {k.removeprefix("end_points."): v for k, v in self.state_dict().items()}


def to_i3d_input(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """uint8 videos [N, T, C, H, W] -> float [N, 3, T, size, size] in [-1, 1] (see PREPROCESSING)."""
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[2] not in (1, 3):
        raise UsageError(f"i3d takes uint8 videos [N, T, C, H, W] with 1 or 3 channels, got {x.dtype} {list(x.shape)}")
    n, t = x.shape[:2]
    frames = x.flatten(0, 1).float()  # [N*T, C, H, W]
    if tuple(frames.shape[-2:]) != (size, size):
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    frames = frames.expand(-1, 3, -1, -1) / 127.5 - 1.0
    return frames.reshape(n, t, 3, size, size).transpose(1, 2)


class I3DFeatures(FeatureExtractor):
    """I3D's time-averaged Kinetics logits ``pool`` [N, 400]: the features of FVD."""

    name = "i3d"
    input_kind = VIDEO
    feature_keys = (POOL,)
    preprocessing = PREPROCESSING
    space = "i3d"
    standard = False

    def __init__(self, net: InceptionI3d, sha256: str, device="cpu", size: int = SIZE):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.weights_sha256 = sha256
        self.size = size

    def extract(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        # uint8 [N, T, C, H, W] -> {"pool": [N, 400]}; a few videos at a time (224x224 frames)
        return features_in_batches(self._forward, x, min(batch_size, 8), self.device)

    def _forward(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        return {POOL: self.net(to_i3d_input(xb, self.size).to(self.device))}


def read_i3d_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``: no code runs)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means "not a weights file we can use"
        raise UsageError(f"{path} is not a readable I3D state dict ({type(e).__name__}); pass pytorch-i3d's "
                         "rgb_imagenet.pt or a .safetensors of its tensors") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UsageError(f"{path} holds no state dict of tensors; pass pytorch-i3d's rgb_imagenet.pt")
    return state


def load_i3d(weights: Path | str | None = None, device="cpu", size: int = SIZE) -> I3DFeatures:
    """I3D with the user's weights: ``weights``, else ``$GENBENCH_I3D_WEIGHTS``; never a download."""
    source = weights or os.environ.get(WEIGHTS_ENV)
    if not source:
        raise UsageError(f"i3d needs weights and genbench downloads none: pass --weights FILE (pytorch-i3d's "
                         f"rgb_imagenet.pt, or a .safetensors of it) or set ${WEIGHTS_ENV}")
    path = check_weights_path(Path(source), "I3D weights", "pass pytorch-i3d's rgb_imagenet.pt")
    state = read_i3d_state(path)
    logits = state.get("logits.conv3d.weight")
    net = InceptionI3d(num_classes=int(logits.shape[0]) if logits is not None else 400)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UsageError(f"{path} does not fit I3D ({first}); pass pytorch-i3d's rgb_imagenet.pt") from None
    return I3DFeatures(net, sha256_file(path), device, size)


@FEATURES.register("i3d", description="I3D's Kinetics logits (FVD, Unterthiner et al. 2018; user-supplied weights)")
def build_i3d(arg=None, weights: Path | None = None, device="cpu") -> I3DFeatures:
    if arg:
        raise UsageError(f"'i3d' takes no argument, got 'i3d:{arg}'; use --features i3d")
    return load_i3d(weights, device)
