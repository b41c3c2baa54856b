"""Dataset protocol and the one image convention used throughout genbench.

Convention: models see images as float32 N x C x H x W in [-1, 1]; feature extractors see
uint8 N x C x H x W, produced by ``images_to_uint8``; points (toy 2-D data, feature vectors)
are float32 N x D.

Two maps take [-1, 1] back to the 256 levels u, the inverses of the two ways data enter [-1, 1]:
  ``round``: round(clamp((x + 1) * 127.5, 0, 255)), the inverse of the grid x = u / 127.5 - 1
    (datasets, and models trained on the grid);
  ``floor``: clamp(floor((x + 1) * 128), 0, 255), the inverse of uniform dequantisation
    x = (u + U[0, 1)) / 128 - 1 (models trained on dequantised pixels, Theis et al. 2016).
On the grid both give u back, so ``floor`` is also right for grid values.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from genbench.errors import UsageError
from genbench.registry import Registry

POINTS = "points"
IMAGES = "images"


@dataclass(frozen=True)
class Samples:
    """A set of examples in data space, with labels where the dataset has them."""

    x: torch.Tensor  # points: [N, D] float32; images: [N, C, H, W] float32 in [-1, 1]
    y: torch.Tensor | None = None  # [N] int64
    modality: str = POINTS

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, n: int, generator: torch.Generator | None = None) -> "Samples":
        """The first ``n`` examples, or a seeded random subset of ``n`` when a generator is given."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=generator)[:n] if generator is not None else torch.arange(n)
        return Samples(self.x[idx], None if self.y is None else self.y[idx], self.modality)

    def uint8(self) -> torch.Tensor:
        """Images as uint8 N x C x H x W (the feature extractors' input)."""
        if self.modality != IMAGES:
            raise UsageError("uint8 quantisation applies to images only; use --features raw for points")
        return images_to_uint8(self.x)

    def content_sha256(self) -> str:
        """sha256 of the values (shape, dtype and bytes): any change of the data gives another hash."""
        x = self.x.detach().cpu().contiguous()
        h = hashlib.sha256(f"{tuple(x.shape)}|{x.dtype}|".encode())
        h.update(x.numpy().tobytes())
        return h.hexdigest()


ROUND = "round"  # x = u / 127.5 - 1: the 8-bit grid
FLOOR = "floor"  # x = (u + U[0, 1)) / 128 - 1: uniformly dequantised pixels
QUANTISATIONS = (ROUND, FLOOR)


def images_to_uint8(x: torch.Tensor, quantisation: str = ROUND) -> torch.Tensor:
    """Quantise images in [-1, 1] to uint8 by the named map (see the module doc)."""
    if quantisation == ROUND:
        return torch.round(((x.float() + 1.0) * 127.5).clamp(0.0, 255.0)).to(torch.uint8)
    if quantisation == FLOOR:
        return dequantised_to_uint8(x)
    raise UsageError(f"unknown image quantisation {quantisation!r}; use one of: {', '.join(QUANTISATIONS)}")


def dequantised_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """The level u of uniformly dequantised pixels x = (u + U[0, 1)) / 128 - 1: clamp(floor((x + 1) * 128), 0, 255).

    In float64, where x + 1 and the product are exact for float32 x, so a value just below a bin
    edge stays in its bin.
    """
    return torch.floor((x.double() + 1.0) * 128.0).clamp(0.0, 255.0).to(torch.uint8)


