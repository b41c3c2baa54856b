"""``domain:<video dataset>``: a small 3-D CNN video classifier genbench trains on the dataset (moving-digits),
with the per-frame features of the dataset's image domain classifier beside it.

FVD (Unterthiner et al. 2018, "Towards Accurate Generative Models of Video") is the Frechet distance of
I3D features (Carreira & Zisserman 2017), a Kinetics action classifier: like Inception for 8x8 digits,
it says little about 16x16 moving digits, and its weights need a download. As the image domain
classifiers do for FID (``genbench.features.domain``), a classifier trained on the videos themselves
gives features that see what the data varies in. It is trained to tell both the digit and the
direction of its motion (two heads on one trunk), so its features see motion as well as content: a
video whose frames are each a fine digit but do not move as one (a per-frame model's) lies far from
the real videos. Outputs, in one pass over uint8 videos [N, T, C, H, W]:

* ``pool``             [N, 64]       the 3-D classifier's penultimate layer (after its ReLU): FVD (``fvd``)
* ``logits``           [N, 10]       its digit logits (IS)
* ``frame_pool``       [N * T, 128]  every frame's features in the image domain classifier
                                     ``domain:<dataset>-frames``: per-frame FID (``fid_frame``)
* ``frame_similarity`` [N, T - 1]    cosine similarity of consecutive frames' ``frame_pool``: temporal
                                     consistency (``tc``)

Network (``DomainCNN3d``): three blocks conv3x3x3-BatchNorm-ReLU (widths 16, 32, 64), a 1x2x2 max-pool
after the first (space only) and a 2x2x2 one after the second, adaptive average pooling to 2x2x2, then
fc -> 64 -> ReLU (``pool``) -> dropout (training only) -> fc -> 10 digit logits and fc -> 4 direction
logits. Trained with the sum of both cross-entropies (AdamW, one-cycle learning rate, as the image
classifiers). Preprocessing: uint8 -> x / 127.5 - 1; videos must have the classifier's frame count,
channels and size.

Weights as for the image classifiers: ``--weights FILE``, else the shipped
``reference_models/domain/<dataset>.safetensors`` (sha256 checked against the manifest), else one trained
into the cache by ``genbench train-features <dataset>``. The extractor's ``weights_sha256`` is the sha256
of both files' sha256s (video classifier, then frame classifier), so a change of either gives new
reference features; ``identity()`` names each.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genbench import cache
from genbench.data.base import get_dataset, images_to_uint8
from genbench.data.video import VIDEO
from genbench.errors import RunFailure, UsageError
from genbench.features import domain
from genbench.features.base import LOGITS, POOL, FeatureExtractor, check_weights_path
from genbench.features.nets import features_in_batches
from genbench.metrics.video import FRAME_POOL, FRAME_SIMILARITY

FORMAT = "genbench-video-classifier-v1"
PREPROCESSING = "video-domain-v1: uint8 [N, T, C, H, W] -> x / 127.5 - 1, no resizing; frames as domain-v1"


@dataclass(frozen=True)
class Architecture3d:
    """Everything needed to rebuild a ``DomainCNN3d`` (stored in each weights file's metadata)."""

    in_channels: int
    frames: int
    height: int
    width: int
    num_classes: int
    num_directions: int
    widths: tuple[int, ...] = (16, 32, 64)
    grid: int = 2  # adaptive average pool to grid^3 before the head
    hidden: int = 64  # pool feature dimension
    dropout: float = 0.3

    @classmethod
    def from_dict(cls, d: dict) -> Architecture3d:
        return cls(**{**{k: v for k, v in d.items() if k != "name"}, "widths": tuple(d["widths"])})

    def to_dict(self) -> dict:
        return {"name": "DomainCNN3d", **asdict(self), "widths": list(self.widths)}


class DomainCNN3d(nn.Module):
    """conv3x3x3-BN-ReLU blocks with max-pools, average pool to a grid, fc (pool), fc (digit and direction logits)."""

    def __init__(self, arch: Architecture3d):
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = []
        c_in = arch.in_channels
        for i, c_out in enumerate(arch.widths):
            layers += [nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU()]
            if i == 0:
                layers.append(nn.MaxPool3d((1, 2, 2)))  # space only: keep every frame for the motion
            elif i < len(arch.widths) - 1:
                layers.append(nn.MaxPool3d(2))
            c_in = c_out
        layers.append(nn.AdaptiveAvgPool3d(arch.grid))
        self.body = nn.Sequential(*layers)
        self.fc_pool = nn.Linear(c_in * arch.grid**3, arch.hidden)
        self.dropout = nn.Dropout(arch.dropout)
        self.fc_logits = nn.Linear(arch.hidden, arch.num_classes)
        self.fc_direction = nn.Linear(arch.hidden, arch.num_directions)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x: [N, C, T, H, W] in [-1, 1]
        pool = F.relu(self.fc_pool(self.body(x).flatten(1)))  # [N, hidden]
        h = self.dropout(pool)
        return pool, self.fc_logits(h), self.fc_direction(h)  # [N, hidden], [N, classes], [N, directions]


def to_classifier_input(x: torch.Tensor, arch: Architecture3d) -> torch.Tensor:
    """uint8 videos [N, T, C, H, W] -> float [N, C, T, H, W] in [-1, 1]; one line when the shape does not fit."""
    want = (arch.frames, arch.in_channels, arch.height, arch.width)
    if x.ndim != 5 or tuple(x.shape[1:]) != want:
        raise UsageError(f"the video domain classifier takes videos [N, {', '.join(map(str, want))}] (T, C, H, W), "
                         f"got {list(x.shape)}; pass videos of the dataset's shape")
    return (x.float() / 127.5 - 1.0).transpose(1, 2)


class VideoDomainFeatures(FeatureExtractor):
    """A genbench-trained 3-D classifier (``pool``, ``logits``) and the image domain classifier's frame features."""

    input_kind = VIDEO
    feature_keys = (POOL, LOGITS, FRAME_POOL, FRAME_SIMILARITY)
    preprocessing = PREPROCESSING
    space = "video"  # FVD is ``fvd``, the others ``kid_mean_video``, ``fid_frame_video``, ...

    def __init__(self, dataset: str, net: DomainCNN3d, sha256: str, frames: domain.DomainFeatures, standard: bool,
                 source: str, device="cpu"):
        self.name = f"domain:{dataset}"
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.frames = frames
        self.video_sha256 = sha256
        self.weights_sha256 = hashlib.sha256(f"{sha256}+{frames.weights_sha256}".encode()).hexdigest()
        self.standard = standard and frames.standard
        self.weights_source = source

    def extract(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        # uint8 [N, T, C, H, W] -> pool [N, 64], logits [N, 10], frame_pool [N * T, 128], frame_similarity [N, T - 1]
        if x.dtype != torch.uint8:
            raise UsageError(f"{self.name} takes uint8 videos, got {x.dtype}; quantise them first")
        out = features_in_batches(self._forward, x, batch_size, self.device)
        n, t = x.shape[:2]
        frame_pool = self.frames.extract(x.flatten(0, 1), batch_size=batch_size)[POOL]  # [N * T, 128]
        f = F.normalize(frame_pool.reshape(n, t, -1), dim=-1)
        out[FRAME_POOL] = frame_pool
        out[FRAME_SIMILARITY] = (f[:, 1:] * f[:, :-1]).sum(-1)  # [N, T - 1]
        return out

    def _forward(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        pool, logits, _ = self.net(to_classifier_input(xb, self.net.arch))
        return {POOL: pool, LOGITS: logits}

    def identity(self) -> dict:
        return {**super().identity(), "network": self.net.arch.to_dict(), "weights_source": self.weights_source,
                "video_weights_sha256": self.video_sha256, "frame_features": self.frames.identity()}


def frame_dataset(dataset: str) -> str:
    """The image dataset of ``dataset``'s frames, whose domain classifier gives the per-frame features."""
    return f"{dataset}-frames"


def load_video_classifier(dataset: str, weights: Path | str | None = None, device="cpu") -> VideoDomainFeatures:
    """The video classifier of ``dataset`` (``weights``, else shipped and sha256-checked, else the cache's) and its
    frame classifier (shipped or cached; see ``genbench.features.domain``)."""
    frames = domain.load_domain_classifier(frame_dataset(dataset), device=device)
    if weights is not None:
        return _from_file(dataset, Path(weights), "argument", frames, device)
    for directory, source in ((domain.shipped_dir(), "shipped"), (domain.trained_dir(), "trained")):
        path = directory / f"{dataset}.safetensors"
        if path.is_file():
            return _from_file(dataset, path, source, frames, device, expect=domain._manifest_sha(directory, dataset))
    raise UsageError(f"no video domain classifier for {dataset!r}; train one with `genbench train-features {dataset}` "
                     "or pass --weights FILE.safetensors")


def _from_file(dataset: str, path: Path, source: str, frames, device, expect: str | None = None) -> VideoDomainFeatures:
    from safetensors.torch import load as load_safetensors

    check_weights_path(path, "video classifier file", "pass a .safetensors file from train-features")
    blob = path.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    if expect is not None and sha != expect:
        raise RunFailure(f"{path} has sha256 {sha[:12]}..., its manifest says {expect[:12]}...; the file is damaged: "
                         f"reinstall genbench or retrain it with `genbench train-features {dataset}`")
    try:
        meta = json.loads(domain.safetensors_metadata(blob).get(domain.META_KEY, "{}"))
        state = load_safetensors(blob)
    except Exception as e:  # noqa: BLE001 - any parse failure means "not our file"
        raise UsageError(f"{path} is not a readable safetensors file ({type(e).__name__}); pass a train-features output") from None
    if meta.get("format") != FORMAT or meta.get("dataset") != dataset:
        raise UsageError(f"{path} is not the video classifier of {dataset!r} (format {meta.get('format')!r}, "
                         f"dataset {meta.get('dataset')!r}); pass a `genbench train-features {dataset}` output")
    try:
        net = DomainCNN3d(Architecture3d.from_dict(meta["architecture"]))
        net.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise UsageError(f"{path} does not match its recorded architecture ({type(e).__name__}); "
                         f"retrain it with `genbench train-features {dataset}`") from None
    standard = sha == domain.shipped_sha256(dataset)
    return VideoDomainFeatures(dataset, net, sha, frames, standard, source, device)


# ----------------------------------------------------------------------------------------------
# Training


RECIPES: dict[str, domain.Recipe] = {"moving-digits": domain.Recipe(epochs=12, batch_size=64, shift=0)}


def train_video_classifier(dataset: str, out_dir: Path | None = None, epochs: int | None = None, seed: int = 0,
                           device="cpu", data_root=None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Train ``domain:<dataset>`` for a labelled video dataset, write ``<out_dir>/<dataset>.safetensors`` and its
    manifest entry (sha256, architecture, recipe, digit and direction test accuracy, seconds); ``out_dir``
    defaults to ``CACHE/domain``. The frame classifier (``<dataset>-frames``) is trained the same way when
    neither a shipped nor a cached one exists."""
    ds = get_dataset(dataset)
    if not hasattr(ds, "video_labels") or ds.num_classes is None:
        raise UsageError(f"dataset {dataset!r} has no digit and direction labels; video classifiers need a labelled video set")
    recipe = RECIPES.get(dataset, domain.Recipe(shift=0))
    if epochs is not None:
        recipe = domain.Recipe(**{**asdict(recipe), "epochs": int(epochs)})
    train, test = ds.load("train", data_root), ds.load("test", data_root)
    y_train = _targets(ds.video_labels("train"))
    n_dir = int(y_train[:, 1].max()) + 1
    arch = Architecture3d(train.x.shape[2], train.x.shape[1], train.x.shape[3], train.x.shape[4], ds.num_classes, n_dir)
    start = time.perf_counter()
    net = fit_video_classifier(arch, images_to_uint8(train.x), y_train, recipe, seed, torch.device(device), progress)
    seconds = time.perf_counter() - start
    out = Path(out_dir) if out_dir is not None else domain.trained_dir()
    path = out / f"{dataset}.safetensors"
    info = {"format": FORMAT, "dataset": dataset, "architecture": arch.to_dict(), "preprocessing": PREPROCESSING}
    cache.atomic_save_tensors(path, dict(net.state_dict()), {domain.META_KEY: json.dumps(info, sort_keys=True, separators=(",", ":"))})
    digit_acc, direction_acc = video_accuracy(net, images_to_uint8(test.x), _targets(ds.video_labels("test")))
    entry = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size,
             "architecture": arch.to_dict(), "recipe": {**asdict(recipe), "seed": seed, "loss": "cross-entropy (digit + direction)"},
             "preprocessing": PREPROCESSING, "test_accuracy": round(digit_acc, 5), "test_direction_accuracy": round(direction_acc, 5),
             "n_train": len(train), "n_test": len(test), "train_seconds": round(seconds, 1),
             "versions": {"torch": torch.__version__}, "dataset_info": ds.info()}
    domain._update_manifest(out, dataset, entry)
    return entry


def _targets(labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """[N, 2] (digit class, direction class) of the first digit of each video."""
    return torch.stack([labels["digit"][:, 0], labels["direction"][:, 0]], dim=1)


def fit_video_classifier(arch: Architecture3d, x: torch.Tensor, y: torch.Tensor, recipe: domain.Recipe, seed: int,
                         device: torch.device, progress: Callable[[int, int], None] | None = None) -> DomainCNN3d:
    """Train a ``DomainCNN3d`` on uint8 videos ``x`` [N, T, C, H, W] with targets ``y`` [N, 2] (digit, direction)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = DomainCNN3d(arch).to(device)
    inputs = to_classifier_input(x, arch)  # [N, C, T, H, W] on the CPU
    steps_per_epoch = -(-len(inputs) // recipe.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.3)
    net.train()
    with domain.cpu_threads(1 if device.type == "cpu" else torch.get_num_threads()):
        for epoch in range(recipe.epochs):
            for idx in torch.randperm(len(inputs), generator=g).split(recipe.batch_size):
                _, digit, direction = net(inputs[idx].to(device))
                target = y[idx].to(device)
                loss = F.cross_entropy(digit, target[:, 0]) + F.cross_entropy(direction, target[:, 1])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if progress is not None:
                progress(epoch + 1, recipe.epochs)
    return net.eval()


@torch.no_grad()
def video_accuracy(net: DomainCNN3d, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> tuple[float, float]:
    """Top-1 accuracy of the digit and the direction heads on uint8 videos ``x`` with targets ``y`` [N, 2]."""
    hits = torch.zeros(2)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        _, digit, direction = net(to_classifier_input(xb, net.arch))
        hits += torch.stack([(digit.argmax(1) == yb[:, 0]).sum(), (direction.argmax(1) == yb[:, 1]).sum()]).float()
    return float(hits[0]) / len(x), float(hits[1]) / len(x)


domain.register_modality_classifier(VIDEO, load_video_classifier, train_video_classifier)
