"""Model-family protocol and safetensors checkpoints.

A family is one ``GenerativeModel`` subclass registered in its own module::

    @MODELS.register("vae")
    class VAE(GenerativeModel): ...

Contract (tested for every registered family in tests/test_model_contract.py):
  fit(data, budget, generator, progress)  -> train report (dict of floats)
  sample(noise, sampler, steps)            -> (samples in data space, NFE per sample)
  log_likelihood(x, noise)                 -> nats per example (kind in ``likelihood_kind``)
  default_steps(sampler, config)           -> steps when a suite names none (may read the recipe's config)
  sample_quantisation                      -> how image samples go back to 8 bits: "round" or "floor"
A class-conditional family sets ``conditional = True``: it trains on the dataset's labels and
samples sample i of ``noise`` from class ``noise.labels[i]`` (``class_labels``); the runner asks
for balanced labels (``seeding.balanced_labels``) and keeps them with the samples for the
metrics that need them (intra-FID, class consistency).
A configuration that cannot fit the data (an image size an upsampling stack cannot reach, no
labels for a conditional family) is refused by the classmethod ``check_fits``, which suites call
for every cell before anything is trained (``check_model_fits``).
Checkpoints are ``<stem>.safetensors`` + ``<stem>.json`` (family, config, data shape):
no pickle, so an untrusted checkpoint cannot run code.
"""

from __future__ import annotations

import inspect
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from genbench.data.base import FLOOR, ROUND, Samples
from genbench.errors import UsageError
from genbench.registry import Registry
from genbench.seeding import SeededNoise

