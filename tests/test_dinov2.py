"""dinov2 extractor: dgm-eval's preprocessing, timm parity, the official position-embedding
interpolation, weight formats and errors. Random ViT-S/14 weights from timm's own definition;
nothing is downloaded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("timm")

from genbench.errors import UsageError  # noqa: E402
from genbench.features import dinov2 as dn  # noqa: E402
from genbench.features.base import POOL, build_features  # noqa: E402


@pytest.fixture(scope="module")
def dino_weights(tmp_path_factory):
    return dn.make_random_dinov2_weights(tmp_path_factory.mktemp("dino") / "dinov2_vits14_pretrain.pth", seed=0)


@pytest.fixture(scope="module")
def dino_fe(dino_weights):
    return build_features("dinov2:vits14", weights=dino_weights)


def fixed_images(n=3, size=40, channels=3, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, 5, 5, generator=g) * 255
    smooth = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (smooth + 30 * torch.rand(n, channels, size, size, generator=g)).clamp(0, 255).round().to(torch.uint8)


def dgm_eval_transform(x: torch.Tensor) -> torch.Tensor:
    """dgm-eval's DINOv2Encoder.transform (clean_resize=False) on PIL images, as its loader gives them."""
    import torchvision.transforms as TF
    from PIL import Image

    t = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor()])
    norm = TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
    return torch.stack([norm(t(Image.fromarray(im.permute(1, 2, 0).numpy()))).float() for im in x])


def test_preprocessing_equals_dgm_eval():
    x = fixed_images(n=3, size=40)
    ours, ref = dn.preprocess(x), dgm_eval_transform(x)
    assert ours.shape == (3, 3, 224, 224)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_pos_embed_interpolation_is_dinov2s():
    # DINOv2's interpolate_pos_encoding: bicubic, scale (w0 + 0.1) / M, no antialias
    g = torch.Generator().manual_seed(1)
    pe = torch.randn(1, 1 + 37 * 37, 8, generator=g)
    out = dn.dinov2_pos_embed(pe, 16)
    grid = pe[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    s = 16.1 / math.sqrt(37 * 37)
    ref = torch.nn.functional.interpolate(grid, scale_factor=(s, s), mode="bicubic", align_corners=False)
    assert out.shape == (1, 257, 8)
    torch.testing.assert_close(out[:, 0], pe[:, 0])
    torch.testing.assert_close(out[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 256, 8), rtol=0, atol=0)
    # not timm's antialiased resampling, which would give other features
    anti = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bicubic", antialias=True)
    assert (anti.permute(0, 2, 3, 1).reshape(1, 256, 8) - out[:, 1:]).abs().max() > 1e-3


def test_features_equal_timm_forward(dino_fe, dino_weights):
    import timm

    x = fixed_images(n=4, size=32)
    ours = dino_fe.extract(x, batch_size=3)[POOL]
    ref_net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0).eval()
    sd = torch.load(dino_weights, weights_only=True)
    ref_net.load_state_dict(dn.to_timm_state_dict(sd, 16))
    with torch.no_grad():
        ref = ref_net(dgm_eval_transform(x))
    assert ours.shape == (4, 384)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    assert (ours - ours.mean(0)).abs().max() > 1e-3  # the features depend on the image


def test_timm_format_at_224_equals_timm_loader(tmp_path):
    # a timm-format file already at the 16x16 grid: no interpolation, same as timm's own loader
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    torch.manual_seed(3)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
    for name, p in net.named_parameters():
        if name.endswith(".gamma"):
            p.data.fill_(0.5)
    path = tmp_path / "timm.pth"
    torch.save(net.state_dict(), path)
    fe = build_features("dinov2:vits14", weights=path)
    x = fixed_images(n=2, size=24, channels=1)
    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0).eval()
    ref.load_state_dict(checkpoint_filter_fn(torch.load(path, weights_only=True), ref))
    with torch.no_grad():
        expect = ref(dgm_eval_transform(x.expand(-1, 3, -1, -1)))
    torch.testing.assert_close(fe.extract(x)[POOL], expect, rtol=0, atol=1e-5)


def test_identity_records_sha256_and_flags_nonstandard(dino_fe, dino_weights):
    import hashlib

    ident = dino_fe.identity()
    assert ident["features"] == "dinov2:vits14"
    assert ident["weights_sha256"] == hashlib.sha256(dino_weights.read_bytes()).hexdigest()
    assert ident["standard_weights"] is False
    assert "224x224" in ident["preprocessing"] and "bicubic" in ident["preprocessing"]


