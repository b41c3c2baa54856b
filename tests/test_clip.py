"""clip extractor: open_clip's preprocessing and forward pass on a random ViT-S-32 image tower
built from open_clip's own definition; CMMD in CLIP space. Nothing is downloaded."""

from __future__ import annotations

import logging

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from genbench.errors import UsageError  # noqa: E402
from genbench.features import clip as cl  # noqa: E402
from genbench.features.base import POOL, build_features  # noqa: E402
from genbench.metrics import MetricOptions, evaluate_features  # noqa: E402
from genbench.metrics.cmmd import cmmd  # noqa: E402

ARCH = "ViT-S-32"


def random_model(seed=0):
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(seed)
    return open_clip.create_model(ARCH, pretrained=None).eval()


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "visual.pth"
    torch.save({"visual." + k: v for k, v in random_model().visual.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def clip_fe(clip_weights):
    return build_features(f"clip:{ARCH}", weights=clip_weights)


def images(n, h, w, seed, channels=3):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, 4, 4, generator=g) * 255
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).round().to(torch.uint8)


def open_clip_preprocess(x):
    from PIL import Image

    t = open_clip.image_transform(224, is_train=False)
    return torch.stack([t(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in x])


def test_preprocessing_equals_open_clips():
    x = images(2, 30, 45, 0)  # not square: shorter-side resize, then centre crop
    torch.testing.assert_close(cl.preprocess(x, 224), open_clip_preprocess(x), rtol=0, atol=1e-6)


def test_features_equal_open_clip_forward(clip_fe, clip_weights):
    x = images(3, 32, 32, 1)
    ref = random_model(seed=123)  # other random weights, then the file's
    ref.visual.load_state_dict({k[7:]: v for k, v in torch.load(clip_weights, weights_only=True).items()})
    with torch.no_grad():
        expect = ref.encode_image(open_clip_preprocess(x))
    got = clip_fe.extract(x, batch_size=2)[POOL]
    assert got.shape == (3, 384)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-5)
    assert (got - got.mean(0)).abs().max() > 1e-3
    ident = clip_fe.identity()
    assert ident["features"] == "clip:ViT-S-32" and ident["standard_weights"] is False and len(ident["weights_sha256"]) == 64


def test_cmmd_in_clip_space(clip_fe):
    fake, real = clip_fe.extract(images(6, 32, 32, 2)), clip_fe.extract(images(6, 32, 32, 3))
    res = evaluate_features(["cmmd"], fake, real, MetricOptions(), space=clip_fe.space)
    assert set(res.values) == {"cmmd_clip"}
    assert res.values["cmmd_clip"] == pytest.approx(cmmd(fake[POOL], real[POOL]), rel=1e-12)


def test_errors(clip_weights, tmp_path):
    with pytest.raises(UsageError, match="unknown open_clip architecture"):
        build_features("clip:ViT-Q-99", weights=clip_weights)
    with pytest.raises(UsageError, match="does not fit open_clip's ViT-B-32 image tower"):
        build_features("clip:ViT-B-32", weights=clip_weights)
    bad = tmp_path / "text_only.pth"
    torch.save({"token_embedding.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(UsageError, match="no 'visual"):
        build_features(f"clip:{ARCH}", weights=bad)
