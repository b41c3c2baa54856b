"""Inception / VGG16 extractors: weight resolution, identity, input conventions, errors.

Inception runs on random (non-degenerate) weights written by ``make_random_inception_weights``;
no test downloads anything (GENBENCH_OFFLINE=1, TORCH_HOME in a temp dir).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch

from genbench.errors import UsageError
from genbench.features import inception as inc
from genbench.features import vgg16
from genbench.features.base import FEATURES, LOGITS, POOL, build_features
from genbench.features.nets import WeightsFile, locate_weights


@pytest.fixture(scope="module")
def inception_fe(inception_weights):
    return build_features("inception", weights=inception_weights)


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """No weights anywhere and no downloads: an empty TORCH_HOME, no env paths, GENBENCH_OFFLINE=1."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    monkeypatch.delenv("GENBENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("GENBENCH_VGG16_WEIGHTS", raising=False)
    return tmp_path / "torch-home"


def smooth_images(n: int, seed: int, channels: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, 4, 4, generator=g) * 255
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return up.round().to(torch.uint8)


def test_registered_names():
    assert {"inception", "vgg16", "domain", "raw"} <= set(FEATURES.names())


@pytest.mark.parametrize("name, env", [("inception", "GENBENCH_INCEPTION_WEIGHTS"), ("vgg16", "GENBENCH_VGG16_WEIGHTS")])
def test_missing_weights_offline_names_three_ways(offline_home, name, env):
    with pytest.raises(UsageError) as e:
        build_features(name)
    msg = str(e.value)
    assert "\n" not in msg
    assert "--weights PATH" in msg and f"{env}=PATH" in msg and str(offline_home / "hub" / "checkpoints") in msg


def test_missing_weights_file_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        build_features("inception", weights=tmp_path / "nope.pth")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(UsageError, match="not a plain PyTorch state dict"):
        build_features("inception", weights=path)


def test_wrong_state_dict_is_usage_error(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UsageError, match="does not fit torch-fidelity's InceptionV3"):
        build_features("inception", weights=path)


def test_inception_identity_and_one_pass(inception_weights, inception_fe):
    fe = inception_fe
    ident = fe.identity()
    assert ident["weights_sha256"] == hashlib.sha256(inception_weights.read_bytes()).hexdigest()
    assert ident["standard_weights"] is False  # random weights are not the FID weights
    assert ident["weights_source"] == "argument"
    assert ident["preprocessing"].startswith("inception-v1")
    out = fe.extract(smooth_images(2, seed=1), batch_size=8)
    assert set(out) == {POOL, LOGITS}
    assert out[POOL].shape == (2, 2048) and out[LOGITS].shape == (2, 1008)
    assert out[POOL].dtype == torch.float32
    # non-degenerate random network: features differ between images and are not all zero
    assert out[POOL].std(dim=0).mean() > 1e-3 and (out[POOL] > 0).float().mean() > 0.5


def test_inception_grey_is_repeated_and_batching_does_not_matter(inception_fe):
    grey = smooth_images(2, seed=2, channels=1)
    a = inception_fe.extract(grey, batch_size=2)
    b = inception_fe.extract(grey.repeat(1, 3, 1, 1), batch_size=1)
    for k in (POOL, LOGITS):
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_inception_env_and_hub_cache_resolution(inception_weights, offline_home, monkeypatch):
    assert locate_weights(inc.INCEPTION_WEIGHTS, inception_weights) == (inception_weights, "argument")
    monkeypatch.setenv("GENBENCH_INCEPTION_WEIGHTS", str(inception_weights))
    assert locate_weights(inc.INCEPTION_WEIGHTS, None) == (inception_weights, "environment")
    monkeypatch.delenv("GENBENCH_INCEPTION_WEIGHTS")
    assert locate_weights(inc.INCEPTION_WEIGHTS, None) is None
    assert not inc.inception_weights_present(None)
    hub = offline_home / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    for name in reversed(inc.INCEPTION_WEIGHTS.hub_names):  # pytorch-fid's name, then torch-fidelity's
        (hub / name).symlink_to(inception_weights)
        assert locate_weights(inc.INCEPTION_WEIGHTS, None) == (hub / name, "hub cache")
    assert inc.inception_weights_present(None)


def test_standard_flag_compares_full_sha256(inception_fe):
    def flag(sha: str) -> bool:
        return inc.InceptionFeatures(inception_fe.net, WeightsFile(Path("w.pth"), sha, "argument", b"")).standard

    assert flag(inc.KNOWN_SHA256) is True
    assert flag(inc.KNOWN_SHA256[:8] + "0" * 56) is False  # the file-name prefix alone is not enough


def test_known_hashes_match_hub_file_names():
    # torch hub names files <name>-<first 8 hex digits of sha256>.pth
    assert inc.KNOWN_SHA256.startswith(inc.INCEPTION_WEIGHTS.hub_names[0].rsplit("-", 1)[1][:8])
    assert vgg16.KNOWN_SHA256.startswith("397923af")


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.zeros(2, 3, 8, 8), "uint8 N x C x H x W"),
        (torch.zeros(2, 8, 8, dtype=torch.uint8), "uint8 N x C x H x W"),
        (torch.zeros(2, 2, 8, 8, dtype=torch.uint8), "1 or 3 channels"),
        (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), "no images"),
    ],
)
def test_inception_bad_input(inception_fe, x, match):
    with pytest.raises(UsageError, match=match):
        inception_fe.extract(x)


def test_inception_takes_no_argument(inception_weights):
    with pytest.raises(UsageError, match="takes no argument"):
        build_features("inception:foo", weights=inception_weights)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GENBENCH_SLOW_TESTS"), reason="528 MB random VGG16; set GENBENCH_SLOW_TESTS=1")
def test_vgg16_equals_torch_fidelity(tmp_path):
    """genbench's vgg16 == torch-fidelity's FeatureExtractorVGG16 on the same (random) weights."""
    import torchvision
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    path = tmp_path / "vgg16-random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16().state_dict(), path)
    fe = build_features("vgg16", weights=path)
    x = smooth_images(2, seed=3)
    ours = fe.extract(x)
    ref = FeatureExtractorVGG16("vgg16", ["fc2_relu", "fc2"], feature_extractor_weights_path=str(path))
    with torch.no_grad():
        relu, fc2 = ref(x)
    assert torch.equal(ours[POOL], relu) and torch.equal(ours["fc2"], fc2)
    assert fe.identity()["standard_weights"] is False


def test_inception_runs_fixed_chunks_on_the_cpu_whatever_the_batch_size(inception_weights):
    """The forward sees CPU_CHUNK images at a time for any batch_size, so the features (which oneDNN
    rounds differently at other batch sizes) depend on the inputs only; a spy stands in for the network."""
    fe = build_features("inception", weights=inception_weights)
    seen = []

    def spy(xb):  # [B, 3, H, W] uint8 -> (pool [B, 2048], logits [B, 1008]): the image's mean in every slot
        seen.append(len(xb))
        m = xb.float().mean(dim=(1, 2, 3))[:, None]
        return m.expand(-1, 2048), m.expand(-1, 1008)

    fe.net = spy
    x = smooth_images(2 * inc.CPU_CHUNK + 3, seed=3)
    for bs in (1, 5, 256):
        seen.clear()
        out = fe.extract(x, batch_size=bs)
        assert seen == [inc.CPU_CHUNK, inc.CPU_CHUNK, 3], bs
        assert torch.equal(out[POOL][:, 0], x.float().mean(dim=(1, 2, 3)))  # order kept across chunks