NATIVE = "native"  # the family's own sampling procedure (one pass, ancestral, ...)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class TrainBudget:
    """How much training a recipe asks for."""

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    ema: float | None = None  # EMA decay of the weights used for sampling, None = no EMA

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainBudget":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UsageError(f"unknown training key(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GenerativeModel(nn.Module, ABC):
    """Base class of every model family."""

    family: ClassVar[str] = ""
    likelihood_kind: ClassVar[str | None] = None  # "exact", "elbo", "iwae-<k>", "vlb", "ode" or None
    modalities: ClassVar[tuple[str, ...]] = ("points", "images")
    conditional: ClassVar[bool] = False  # samples one given class per sample (noise.labels)
    # How the runner maps image samples in [-1, 1] back to 8-bit levels for the feature extractors
    # (``genbench.data.base.images_to_uint8``): the inverse of the map that made the training data.
    # "round" for a family trained on the grid u / 127.5 - 1; "floor" for one trained on uniformly
    # dequantised pixels (u + U) / 128 - 1, whose samples fill the bins [u, u + 1) / 128 - 1.
    # A family whose config switches dequantisation overrides this with a property that reads it.
    sample_quantisation: ClassVar[str] = ROUND

    def __init__(self, data_shape: tuple[int, ...], modality: str, num_classes: int | None = None, **config: Any):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        self.modality = modality
        self.num_classes = num_classes
        self.config = dict(config)
        if self.conditional:
            self.check_fits(self.data_shape, modality, num_classes, self.config)

    @classmethod
    def check_fits(cls, data_shape: tuple[int, ...], modality: str, num_classes: int | None, config: dict[str, Any]) -> None:
        """Raise UsageError, naming the constraint, when a configuration cannot fit data of this shape.

        The one such hook: called before training for every cell of a suite and by ``genbench sample``
        (cheap: no network is built); a family with constraints on the data (labels, image sizes an
        upsampling stack reaches, a multi-scale flow's squeezes, a PixelCNN's colour sub-pixels)
        overrides it and calls it from its constructor too.
        """
        if cls.conditional and not num_classes:
            raise UsageError(f"model family {cls.family!r} is class-conditional and needs a dataset with class labels; "
                             "use a labelled dataset (digits, mnist5k, fashion-mnist, ...) or an unconditional family")

    def class_labels(self, noise: SeededNoise) -> torch.Tensor:
        """The class each sample of ``noise`` is asked for: [N] int64 on the model's device (conditional families)."""
        if noise.labels is None:
            raise UsageError(f"model family {self.family!r} is class-conditional: give one label per sample "
                             "(SeededNoise.for_run(..., num_classes=C) asks for balanced classes)")
        y = noise.labels
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= int(self.num_classes or 0)):
            raise UsageError(f"class labels must lie in 0..{int(self.num_classes or 0) - 1}; got {int(y.min())}..{int(y.max())}")
        return y.to(self.device)

    def training_labels(self, data: Samples) -> torch.Tensor:
        """The dataset's labels [N] int64 (conditional families), or a one-line error when it has none."""
        if data.y is None:
            raise UsageError(f"model family {self.family!r} is class-conditional but the training data have no labels; "
                             "use a labelled dataset")
        return data.y.long()

    @classmethod
    def supported_samplers(cls) -> list[str]:
        """Sampler names this family can be sampled with (``native`` unless overridden)."""
        return [NATIVE]

    @classmethod
    def default_steps(cls, sampler: str, config: Mapping[str, Any] | None = None) -> int | None:
        """Step count used when a suite names none (None: the sampler takes no steps).

        ``config`` is the family's configuration as the recipe gives it (None: the family's
        defaults), so a recipe can fix the count (an EBM's ``langevin_steps``).
        """
        return None

    @classmethod
    def sampling_options(cls, sampler: str, config: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Sampling options this family accepts with ``sampler``: name -> one-line meaning (none by default).

        A sampling option is a setting a suite sweeps like steps (``options: {guidance: [0, 1, 2]}``):
        a classifier-free guidance scale, DDIM's eta, a temperature. It goes into the RunSpec (so into
        its hash and every table) and reaches ``sample(noise, sampler, steps, **options)``.
        """
        return {}

    @classmethod
    def check_sampling_options(cls, sampler: str, options: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> None:
        """Raise UsageError (one line) for an option this family does not take with ``sampler``, or a bad
        value; called for every suite cell before anything runs. Families that check values override
        this and call it first."""
        known = cls.sampling_options(sampler, config)
        for name in options:
            if name not in known:
                offer = (f"; it takes {', '.join(sorted(known))}" if known
                         else "; it takes no sampling options")
                raise UsageError(f"model family {cls.family!r} with sampler {sampler!r} has no sampling option "
                                 f"{name!r}{offer}")

    @abstractmethod
    def fit(self, data: Samples, budget: TrainBudget, generator: torch.Generator,
            progress: Progress | None = None) -> dict[str, float]:
        """Train on ``data`` within ``budget``; return a report (final loss, ...)."""

    @abstractmethod
    def sample(self, noise: SeededNoise, sampler: str = NATIVE, steps: int | None = None) -> tuple[torch.Tensor, float]:
        """Draw ``len(noise)`` samples (data space) and the NFE per sample, counted by wrapping the net.

        A family with sampling options (``sampling_options``) adds them as keyword arguments; the
        runner passes a spec's options only when it has some."""

    def log_likelihood(self, x: torch.Tensor, noise: SeededNoise | None = None) -> torch.Tensor:
        """Log-likelihood (or its bound) in nats per example at ``x`` on the data scale.

        Images arrive already uniformly dequantised, (u + U[0, 1)) / 128 - 1, by the caller
        (``genbench.metrics.likelihood.dequantise``); a continuous family evaluates its density
        there, a discrete one its probability of the bin that holds x (u = floor((x + 1) * 128)).
        ``noise``: one generator per example (``SeededNoise``) for a stochastic estimate (ELBO
        draws, Hutchinson probes), so an example's value does not depend on its batch; None:
        ``likelihood_noise(len(x))``. Exact families ignore it.
        """
        raise NotImplementedError(f"{self.family} has no likelihood")

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


TEMPERATURE = "temperature"