def test_environment_variable_and_errors(dino_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_DINOV2_WEIGHTS", str(dino_weights))
    assert dn.locate_weights(dn.dinov2_weights("vits14"), None) == (dino_weights, "environment")
    with pytest.raises(UsageError, match="unknown DINOv2 architecture 'vitx14'"):
        build_features("dinov2:vitx14", weights=dino_weights)
    with pytest.raises(UsageError, match="does not fit timm's vit_base_patch14_dinov2"):
        build_features("dinov2:vitb14", weights=dino_weights)
    monkeypatch.delenv("GENBENCH_DINOV2_WEIGHTS")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    with pytest.raises(UsageError, match="GENBENCH_DINOV2_WEIGHTS=PATH"):
        build_features("dinov2")


def test_eval_cli_end_to_end_names_the_space(dino_weights, tmp_path):
    import json

    from typer.testing import CliRunner

    from genbench.cli import app
    from genbench.metrics.fid import features_to_statistics, statistics_to_fid
    from genbench.metrics.vendi import vendi_score

    a, b = fixed_images(n=12, size=32, seed=1), fixed_images(n=10, size=32, seed=2)
    np.save(tmp_path / "a.npy", a.numpy())
    np.save(tmp_path / "b.npy", b.numpy())
    args = ["eval", tmp_path / "a.npy", tmp_path / "b.npy", "--features", "dinov2:vits14", "--weights", dino_weights,
            "--metrics", "fid,kid,precision,recall,density,coverage,vendi", "--kid-subset-size", "5", "--json"]
    res = CliRunner().invoke(app, [str(x) for x in args])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    keys = {"fd_dinov2", "kid_mean_dinov2", "kid_std_dinov2", "precision_dinov2", "recall_dinov2",
            "density_dinov2", "coverage_dinov2", "vendi_dinov2"}
    assert keys <= set(out) and not {"fid", "kid_mean", "precision", "vendi"} & set(out)
    assert out["features"] == "dinov2:vits14" and out["standard_weights"] is False
    # the numbers are those of the features the extractor gives
    fe = build_features("dinov2:vits14", weights=dino_weights)
    fa, fb = fe.extract(a)[POOL], fe.extract(b)[POOL]
    fd = statistics_to_fid(*features_to_statistics(fa), *features_to_statistics(fb))
    # n = 12 and 10 against d = 384: both covariances are rank-deficient, and eval's FID takes the N x N form of
    # the features while statistics_to_fid takes the D x D statistics; the two agree to round-off amplified by
    # the rank deficiency (1.7e-6 relative measured)
    assert out["fd_dinov2"] == pytest.approx(fd, rel=1e-5)
    assert out["vendi_dinov2"] == pytest.approx(vendi_score(fa), rel=1e-9)
    # which k each k-NN table used: precision/recall k = 3 (torch-fidelity), density/coverage k = 5 (prdc, dgm-eval)
    assert out["info"]["space"] == "dinov2" and out["info"]["prc_k"] == 3 and out["info"]["dc_k"] == 5


def test_weights_are_verified_against_published_sha256(dino_weights, tmp_path, monkeypatch):
    from genbench.features.base import sha256_file
    from genbench.features.nets import PublishedFile
    from safetensors.torch import save_file

    fe = build_features("dinov2:vits14", weights=dino_weights)
    ident = fe.identity()
    # no published sha256 of ViT-S/14 is known: recorded and marked unverified, never standard
    assert ident["weights_sha256"] == sha256_file(dino_weights) and ident["standard_weights"] is False
    assert ident["weights_verification"].startswith("unverified")
    # a file whose sha256 a published record states is standard, and the record is named
    monkeypatch.setitem(dn.PUBLISHED, "vits14", (PublishedFile("x.pth", sha256_file(dino_weights), "https://x"),))
    fe = build_features("dinov2:vits14", weights=dino_weights)
    assert fe.standard is True and fe.identity()["weights_verification"] == "verified: the sha256 of x.pth as published at https://x"
    # timm's safetensors format of the same network loads to the same features; another file is non-standard
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in torch.load(dino_weights, weights_only=True).items() if k != "mask_token"}, st)
    other = build_features("dinov2:vits14", weights=st)
    assert other.standard is False and other.identity()["weights_verification"].startswith("non-standard")
    x = fixed_images(n=2, size=24)
    torch.testing.assert_close(other.extract(x)[POOL], fe.extract(x)[POOL], rtol=0, atol=0)
    # the published ViT-B/14 records carry their source
    assert all(f.source.startswith("https://huggingface.co/timm/vit_base_patch14_dinov2.lvd142m/")
               for f in dn.PUBLISHED["vitb14"])
