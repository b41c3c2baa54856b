"""``dinov2[:vits14|vitb14|vitl14|vitg14]``: the DINOv2 CLS embedding, as dgm-eval computes it.

Stein et al. 2023 ("Exposing flaws of generative model evaluation metrics and their unfair
treatment of diffusion models", NeurIPS; the dgm-eval code) found that Inception features
misjudge diffusion models and recommended DINOv2 ViT-L/14 (Oquab et al. 2023); EDM2 (Karras et
al. 2024) reports FD_DINOv2 next to FID. genbench returns, in one pass:

* ``pool`` [N, D]  the final-LayerNorm CLS token (D = 384, 768, 1024, 1536 for s, b, l, g):
  what ``torch.hub.load("facebookresearch/dinov2", "dinov2_vitl14")(x)`` returns

Preprocessing is dgm-eval's ``DINOv2Encoder.transform`` (its default, ``clean_resize=False``):
each uint8 RGB image (grey repeated to 3 channels) becomes a PIL image, is resized to 224x224
by torchvision's ``Resize((224, 224), BICUBIC)`` (PIL's bicubic resampling, uint8 result),
scaled to [0, 1] and normalised with the ImageNet mean and std.

The network is timm's DINOv2 ViT (``vit_{small,base,large,giant}_patch14_dinov2``, img_size
224). DINOv2's checkpoints hold a 37x37 position-embedding grid (518 px); the official model
interpolates it to the 16x16 grid of a 224 px input on every forward pass (bicubic, scale
factor (16 + 0.1) / 37, no antialiasing; ``interpolate_pos_encoding``). genbench applies the
same interpolation once when loading (``dinov2_pos_embed``), so the features are those of the
official model; timm's own loader would resample with antialiasing and differ.

Weights, in order: ``--weights PATH`` (the official ``dinov2_vitl14_pretrain.pth``, or timm's
``pytorch_model.bin``/``model.safetensors`` of the same network: ``mask_token`` is dropped, ViT-g's
``w12``/``w3`` become ``fc1``/``fc2``), ``$GENBENCH_DINOV2_WEIGHTS``, the torch hub cache
(``checkpoints/dinov2_vitl14_pretrain.pth``, where ``torch.hub.load`` puts it), else a download of
the official file when online (not with GENBENCH_OFFLINE=1). The sha256 of the file is recorded and
compared with ``PUBLISHED``, the files whose sha256 a public record states: timm's ViT-B/14 files
on the Hugging Face hub (their pages show each file's Git LFS sha256). For the official
``dl.fbaipublicfiles.com`` checkpoints and timm's other sizes no published sha256 was found, so
those files are recorded as ``unverified`` (``standard=False``) until one is added there.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from genbench.errors import RunFailure, UsageError
from genbench.features.base import FEATURES, POOL, FeatureExtractor
from genbench.features.nets import (
    PretrainedWeights,
    PublishedFile,
    WeightsFile,
    as_rgb_uint8,
    download_allowed,
    download_timeout,
    features_in_batches,
    hub_checkpoint_dir,
    locate_weights,
    missing_weights_error,
    read_weights,
    tensors_of,
    verify_weights,
)

ARCHS = {  # dgm-eval's names -> timm's model names
    "vits14": "vit_small_patch14_dinov2",
    "vitb14": "vit_base_patch14_dinov2",
    "vitl14": "vit_large_patch14_dinov2",
    "vitg14": "vit_giant_patch14_dinov2",
}
DEFAULT_ARCH = "vitl14"
INPUT_SIZE = 224
PATCH = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POS_OFFSET = 0.1  # DINOv2's interpolate_offset
# arch -> published files whose sha256 a public record states (the Hugging Face file pages show the Git LFS sha256)
PUBLISHED: dict[str, tuple[PublishedFile, ...]] = {
    "vitb14": (
        PublishedFile("timm/vit_base_patch14_dinov2.lvd142m model.safetensors",
                      "55cbb5d887b336d430e649c277b85a1429e724871f9d02ac16203235886d8c7b",
                      "https://huggingface.co/timm/vit_base_patch14_dinov2.lvd142m/blob/main/model.safetensors"),
        PublishedFile("timm/vit_base_patch14_dinov2.lvd142m pytorch_model.bin",
                      "c8f07b5edc5f37f0ec8205fd8777d8c594281d05fc7abd4569f273ea3838e4d6",
                      "https://huggingface.co/timm/vit_base_patch14_dinov2.lvd142m/blob/refs%2Fpr%2F4/pytorch_model.bin"),
    ),
}
URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/dinov2_{arch}_pretrain.pth"


def dinov2_weights(arch: str) -> PretrainedWeights:
    return PretrainedWeights(
        what=f"DINOv2 {arch} weights",
        env="GENBENCH_DINOV2_WEIGHTS",
        hub_names=(f"dinov2_{arch}_pretrain.pth",),
        known_sha256=next((f.sha256 for f in PUBLISHED.get(arch, ())), ""),
    )


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float32 [N, 3, 224, 224]: PIL bicubic resize, /255, ImageNet mean/std."""
    from PIL import Image

    rgb = x.permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, 3] uint8
    resized = np.stack([np.asarray(Image.fromarray(im).resize((INPUT_SIZE, INPUT_SIZE), Image.BICUBIC)) for im in rgb])
    t = torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, 224, 224] in [0, 1]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (t - mean) / std


