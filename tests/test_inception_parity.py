"""End-to-end parity: genbench's inception features == torch-fidelity's own feature extraction.

Both read the same PNG folders with the same random (non-degenerate) weights file written by
``genbench.features.inception.make_random_inception_weights``; torch-fidelity goes through its
own folder loader (PIL -> RGB uint8 -> DataLoader) and its ``FeatureExtractorInceptionV3``,
genbench through an in-memory uint8 tensor. Inception on the CPU is slow, so the folders are
small; ``png_folders`` and ``inception_weights`` are fixtures that end-to-end metric tests
(``genbench eval DIR1 DIR2 --features inception --weights W``) can reuse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.features.base import LOGITS, POOL, build_features

N_PER_FOLDER = 8


def smooth_rgb(n: int, g: torch.Generator) -> torch.Tensor:
    """Smooth colour fields: [n, 3, 32, 32] uint8."""
    low = torch.rand(n, 3, 4, 4, generator=g) * 255
    return torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False).round().to(torch.uint8)


def noisy_rgb(n: int, g: torch.Generator) -> torch.Tensor:
    """Dark pixel noise: [n, 3, 32, 32] uint8 (a distribution far from ``smooth_rgb``)."""
    return (torch.rand(n, 3, 32, 32, generator=g) * 120).round().to(torch.uint8)


def write_png_folder(folder: Path, images: torch.Tensor) -> Path:
    """uint8 [N, 3, H, W] -> folder/00000.png, 00001.png, ... (lossless)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return folder


def read_png_folder(folder: Path) -> torch.Tensor:
    """Sorted PNGs -> uint8 [N, 3, H, W] (the order torch-fidelity uses)."""
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="session")
def png_folders(tmp_path_factory):
    """Two folders of N_PER_FOLDER 32x32 RGB PNGs with distinct distributions."""
    root = tmp_path_factory.mktemp("png-folders")
    g = torch.Generator().manual_seed(2024)
    return (
        write_png_folder(root / "smooth", smooth_rgb(N_PER_FOLDER, g)),
        write_png_folder(root / "noisy", noisy_rgb(N_PER_FOLDER, g)),
    )


def torch_fidelity_features(folder: Path, weights: Path) -> dict[str, torch.Tensor]:
    """torch-fidelity's own pipeline: its folder loader and its InceptionV3."""
    from torch_fidelity.utils import create_feature_extractor, extract_featuresdict_from_input_id

    fe = create_feature_extractor(
        "inception-v3-compat", ["2048", "logits_unbiased"], cuda=False,
        feature_extractor_weights_path=str(weights), verbose=False,
    )
    return extract_featuresdict_from_input_id(
        1, fe, input1=str(folder), cuda=False, batch_size=64, save_cpu_ram=True, verbose=False,
    )


def test_inception_features_equal_torch_fidelity(png_folders, inception_weights):
    fe = build_features("inception", weights=inception_weights)
    pools = []
    for folder in png_folders:
        ours = fe.extract(read_png_folder(folder), batch_size=64)
        theirs = torch_fidelity_features(folder, inception_weights)
        for key, tf_key in ((POOL, "2048"), (LOGITS, "logits_unbiased")):
            assert ours[key].shape == theirs[tf_key].shape
            diff = (ours[key] - theirs[tf_key]).abs().max().item()
            assert diff <= 1e-5 * max(1.0, theirs[tf_key].abs().max().item()), (folder.name, key, diff)
        pools.append(ours[POOL])
    # the two folders are far apart in feature space (the weights are not degenerate)
    a, b = pools
    within = torch.cdist(a, a).sum() / (len(a) * (len(a) - 1))
    assert torch.cdist(a, b).mean() > 1.5 * within