def check_positive_option(family: str, name: str, options: Mapping[str, Any]) -> None:
    """One line unless ``options[name]`` (when given) is a positive number (a temperature, a scale)."""
    if name in options:
        v = options[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
            raise UsageError(f"{family}'s sampling option {name!r} must be a positive number, e.g. {name}: [0.7, 1.0]; "
                             f"got {v!r}")


def likelihood_noise(n: int, seed: int = 0) -> SeededNoise:
    """Per-example noise for ``log_likelihood`` when the caller gives none: examples 0..n-1 of ``seed``."""
    return SeededNoise.for_run(seed, n)


def _quantisation_by_dequantize(self: "GenerativeModel") -> str:
    """floor when the family trained on uniformly dequantised images (its ``dequantize`` config), else round."""
    return FLOOR if self.config["dequantize"] else ROUND


# ``sample_quantisation = SAMPLE_QUANTISATION_BY_DEQUANTIZE`` in a family whose config says whether
# it trains on dequantised images (vae, diffusion, consistency, ddpm)
SAMPLE_QUANTISATION_BY_DEQUANTIZE = property(_quantisation_by_dequantize)


MODELS: Registry[type[GenerativeModel]] = Registry("model family", base=GenerativeModel, package="genbench.models", listing="models")


def build_model(family: str, data_shape: tuple[int, ...], modality: str, num_classes: int | None = None,
                **config: Any) -> GenerativeModel:
    cls = MODELS.get(family)
    if modality not in cls.modalities:
        raise UsageError(f"model family {family!r} does not handle {modality} data (it handles: {', '.join(cls.modalities)})")
    try:
        return cls(data_shape, modality, num_classes, **config)
    except TypeError as e:
        raise UsageError(f"bad configuration for model family {family!r}: {e}") from None


def check_model_fits(family: str, data_shape: tuple[int, ...], modality: str, num_classes: int | None = None,
                     **config: Any) -> None:
    """Refuse (UsageError) a recipe that cannot fit the data, before anything is built or trained.

    Cheap by design (suites call it for every grid cell): the family must handle the modality, the
    configuration's keys must be constructor arguments, and the family's ``check_fits`` must accept
    the data's shape and labels.
    """
    cls = MODELS.get(family)
    if modality not in cls.modalities:
        raise UsageError(f"model family {family!r} does not handle {modality} data (it handles: {', '.join(cls.modalities)})")
    try:
        inspect.signature(cls.__init__).bind(None, tuple(data_shape), modality, num_classes, **config)
    except TypeError as e:
        raise UsageError(f"bad configuration for model family {family!r}: {e}") from None
    shape = tuple(int(s) for s in data_shape)
    cls.check_fits(shape, modality, num_classes, dict(config))


def save_checkpoint(model: GenerativeModel, stem: Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``stem.safetensors`` then ``stem.json``, each atomically (unique temp file + rename).

    The JSON is written last, so a reader that finds it also finds complete weights.
    """
    from safetensors.torch import save

    from genbench.cache import atomic_write_bytes

    stem = Path(stem)
    meta = {
        "family": model.family,
        "data_shape": list(model.data_shape),
        "modality": model.modality,
        "num_classes": model.num_classes,
        "config": model.config,
        "format": "genbench-checkpoint-v1",
        **(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), save(tensors))
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=True).encode())


def read_checkpoint_meta(stem: Path) -> dict[str, Any]:
    """The JSON half of a checkpoint (family, config, train report, ...)."""
    jpath = Path(stem).with_suffix(".json")
    try:
        return json.loads(jpath.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"checkpoint metadata {jpath} is unreadable ({e}); delete it and retrain") from None


def load_checkpoint(stem: Path, expect_family: str | None = None, map_location: str | torch.device = "cpu") -> GenerativeModel:
    """Load a checkpoint written by ``save_checkpoint``; every failure is a one-line UsageError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    stem = Path(stem)
    if stem.suffix in (".json", ".safetensors"):
        stem = stem.with_suffix("")
    wpath, jpath = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (wpath, jpath):
        if not p.is_file():
            raise UsageError(f"checkpoint file {p} does not exist; train the model first or pass the right path")
    meta = read_checkpoint_meta(stem)
    family = meta.get("family")
    if not isinstance(family, str):
        raise UsageError(f"checkpoint metadata {jpath} names no model family; delete it and retrain")
    if expect_family is not None and family != expect_family:
        raise UsageError(f"checkpoint {stem} is a {family!r} model, not {expect_family!r}; pass a checkpoint of that family")
    model = build_model(family, tuple(meta["data_shape"]), meta["modality"], meta.get("num_classes"), **meta["config"])
    try:
        state = load_file(str(wpath), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise UsageError(f"checkpoint weights {wpath} are corrupt or truncated ({e}); delete the file and retrain") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UsageError(f"checkpoint {wpath} does not fit a {family!r} model ({first}); use a checkpoint of this architecture") from None
    return model.to(map_location)
