"""``clip[:ARCH]`` (default ``ViT-L-14``): the CLIP image embedding through open_clip.

CLIP (Radford et al. 2021) image embeddings are the feature space of CMMD (Jayasumana et al.
2024) and one of dgm-eval's encoders (Stein et al. 2023). genbench builds the image tower from
open_clip's own architecture definition (``open_clip.create_model(ARCH)``, any name in
``open_clip.list_models()``) and returns, in one pass:

* ``pool`` [N, E]  ``model.encode_image(x)``: the projected image embedding (E = 768 for
  ViT-L-14), not L2-normalised (CMMD normalises it; Vendi does too). dgm-eval's own CLIP
  representation is the CLS token before the projection (its ``depth=0``), so an FD on these
  features is not dgm-eval's FD_CLIP.

Preprocessing is open_clip's and dgm-eval's for CLIP: each uint8 RGB image (grey repeated) as a
PIL image, torchvision's bicubic resize of the shorter side to the tower's input size (224 for
ViT-L-14), centre crop, /255, normalised with OpenAI's CLIP mean and std.

Weights, in order: ``--weights PATH`` (an open_clip state dict, ``.safetensors``/``.bin``/
``.pth``, of the whole model or of its image tower, keys ``visual.*``), ``$GENBENCH_CLIP_WEIGHTS``,
else open_clip's download of dgm-eval's default tag for the architecture (``datacomp_xl_s13b_b90k``
for ViT-L-14) when online (not with GENBENCH_OFFLINE=1). The file's sha256 is recorded and compared
with ``PUBLISHED``; no sha256 of the laion/openai files stated by their publishers was found (the hub
pages found were of third-party copies), so it is empty and every file is recorded as ``unverified``
(``standard=False``) until one is added there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from genbench.errors import UsageError
from genbench.features.base import FEATURES, POOL, FeatureExtractor
from genbench.features.nets import (
    PretrainedWeights,
    PublishedFile,
    WeightsFile,
    as_rgb_uint8,
    download_allowed,
    download_timeout,
    features_in_batches,
    locate_weights,
    missing_weights_error,
    read_weights,
    tensors_of,
    verify_weights,
)

DEFAULT_ARCH = "ViT-L-14"
DEFAULT_TAGS = {"ViT-B-32": "laion2b_s34b_b79k", "ViT-B-16": "laion2b_s34b_b88k",
                "ViT-L-14": "datacomp_xl_s13b_b90k", "ViT-bigG-14": "laion2b_s39b_b160k"}  # dgm-eval's
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PUBLISHED: dict[str, tuple[PublishedFile, ...]] = {}  # arch -> published files whose sha256 a public record states


def clip_weights(arch: str) -> PretrainedWeights:
    return PretrainedWeights(what=f"CLIP {arch} weights", env="GENBENCH_CLIP_WEIGHTS",
                             hub_names=(), known_sha256=next((f.sha256 for f in PUBLISHED.get(arch, ())), ""))


def parse_arch(arg: str | None) -> str:
    import open_clip

    arch = arg or DEFAULT_ARCH
    if arch not in open_clip.list_models():
        raise UsageError(f"unknown open_clip architecture {arch!r}; use clip:ViT-L-14 or a name from "
                         "open_clip.list_models()")
    return arch


def image_size(visual: torch.nn.Module) -> int:
    size = visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def preprocess(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float32 [N, 3, size, size]: bicubic shorter-side resize (PIL), centre crop, CLIP mean/std."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    out = []
    for im in x.permute(0, 2, 3, 1).cpu().numpy():
        pil = TF.resize(Image.fromarray(im), size, interpolation=TF.InterpolationMode.BICUBIC)
        out.append(TF.normalize(TF.center_crop(TF.to_tensor(pil), size), OPENAI_MEAN, OPENAI_STD))
    return torch.stack(out)


def state_dict_of(wf: WeightsFile) -> dict[str, torch.Tensor]:
    return tensors_of(wf, "pass open_clip's open_clip_model.safetensors")


def visual_state_dict(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The image tower's entries (``visual.*``) of a whole-model or image-tower state dict, prefix removed."""
    visual = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    if not visual:
        raise UsageError(f"weights file {path} has no 'visual.*' entries; pass an open_clip CLIP state dict")
    return visual