def dinov2_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, 1 + M*M, D] -> [1, 1 + grid*grid, D] as DINOv2's interpolate_pos_encoding does it."""
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:].float()
    m = math.isqrt(patches.shape[1])
    if m * m != patches.shape[1]:
        raise UsageError(f"the position embedding has {patches.shape[1]} patch tokens, not a square grid; "
                         "pass a DINOv2 ViT/14 checkpoint")
    if m == grid:
        return pos_embed
    d = patches.shape[2]
    scale = (grid + POS_OFFSET) / m
    img = patches.reshape(1, m, m, d).permute(0, 3, 1, 2)  # [1, D, M, M]
    out = torch.nn.functional.interpolate(img, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if out.shape[-1] != grid:
        raise RunFailure(f"position-embedding interpolation gave a {out.shape[-1]} grid, expected {grid}")
    return torch.cat([cls, out.permute(0, 2, 3, 1).reshape(1, grid * grid, d).to(pos_embed.dtype)], dim=1)


def to_timm_state_dict(sd: dict[str, torch.Tensor], grid: int) -> dict[str, torch.Tensor]:
    """Official DINOv2 or timm keys -> timm's DINOv2 ViT at a ``grid`` x ``grid`` patch grid."""
    out = {}
    for k, v in sd.items():
        if k == "mask_token":  # used in DINOv2 training only
            continue
        k = k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")  # ViT-g SwiGLU
        out[k] = dinov2_pos_embed(v, grid) if k == "pos_embed" else v
    return out


def timm_dinov2(arch: str) -> torch.nn.Module:
    """timm's DINOv2 ViT of ``arch`` at 224 px, no head: forward gives the normalised CLS token."""
    import timm

    return timm.create_model(ARCHS[arch], pretrained=False, img_size=INPUT_SIZE, num_classes=0)


def parse_arch(arg: str | None) -> str:
    arch = arg or DEFAULT_ARCH
    if arch not in ARCHS:
        raise UsageError(f"unknown DINOv2 architecture {arch!r}; use dinov2:" + ", dinov2:".join(ARCHS))
    return arch


def load_dinov2(arch: str, weights: Path | str | None) -> tuple[torch.nn.Module, WeightsFile]:
    spec = dinov2_weights(arch)
    located = locate_weights(spec, weights)
    wf = read_weights(*located) if located else _download(spec, arch)
    net = timm_dinov2(arch)
    sd = to_timm_state_dict(tensors_of(wf, f"pass dinov2_{arch}_pretrain.pth or timm's model.safetensors"),
                            INPUT_SIZE // PATCH)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise UsageError(f"weights file {wf.path} does not fit timm's {ARCHS[arch]} "
                         f"({str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}); "
                         f"pass dinov2_{arch}_pretrain.pth or choose the matching dinov2:ARCH") from None
    return net.eval(), wf


def _download(spec: PretrainedWeights, arch: str) -> WeightsFile:
    if not download_allowed():
        raise missing_weights_error(spec, "downloads are off (GENBENCH_OFFLINE is set)")
    path = hub_checkpoint_dir() / spec.hub_names[0]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with download_timeout():
            torch.hub.download_url_to_file(URL.format(arch=arch), str(path), progress=False)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, timeouts, DNS failures ...
        raise missing_weights_error(spec, f"the download failed ({type(e).__name__})") from None
    return read_weights(path, "download")


class DINOv2Features(FeatureExtractor):
    """DINOv2 CLS token [N, D] (timm's ViT, official position-embedding interpolation)."""

    feature_keys = (POOL,)
    space = "dinov2"  # metric keys fd_dinov2, kid_mean_dinov2, precision_dinov2, ...
    preprocessing = (
        "dinov2-v1: uint8 RGB (grey repeated to 3 channels); PIL bicubic resize to 224x224 "
        "(dgm-eval's torchvision Resize on PIL images), /255, ImageNet mean/std, float32"
    )

    def __init__(self, arch: str, net: torch.nn.Module, weights: WeightsFile, device: torch.device | str = "cpu"):
        self.arch = arch
        self.name = f"dinov2:{arch}"
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.weights_path = weights.path
        self.weights_source = weights.source
        self.weights_sha256 = weights.sha256
        self.standard, self.verification = verify_weights(weights.sha256, PUBLISHED.get(arch, ()), f"DINOv2 {arch}")

    def extract(self, x: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
        # [N, 1|3, H, W] uint8 -> {"pool": [N, D]}
        x = as_rgb_uint8(x, self.name)
        return features_in_batches(self._forward, x, batch_size, self.device)

    def _forward(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        return {POOL: self.net(preprocess(xb).to(self.device))}

    def identity(self) -> dict:
        import timm

        return {
            **super().identity(),
            "network": f"timm {timm.__version__} {ARCHS[self.arch]} (img_size {INPUT_SIZE}, CLS token)",
            "layers": {POOL: "norm(x)[:, 0]"},
            "weights_source": self.weights_source,
            "weights_verification": self.verification,
        }


@FEATURES.register("dinov2", description="DINOv2 ViT CLS token, dgm-eval preprocessing (dinov2[:vits14|vitb14|vitl14|vitg14])")
def build_dinov2(arg=None, weights=None, device="cpu") -> DINOv2Features:
    arch = parse_arch(arg)
    net, wf = load_dinov2(arch, weights)
    return DINOv2Features(arch, net, wf, device)


def make_random_dinov2_weights(path: Path | str, arch: str = "vits14", seed: int = 0, grid: int = 37) -> Path:
    """Write a random DINOv2 checkpoint in the official key format (``grid`` x ``grid`` position
    embedding, ``mask_token``), built from timm's architecture; layer scales are drawn in
    [0.3, 0.7] (timm's 1e-5 init would make every block nearly the identity)."""
    import timm

    torch.manual_seed(seed)
    net = timm.create_model(ARCHS[arch], pretrained=False, img_size=grid * PATCH, num_classes=0)
    sd = net.state_dict()
    g = torch.Generator().manual_seed(seed)
    for k in sd:
        if k.endswith(".gamma"):
            sd[k] = 0.3 + 0.4 * torch.rand(sd[k].shape, generator=g)
    sd["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path
