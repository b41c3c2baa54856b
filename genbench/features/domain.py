"""``domain:<dataset>``: a small CNN classifier, trained by genbench on the dataset's train split.

Inception features are the standard for natural images, but say little about 8x8 digits or
28x28 clothes, and their weights need a download. A classifier trained on the dataset itself
gives features that separate its classes (the idea behind FID variants on MNIST-like data,
e.g. the LeNet features of Binkowski et al. 2018, "Demystifying MMD GANs"), so FID, KID,
precision/recall and IS work offline. Its outputs, in one pass:

* ``pool``   [N, 128]  the penultimate layer (after its ReLU)
* ``logits`` [N, C]    the class logits (for IS; C = the dataset's number of classes)

Network (``DomainCNN``): three blocks conv3x3-BatchNorm-ReLU (widths 16, 32, 64), a 2x2
max-pool after the first two, adaptive average pooling to a ``grid`` x ``grid`` map, then
fc -> 128 -> ReLU (``pool``) -> dropout (training only) -> fc -> C (``logits``).

Preprocessing (``PREPROCESSING``): uint8 N x C x H x W -> float x / 127.5 - 1, the [-1, 1]
scale of the models. Images are brought to the classifier's input: RGB is averaged to grey for
a grey classifier (grey is repeated for an RGB one), and an image whose size differs from the
dataset's native size is resized to it (bilinear, antialiased, on the 0..255 scale), so
samples saved at another size still get features. Training sees the uint8-quantised train
split, exactly what the extractor sees at evaluation time.

Weights, in order: ``--weights FILE.safetensors`` (any file written by
``train_domain_classifier``: its safetensors metadata carries the architecture); the shipped
``reference_models/domain/<dataset>.safetensors``, whose sha256 is checked against
``reference_models/domain/manifest.json``; a classifier trained earlier into the genbench
cache (``CACHE/domain``, ``genbench train-features DATASET``). Only a file whose sha256 is the
shipped one is ``standard=True``. Files are safetensors, so loading one never runs code.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genbench import cache
from genbench.data.base import IMAGES, get_dataset, images_to_uint8
from genbench.errors import RunFailure, UsageError
from genbench.features.base import FEATURES, LOGITS, POOL, FeatureExtractor, check_weights_path
from genbench.features.nets import check_uint8_images, features_in_batches

FORMAT = "genbench-domain-classifier-v1"
META_KEY = "genbench"  # the safetensors metadata entry holding the file's JSON description
MANIFEST = "manifest.json"
PREPROCESSING = (
    "domain-v1: uint8 -> x / 127.5 - 1; RGB averaged to grey for a grey classifier (grey repeated "
    "for an RGB one); bilinear antialiased resize to the dataset's native size when it differs"
)


# ----------------------------------------------------------------------------------------------
# Network


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild a ``DomainCNN`` (stored in each weights file's metadata)."""

    in_channels: int
    height: int
    width: int
    num_classes: int
    widths: tuple[int, ...] = (16, 32, 64)
    grid: int = 3  # adaptive average pool to grid x grid before the head
    hidden: int = 128  # pool feature dimension
    dropout: float = 0.3

    @classmethod
    def for_shape(cls, shape: tuple[int, ...], num_classes: int) -> Architecture:
        c, h, w = shape
        # two 2x2 max-pools: 8x8 -> 2x2 (grid 2), 28x28 -> 7x7 (grid 3), 32x32 -> 8x8 (grid 3)
        return cls(c, h, w, num_classes, grid=min(3, h // 4, w // 4) or 1)

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        return cls(**{**d, "widths": tuple(d["widths"])})

    def to_dict(self) -> dict:
        return {"name": "DomainCNN", **asdict(self), "widths": list(self.widths)}


class DomainCNN(nn.Module):
    """conv3x3-BN-ReLU blocks with 2x2 max-pools, average pool to a grid, fc (pool) and fc (logits)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = []
        c_in = arch.in_channels
        for i, c_out in enumerate(arch.widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            if i < len(arch.widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        layers.append(nn.AdaptiveAvgPool2d(arch.grid))
        self.body = nn.Sequential(*layers)
        self.fc_pool = nn.Linear(c_in * arch.grid * arch.grid, arch.hidden)
        self.dropout = nn.Dropout(arch.dropout)
        self.fc_logits = nn.Linear(arch.hidden, arch.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: [N, C, H, W] in [-1, 1]
        h = self.body(x).flatten(1)  # [N, widths[-1] * grid^2]
        pool = F.relu(self.fc_pool(h))  # [N, hidden]
        logits = self.fc_logits(self.dropout(pool))  # [N, num_classes]
        return pool, logits


def to_classifier_input(x: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float [N, in_channels, height, width] in [-1, 1] (see PREPROCESSING)."""
    x = x.float()
    if x.shape[1] != arch.in_channels:
        if x.shape[1] == 3 and arch.in_channels == 1:
            x = x.mean(dim=1, keepdim=True)
        elif x.shape[1] == 1 and arch.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        else:
            raise UsageError(
                f"the domain classifier takes {arch.in_channels}-channel images, got {x.shape[1]} channels; "
                "pass grey or RGB images"
            )
    if tuple(x.shape[-2:]) != (arch.height, arch.width):
        x = F.interpolate(x, size=(arch.height, arch.width), mode="bilinear", align_corners=False, antialias=True)
    return x / 127.5 - 1.0


# ----------------------------------------------------------------------------------------------
# Extractor


class DomainFeatures(FeatureExtractor):
    """A genbench-trained classifier: penultimate ``pool`` [N, 128] and ``logits`` [N, C]."""

    feature_keys = (POOL, LOGITS)
    preprocessing = PREPROCESSING

    def __init__(self, dataset: str, net: DomainCNN, sha256: str, standard: bool, source: str, device="cpu"):
        self.name = f"domain:{dataset}"
        self.dataset = dataset
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.weights_sha256 = sha256
        self.standard = standard
        self.weights_source = source

    def extract(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        # [N, C, H, W] uint8 -> {"pool": [N, hidden], "logits": [N, num_classes]}
        check_uint8_images(x, self.name)
        return features_in_batches(self._forward, x, batch_size, self.device)

    def _forward(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        pool, logits = self.net(to_classifier_input(xb, self.net.arch))
        return {POOL: pool, LOGITS: logits}

    def identity(self) -> dict:
        return {**super().identity(), "network": self.net.arch.to_dict(), "weights_source": self.weights_source}


@FEATURES.register("domain", description="a small CNN genbench trains on the dataset (domain:digits, ...)")
def build_domain(arg=None, weights=None, device="cpu") -> DomainFeatures:
    if not arg:
        raise UsageError("'domain' needs a dataset, e.g. --features domain:digits")
    return load_domain_classifier(arg, weights=weights, device=device)


# Domain classifiers of datasets of other modalities (video: genbench.features.video_domain) register their
# loader and trainer here; ``domain:<dataset>`` and ``train-features <dataset>`` follow the dataset's modality.
MODALITY_CLASSIFIERS: dict[str, tuple[Callable[..., FeatureExtractor], Callable[..., dict]]] = {}


def register_modality_classifier(modality: str, load: Callable[..., FeatureExtractor], train: Callable[..., dict]) -> None:
    MODALITY_CLASSIFIERS[modality] = (load, train)


def modality_classifier(dataset: str) -> tuple[Callable[..., FeatureExtractor], Callable[..., dict]] | None:
    """The (load, train) pair of a registered dataset whose modality has its own classifier, else None (images)."""
    from genbench.data.base import DATASETS

    if dataset not in DATASETS:
        return None
    FEATURES.names()  # import every extractor module, so that their registrations have run
    return MODALITY_CLASSIFIERS.get(get_dataset(dataset).modality)


def load_domain_classifier(dataset: str, weights: Path | str | None = None, device="cpu") -> DomainFeatures:
    """The classifier for ``dataset``: ``weights`` file, else shipped (sha256-checked), else the cache's."""
    other = modality_classifier(dataset)
    if other is not None:
        return other[0](dataset, weights=weights, device=device)
    if weights is not None:
        return _from_file(dataset, Path(weights), "argument", device)
    shipped = shipped_dir() / f"{dataset}.safetensors"
    if shipped.is_file():
        return _from_file(dataset, shipped, "shipped", device, expect=_manifest_sha(shipped_dir(), dataset))
    trained = trained_dir() / f"{dataset}.safetensors"
    if trained.is_file():
        return _from_file(dataset, trained, "trained", device, expect=_manifest_sha(trained_dir(), dataset))
    get_dataset(dataset)  # an unknown dataset answers with "did you mean"
    raise UsageError(
        f"no domain classifier for {dataset!r}; train one with `genbench train-features {dataset}` "
        f"or pass --weights FILE.safetensors"
    )


def _from_file(dataset: str, path: Path, source: str, device, expect: str | None = None) -> DomainFeatures:
    check_weights_path(path, "domain classifier file", "pass a .safetensors file from train-features")
    blob = path.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    if expect is not None and sha != expect:
        raise RunFailure(
            f"{path} has sha256 {sha[:12]}..., its manifest says {expect[:12]}...; the file is damaged: "
            f"reinstall genbench or retrain it with `genbench train-features {dataset}`"
        )
    net = _net_from_safetensors(blob, path, dataset)
    return DomainFeatures(dataset, net, sha, standard=sha == shipped_sha256(dataset), source=source, device=device)


def _net_from_safetensors(blob: bytes, path: Path, dataset: str) -> DomainCNN:
    from safetensors.torch import load as load_safetensors

    try:
        meta = json.loads(safetensors_metadata(blob).get(META_KEY, "{}"))
        state = load_safetensors(blob)
    except Exception as e:  # noqa: BLE001 - any parse failure means "not our file"
        raise UsageError(f"{path} is not a readable safetensors file ({type(e).__name__}); pass a train-features output") from None
    if meta.get("format") != FORMAT:
        raise UsageError(f"{path} is not a genbench domain classifier (format {meta.get('format')!r}); pass a train-features output")
    if meta.get("dataset") != dataset:
        raise UsageError(f"{path} is the domain classifier of {meta.get('dataset')!r}, not {dataset!r}; use --features domain:{meta.get('dataset')}")
    try:
        net = DomainCNN(Architecture.from_dict({k: v for k, v in meta["architecture"].items() if k != "name"}))
        net.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise UsageError(f"{path} does not match its recorded architecture ({type(e).__name__}); retrain it with `genbench train-features {dataset}`") from None
    return net


def safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (header: u64 little-endian length, then JSON)."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n].decode("utf-8")).get("__metadata__", {})


# ----------------------------------------------------------------------------------------------
# Shipped and trained classifiers


def shipped_dir() -> Path:
    """``reference_models/domain`` inside the installed package (read-only use)."""
    return Path(str(resources.files("reference_models").joinpath("domain")))


def trained_dir() -> Path:
    """Where ``train_domain_classifier`` writes by default: ``CACHE/domain``."""
    return cache.subdir("domain")


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "classifiers": {}}
    return json.loads(path.read_text())


def _manifest_sha(directory: Path, dataset: str) -> str:
    entry = read_manifest(directory)["classifiers"].get(dataset)
    if entry is None:
        raise RunFailure(f"{directory / dataset}.safetensors is not in {directory / MANIFEST}; retrain it with `genbench train-features {dataset}`")
    return entry["sha256"]


def shipped_sha256(dataset: str) -> str | None:
    entry = read_manifest(shipped_dir())["classifiers"].get(dataset)
    return entry["sha256"] if entry else None


def shipped_classifier_names() -> list[str]:
    """Datasets with a classifier shipped in reference_models/domain."""
    return sorted(n for n in read_manifest(shipped_dir())["classifiers"] if (shipped_dir() / f"{n}.safetensors").is_file())


# ----------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class Recipe:
    """How a domain classifier is trained (AdamW, one-cycle learning rate, shift/flip augmentation)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    shift: int = 2  # random translation by up to this many pixels (edge pixels repeated)
    hflip: bool = False  # random horizontal flips
    optimizer: str = "AdamW"
    schedule: str = "OneCycleLR (cosine, 30% warm-up)"


RECIPES: dict[str, Recipe] = {
    "digits": Recipe(epochs=60, batch_size=64, shift=1),
    "mnist5k": Recipe(epochs=30, shift=2),
    "fashion-mnist": Recipe(epochs=10, batch_size=256, shift=0, hflip=True),
    "moving-digits-frames": Recipe(epochs=20, batch_size=64, shift=1),
}


def train_domain_classifier(
    dataset: str,
    out_dir: Path | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device="cpu",
    data_root=None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Train ``domain:<dataset>``, write ``<out_dir>/<dataset>.safetensors`` and its manifest entry.

    ``out_dir`` defaults to ``CACHE/domain``. Returns the manifest entry (sha256, architecture,
    recipe, test accuracy, n train/test, seconds). ``progress(epoch, epochs)`` is called per epoch.
    """
    other = modality_classifier(dataset)
    if other is not None:
        return other[1](dataset, out_dir=out_dir, epochs=epochs, seed=seed, device=device, data_root=data_root, progress=progress)
    ds = get_dataset(dataset)
    if ds.modality != IMAGES or ds.num_classes is None:
        raise UsageError(f"dataset {dataset!r} has no labelled images; domain classifiers need a labelled image dataset")
    recipe = RECIPES.get(dataset, Recipe())
    if epochs is not None:
        recipe = Recipe(**{**asdict(recipe), "epochs": int(epochs)})
    train, test = ds.load("train", data_root), ds.load("test", data_root)
    arch = Architecture.for_shape(tuple(train.x.shape[1:]), ds.num_classes)
    start = time.perf_counter()
    net = fit_classifier(arch, images_to_uint8(train.x), train.y, recipe, seed, torch.device(device), progress)
    seconds = time.perf_counter() - start
    out = Path(out_dir) if out_dir is not None else trained_dir()
    path = out / f"{dataset}.safetensors"
    cache.atomic_save_tensors(path, dict(net.state_dict()), _file_metadata(dataset, arch))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    extractor = DomainFeatures(dataset, net, sha, standard=False, source="trained", device=device)
    entry = {
        "file": path.name,
        "sha256": sha,
        "bytes": path.stat().st_size,
        "architecture": arch.to_dict(),
        "recipe": {**asdict(recipe), "seed": seed, "loss": "cross-entropy"},
        "preprocessing": PREPROCESSING,
        "test_accuracy": round(classifier_accuracy(extractor, images_to_uint8(test.x), test.y), 5),
        "n_train": len(train),
        "n_test": len(test),
        "train_seconds": round(seconds, 1),
        "versions": {"torch": torch.__version__},
        "dataset_info": ds.info(),
    }
    _update_manifest(out, dataset, entry)
    return entry


def _file_metadata(dataset: str, arch: Architecture) -> dict[str, str]:
    """One metadata entry of canonical JSON: safetensors writes several keys in a random order,
    and the file's sha256 must not depend on it (a retrained classifier reproduces its hash)."""
    info = {"format": FORMAT, "dataset": dataset, "architecture": arch.to_dict(), "preprocessing": PREPROCESSING}
    return {META_KEY: json.dumps(info, sort_keys=True, separators=(",", ":"))}


def _update_manifest(directory: Path, dataset: str, entry: dict) -> None:
    manifest = read_manifest(directory)
    manifest["classifiers"][dataset] = entry
    manifest["classifiers"] = dict(sorted(manifest["classifiers"].items()))
    cache.atomic_write_bytes(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def fit_classifier(
    arch: Architecture,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
) -> DomainCNN:
    """Train a ``DomainCNN`` on uint8 images ``x`` [N, C, H, W] with labels ``y`` [N].

    On the CPU training runs single-threaded and channels-last: for convolutions this small
    that is faster than two contended threads, and the result does not depend on the core count.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = DomainCNN(arch).to(device, memory_format=torch.channels_last)
    inputs = to_classifier_input(x, arch)  # [N, C, H, W] in [-1, 1], on the CPU
    steps_per_epoch = -(-len(inputs) // recipe.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.3)
    net.train()
    with cpu_threads(1 if device.type == "cpu" else torch.get_num_threads()):
        for epoch in range(recipe.epochs):
            for idx in torch.randperm(len(inputs), generator=g).split(recipe.batch_size):
                xb = augment(inputs[idx], recipe, g).to(device, memory_format=torch.channels_last)
                loss = F.cross_entropy(net(xb)[1], y[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if progress is not None:
                progress(epoch + 1, recipe.epochs)
    return net.to(memory_format=torch.contiguous_format).eval()


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def augment(x: torch.Tensor, recipe: Recipe, g: torch.Generator) -> torch.Tensor:
    """Random shifts by up to ``recipe.shift`` pixels (edges repeated) and optional h-flips."""
    n, _, h, w = x.shape
    if recipe.hflip:
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    s = recipe.shift
    if s > 0:
        padded = F.pad(x, (s, s, s, s), mode="replicate")  # [n, C, h + 2s, w + 2s]
        dy, dx = torch.randint(0, 2 * s + 1, (2, n), generator=g)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # [n, 1, h, 1]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # [n, 1, 1, w]
        x = padded.gather(2, rows.expand(-1, x.shape[1], -1, w + 2 * s)).gather(3, cols.expand(-1, x.shape[1], h, -1))
    return x


def classifier_accuracy(extractor: DomainFeatures, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of the extractor's logits on uint8 images ``x`` with labels ``y``."""
    logits = extractor.extract(x, batch_size=batch_size)[LOGITS]
    return float((logits.argmax(dim=1) == y).float().mean())