def load_clip(arch: str, weights: Path | str | None) -> tuple[torch.nn.Module, WeightsFile]:
    import open_clip

    spec = clip_weights(arch)
    located = locate_weights(spec, weights)
    wf = read_weights(*located) if located else _download(spec, arch)
    logger = logging.getLogger()  # open_clip logs "initialized randomly" for an architecture built without weights
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(arch, pretrained=None)
    finally:
        logger.setLevel(level)
    try:
        model.visual.load_state_dict(visual_state_dict(state_dict_of(wf), wf.path), strict=True)
    except RuntimeError as e:
        first = [ln.strip() for ln in str(e).splitlines() if ln.strip()][:2]
        raise UsageError(f"weights file {wf.path} does not fit open_clip's {arch} image tower ({' '.join(first)}); "
                         "pass that architecture's weights or choose the matching clip:ARCH") from None
    return model.eval(), wf


def _download(spec: PretrainedWeights, arch: str) -> WeightsFile:
    import open_clip

    if not download_allowed() or arch not in DEFAULT_TAGS:
        cause = "downloads are off (GENBENCH_OFFLINE is set)" if arch in DEFAULT_TAGS else f"genbench knows no default weights for {arch}"
        raise UsageError(f"no {spec.what} here and {cause}; pass --weights PATH or set {spec.env}=PATH")
    try:
        with download_timeout():
            path = open_clip.download_pretrained(open_clip.get_pretrained_cfg(arch, DEFAULT_TAGS[arch]))
    except Exception as e:  # noqa: BLE001 - network failures of any kind
        raise missing_weights_error(spec, f"the download failed ({type(e).__name__})") from None
    return read_weights(Path(path), "download")


class CLIPFeatures(FeatureExtractor):
    """open_clip image embedding [N, E]."""

    feature_keys = (POOL,)
    space = "clip"  # metric keys fd_clip, cmmd_clip, precision_clip, ...
    preprocessing = (
        "clip-v1: uint8 RGB (grey repeated to 3 channels); PIL bicubic resize of the shorter side to the "
        "tower's input size (torchvision), centre crop, /255, OpenAI CLIP mean/std, float32"
    )

    def __init__(self, arch: str, model: torch.nn.Module, weights: WeightsFile, device: torch.device | str = "cpu"):
        self.arch = arch
        self.name = f"clip:{arch}"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.size = image_size(model.visual)
        self.weights_path, self.weights_source, self.weights_sha256 = weights.path, weights.source, weights.sha256
        self.standard, self.verification = verify_weights(weights.sha256, PUBLISHED.get(arch, ()), f"CLIP {arch}")

    def extract(self, x: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
        # [N, 1|3, H, W] uint8 -> {"pool": [N, E]}
        x = as_rgb_uint8(x, self.name)
        return features_in_batches(self._forward, x, batch_size, self.device)

    def _forward(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        return {POOL: self.model.encode_image(preprocess(xb, self.size).to(self.device))}

    def identity(self) -> dict:
        import open_clip

        return {**super().identity(), "network": f"open_clip {open_clip.__version__} {self.arch} encode_image",
                "layers": {POOL: "encode_image (projected, not normalised)"}, "weights_source": self.weights_source,
                "weights_verification": self.verification}


@FEATURES.register("clip", description="open_clip CLIP image embedding (clip[:ViT-L-14]; CMMD's feature space)")
def build_clip(arg=None, weights=None, device="cpu") -> CLIPFeatures:
    arch = parse_arch(arg)
    model, wf = load_clip(arch, weights)
    return CLIPFeatures(arch, model, wf, device)
