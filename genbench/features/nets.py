"""Plumbing shared by the network-backed feature extractors (inception, vgg16, domain).

* Locating a weights file: ``--weights PATH``, then an environment variable, then the torch hub
  cache (``torch.hub.get_dir()/checkpoints``, where torch-fidelity and torchvision put their
  downloads); ``None`` means "not present here", and the caller may download.
* Reading a ``.pth`` file safely: its bytes are hashed and unpickled with
  ``torch.load(weights_only=True)``, so a file that embeds code is refused before any network
  sees it.
* Feeding uint8 image tensors to a network in batches, without a DataLoader round trip.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from genbench.errors import RunFailure, UsageError
from genbench.features.base import FeatureExtractor

OFFLINE_ENV = "GENBENCH_OFFLINE"  # set to 1 to never download weights
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a published weights file may be found, and how to recognise it."""

    what: str  # "InceptionV3 FID weights"
    env: str  # environment variable holding a path
    hub_names: tuple[str, ...]  # file names in the torch hub cache, preferred first
    known_sha256: str  # sha256 of the published file


@dataclass(frozen=True)
class WeightsFile:
    """A weights file that was found and read: its path, its bytes' sha256 and where it came from."""

    path: Path
    sha256: str
    source: str  # "argument", "environment", "hub cache", "download"
    blob: bytes


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights(spec: PretrainedWeights, weights: Path | str | None) -> tuple[Path, str] | None:
    """The first weights file present: argument, environment variable, hub cache; else None."""
    if weights is not None:
        return _existing(Path(weights), spec, "--weights"), "argument"
    if os.environ.get(spec.env):
        return _existing(Path(os.environ[spec.env]), spec, f"${spec.env}"), "environment"
    for name in spec.hub_names:
        path = hub_checkpoint_dir() / name
        if path.is_file():
            return path, "hub cache"
    return None


def _existing(path: Path, spec: PretrainedWeights, via: str) -> Path:
    from genbench.features.base import check_weights_path

    return check_weights_path(path, f"{spec.what} file (from {via})", "pass the path of the .pth file")


def missing_weights_error(spec: PretrainedWeights, cause: str) -> UsageError:
    """The one-line answer when no weights are present and none could be downloaded."""
    return UsageError(
        f"no {spec.what} here and {cause}; provide them in one of three ways: --weights PATH, "
        f"{spec.env}=PATH, or copy {spec.hub_names[0]} into {hub_checkpoint_dir()}"
    )


def download_allowed() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes")


@contextmanager
def download_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    """Bound the socket timeout so that a download attempt offline fails instead of hanging."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def read_weights(path: Path, source: str) -> WeightsFile:
    """Read a weights file once; hash the exact bytes that will be loaded."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read weights file {path} ({e.strerror}); check the path and its permissions") from None
    return WeightsFile(path, hashlib.sha256(blob).hexdigest(), source, blob)


