"""Feature-extractor protocol.

An extractor takes uint8 N x C x H x W images (or float N x D points for ``raw``) and returns
named feature arrays in one pass, e.g. ``{"pool": [N, 2048], "logits": [N, 1008]}``. Its
identity (name, weights sha256, preprocessing version) goes into every result's provenance.
Extractors are registered as factories: ``FEATURES.get("domain")(arg="digits", weights=None,
device=dev)`` builds ``domain:digits``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch

from genbench.errors import UsageError
from genbench.registry import Registry

POOL = "pool"
LOGITS = "logits"


class FeatureExtractor(ABC):
    """Maps inputs to named feature arrays (float32 tensors on the CPU)."""

    name: str = ""
    input_kind: ClassVar[str] = "images"  # "images" (uint8 NCHW) or "points" (float N x D)
    feature_keys: ClassVar[tuple[str, ...]] = (POOL,)
    preprocessing: ClassVar[str] = "v1"
    # the feature space's name in metric keys (fd_dinov2, kid_mean_dinov2; metrics.base.space_key);
    # None keeps the keys of the Inception-era metrics (fid, kid_mean, ...)
    space: ClassVar[str | None] = None

    weights_sha256: str | None = None
    standard: bool = True  # False when the weights are not the published ones
    fast_path: str | None = None  # the opt-in fast path in use (``use_fast_path``), None: the exact path

    @abstractmethod
    def extract(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Features of ``x`` (uint8 N x C x H x W, or float N x D for point inputs)."""

    def use_fast_path(self) -> str:
        """Switch to the opt-in fast path (faster, values not equal to the exact path's); returns what it does.
        Extractors without one refuse."""
        raise UsageError(f"features {self.name!r} have no fast path; drop --fast")

    def identity(self) -> dict:
        ident = {
            "features": self.name,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing,
            "standard_weights": self.standard,
        }
        if self.fast_path:  # only then: the exact path's identity (and cache keys) stay as they were
            ident["fast_path"] = self.fast_path
        return ident


Factory = Callable[..., FeatureExtractor]
FEATURES: Registry[Factory] = Registry("feature extractor", package="genbench.features", listing="features")


def build_features(
    name: str,
    *,
    weights: Path | str | None = None,
    device: torch.device | str = "cpu",
) -> FeatureExtractor:
    """Build the extractor ``name`` or ``family:arg`` (``domain:digits``)."""
    family, _, arg = name.partition(":")
    factory = FEATURES.get(family)
    return factory(arg=arg or None, weights=Path(weights) if weights else None, device=torch.device(device))


def check_weights_path(path: Path, what: str, fix: str) -> Path:
    """``path`` when it is a file; else one line saying whether it is a directory or missing, and ``fix``."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory, not a weights file; {fix}")
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist; {fix}")
    return path


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