def uint8_to_images(u: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [-1, 1] (the inverse of ``images_to_uint8`` on the grid)."""
    return u.float() / 127.5 - 1.0


@dataclass(frozen=True)
class Modality:
    """What a kind of data owns (points, images, token sequences): the runner, ``genbench eval`` and the
    reference cache ask it, they never branch on its name.

    ``features_input(x, quantisation)`` turns a model's or a dataset's examples into what its feature
    extractors take (images: uint8 by the named map; points and SMILES: as they are);
    ``extractor_inputs`` are the ``input_kind`` values of the extractors that accept it;
    ``default_features`` is the feature space ``eval`` uses when nothing else decides (for images the
    dataset decides: ``reference.default_features``).

    A set's examples ``x`` (a sample type's ``x``: a tensor for points and images, a tuple of strings
    for SMILES) pass through the runner only by these hooks (defaults: tensors): ``concat`` joins the
    batches a model drew, ``count_nonfinite`` counts examples holding NaN or Inf, ``preview`` keeps a
    few for the store's figures, ``batches`` splits ``x`` onto a device for ``log_likelihood``,
    ``likelihood_input`` is what ``log_likelihood`` scores (images: uniformly dequantised).
    ``example_dataset`` names a registered dataset that is always there offline and small enough for
    the shared contract tests (tests/test_model_contract.py) to train every family of the modality on.
    """

    name: str
    sample_type: type
    extractor_inputs: tuple[str, ...]
    default_features: str
    features_input: Callable[[Any, str], Any]
    # the default feature space takes a dataset's name (chem:moses: novelty against moses's train split)
    features_name_dataset: bool = False
    concat: Callable[[list], Any] = lambda chunks: torch.cat([c.detach().float().cpu() for c in chunks])
    count_nonfinite: Callable[[Any], int] = lambda x: int((~torch.isfinite(x.reshape(len(x), -1))).any(1).sum())
    preview: Callable[[Any, str], Any] = lambda x, quantisation: x[:PREVIEW_POINTS].float().numpy()
    batches: Callable[[Any, int, Any], Any] = lambda x, size, device: (b.to(device) for b in x.split(size))
    likelihood_input: Callable[[Any, torch.Generator], Any] = lambda x, generator: x
    example_dataset: str | None = None

    def default_features_for(self, dataset: str | None) -> str:
        """The default feature space for data of ``dataset`` (None: a user's file)."""
        return f"{self.default_features}:{dataset}" if dataset and self.features_name_dataset else self.default_features

    def check_extractor(self, extractor, what: str) -> None:
        """One line when ``extractor`` cannot take this modality (``what`` names the input)."""
        if extractor.input_kind not in self.extractor_inputs:
            raise UsageError(f"{what} holds {self.name}, but --features {extractor.name} needs {extractor.input_kind}; "
                             f"use --features {self.default_features}")


PREVIEW_IMAGES, PREVIEW_POINTS = 64, 2000  # what the store keeps per spec for the sample figures


def dequantise_uniform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images on the 8-bit grid -> (u + U[0, 1)) / 128 - 1, U from ``generator`` (what image likelihoods score)."""
    from genbench.metrics.likelihood import dequantise

    return dequantise(x, generator)


MODALITIES: Registry[Modality] = Registry("modality", package="genbench.data")
MODALITIES.register(POINTS, Modality(POINTS, Samples, ("points",), "raw", lambda x, quantisation: x,
                                     example_dataset="toy2d:8gaussians"),
                    description="float N x D points or feature vectors")
MODALITIES.register(IMAGES, Modality(IMAGES, Samples, ("images", "points"), "inception",
                                     lambda x, quantisation: images_to_uint8(x, quantisation),
                                     preview=lambda x, quantisation: images_to_uint8(x[:PREVIEW_IMAGES], quantisation).numpy(),
                                     likelihood_input=dequantise_uniform, example_dataset="digits"),
                    description="float N x C x H x W in [-1, 1], uint8 for the extractors")


def get_modality(name: str) -> Modality:
    return MODALITIES.get(name)


class Dataset(ABC):
    """A registered dataset. Instances are cheap; ``load`` does the I/O."""

    modality: ClassVar[str] = POINTS
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    num_classes: ClassVar[int | None] = None
    description: ClassVar[str] = ""

    name: str = ""
    shape: tuple[int, ...] = ()  # shape of one example

    @abstractmethod
    def load(self, split: str = "train", data_root: Path | None = None) -> Samples:
        """Load one split. Raises DataUnavailableError (a UsageError) when files are missing."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor | None:
        """Exact log-density in nats per example where it is analytic, else None."""
        return None

    def modes(self) -> tuple[torch.Tensor, float] | None:
        """(centres [K, D], std) of an equal-weight isotropic Gaussian mixture, where the dataset is one, else None.

        The toy mode metrics (modes captured, high-quality share) read them.
        """
        return None

    def check_split(self, split: str) -> str:
        if split not in self.splits:
            raise UsageError(
                f"dataset {self.name!r} has no split {split!r}; use one of: {', '.join(self.splits)}"
            )
        return split

    def info(self) -> dict:
        return {"name": self.name, "modality": self.modality, "shape": list(self.shape)}


DATASETS: Registry[Dataset] = Registry("dataset", package="genbench.data")


def get_dataset(name: str) -> Dataset:
    return DATASETS.get(name)


def parse_dataset_ref(ref: str, default_split: str = "test") -> tuple[Dataset, str]:
    """Resolve ``NAME[:SPLIT]`` where NAME may itself contain ':' (``toy2d:moons:train``)."""
    if ref in DATASETS:
        return DATASETS.get(ref), default_split
    head, _, split = ref.rpartition(":")
    if head and head in DATASETS:
        ds = DATASETS.get(head)
        return ds, ds.check_split(split)
    DATASETS.get(ref)  # raises the "did you mean" error
    raise AssertionError("unreachable")