def safe_state_dict(w: WeightsFile) -> dict[str, torch.Tensor]:
    """Unpickle with ``weights_only=True``: tensors only, never code."""
    try:
        with warnings.catch_warnings():  # torch warns about unusual pickle protocols: keep stderr to one line
            warnings.simplefilter("ignore")
            sd = torch.load(io.BytesIO(w.blob), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means "not a plain state dict"
        raise UsageError(
            f"weights file {w.path} is not a plain PyTorch state dict ({type(e).__name__}); "
            "pass the .pth file of tensors published for this network"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError(f"weights file {w.path} holds no state dict of tensors; pass the network's .pth state dict")
    return sd


def tensors_of(w: WeightsFile, hint: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, or of a plain PyTorch state dict (``safe_state_dict``)."""
    if w.path.suffix != ".safetensors":
        return safe_state_dict(w)
    from safetensors.torch import load

    try:
        return load(w.blob)
    except Exception as e:  # noqa: BLE001 - any failure means "not a safetensors file"
        raise UsageError(f"weights file {w.path} is not a readable safetensors file ({type(e).__name__}); {hint}") from None


@dataclass(frozen=True)
class PublishedFile:
    """A published weights file whose sha256 a public record states."""

    name: str  # "timm/vit_base_patch14_dinov2.lvd142m model.safetensors"
    sha256: str
    source: str  # where the sha256 is stated (URL)


def verify_weights(sha256: str, published: tuple[PublishedFile, ...], what: str) -> tuple[bool, str]:
    """(standard, verification): whether a file's sha256 is that of a published file, and one line
    saying which file, or that the file differs, or that no published sha256 is known to compare with."""
    for f in published:
        if sha256 == f.sha256:
            return True, f"verified: the sha256 of {f.name} as published at {f.source}"
    if published:
        return False, (f"non-standard: differs from every published {what} file genbench knows "
                       f"({', '.join(f.name for f in published)})")
    return False, f"unverified: no published sha256 of the {what} weights is known to genbench; the file's is recorded"


def as_rgb_uint8(x: torch.Tensor, who: str) -> torch.Tensor:
    """Check uint8 N x C x H x W and repeat a grey channel to RGB: [N, 1|3, H, W] -> [N, 3, H, W]."""
    x = check_uint8_images(x, who)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise UsageError(f"{who} takes 1 or 3 channels, got {x.shape[1]}; pass grey or RGB images")
    return x


def check_uint8_images(x: torch.Tensor, who: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.dtype != torch.uint8:
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise UsageError(
            f"{who} takes uint8 N x C x H x W images, got {got}; quantise with genbench.data.base.images_to_uint8"
        )
    return x


def features_in_batches(
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    x: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Run ``forward`` over consecutive slices of ``x`` on ``device``; concatenate on the CPU."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}; pass a positive --batch-size")
    if x.shape[0] == 0:
        raise UsageError("no images to extract features from; pass at least one image")
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device, non_blocking=True)
            for key, value in forward(xb).items():
                parts.setdefault(key, []).append(value.float().cpu())
    return {k: torch.cat(v, dim=0) for k, v in parts.items()}


# -- the opt-in fast path (``genbench eval --fast``) ------------------------------------------------

FAST_CHANNELS_LAST = "channels_last float32"
FAST_BF16 = "channels_last + bfloat16 autocast"


def fast_path_recipe(device: torch.device) -> str:
    """What the fast path does on ``device``: bfloat16 autocast where the hardware computes in it (a
    GPU; a CPU with AMX or AVX512-BF16), else channels_last alone (bfloat16 emulated on an AVX2 CPU
    ran slower than float32: issue 11)."""
    if device.type == "cuda":
        return FAST_BF16
    native_bf16 = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return FAST_BF16 if native_bf16 else FAST_CHANNELS_LAST


def fast_autocast(device: torch.device, recipe: str | None):
    """The autocast context of a fast-path ``recipe`` (a no-op for the exact path and channels_last alone)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe == FAST_BF16)


# -- torch-fidelity networks with pretrained weights (inception, vgg16) ----------------------------

NetBuilder = Callable[["io.BytesIO | None"], torch.nn.Module]  # weights bytes (None: download) -> network


def load_pretrained(spec: PretrainedWeights, build: NetBuilder, weights: Path | str | None, network: str,
                    hint: str) -> tuple[torch.nn.Module, WeightsFile]:
    """Resolve, read and load the weights; returns the network (CPU, eval) and its weights file."""
    located = locate_weights(spec, weights)
    if located is None:
        return _download_pretrained(spec, build)
    wf = read_weights(*located)
    safe_state_dict(wf)  # refuses pickled code before torch-fidelity unpickles the same bytes
    try:
        net = build(io.BytesIO(wf.blob))
    except (RuntimeError, ValueError, KeyError) as e:
        raise UsageError(f"weights file {wf.path} does not fit {network} ({str(e).splitlines()[0]}); {hint}") from None
    return net, wf


def _download_pretrained(spec: PretrainedWeights, build: NetBuilder) -> tuple[torch.nn.Module, WeightsFile]:
    if not download_allowed():
        raise missing_weights_error(spec, "downloads are off (GENBENCH_OFFLINE is set)")
    try:
        with download_timeout():
            net = build(None)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, timeouts, DNS failures ...
        raise missing_weights_error(spec, f"the download failed ({type(e).__name__})") from None
    path = hub_checkpoint_dir() / spec.hub_names[0]
    if not path.is_file():
        raise RunFailure(f"the {spec.what} were downloaded but {path} is missing; pass --weights PATH")
    return net, read_weights(path, "download")


class PretrainedFeatures(FeatureExtractor):
    """A torch-fidelity network whose outputs, in order, are ``feature_keys`` (its ``layers``)."""

    network: ClassVar[str] = ""  # torch-fidelity's class name
    layers: ClassVar[tuple[str, ...]] = ()  # torch-fidelity's names of the outputs, as feature_keys
    known_sha256: ClassVar[str] = ""  # the published weights; others are marked non-standard

    def __init__(self, net: torch.nn.Module, weights: WeightsFile, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.weights_path = weights.path
        self.weights_source = weights.source
        self.weights_sha256 = weights.sha256
        self.standard = weights.sha256 == self.known_sha256

    def extract(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        # [N, 1|3, H, W] uint8 -> {key: [N, D]} for each feature key, in one pass
        x = as_rgb_uint8(x, self.name)
        return features_in_batches(self._forward, x, batch_size, self.device)

    def _forward(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        with fast_autocast(self.device, self.fast_path):
            return dict(zip(self.feature_keys, self.net(xb)))

    def use_fast_path(self) -> str:
        self.fast_path = fast_path_recipe(self.device)
        self.net = self.net.to(memory_format=torch.channels_last)
        return self.fast_path

    def identity(self) -> dict:
        import torch_fidelity

        return {
            **super().identity(),
            "network": f"torch-fidelity {torch_fidelity.__version__} {self.network}",
            "layers": dict(zip(self.feature_keys, self.layers)),
            "weights_source": self.weights_source,
        }
