"""sfid extractor and the sFID key: features equal torch-fidelity's InceptionV3 run by hand up to
Mixed_6d's 1x1 branch (TF mixed_6/conv), first 7 channels; sFID is the Frechet distance on them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genbench.errors import UsageError
from genbench.features.base import POOL, build_features
from genbench.features.inception import torch_fidelity_inception
from genbench.metrics import MetricOptions, evaluate_features, higher_is_better
from genbench.metrics.fid import features_to_statistics, statistics_to_fid


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 255
    return F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False).round().to(torch.uint8)


def by_hand(weights, x):
    """ADM's spatial features through torch-fidelity's modules, step by step (no hook)."""
    import io

    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    net = torch_fidelity_inception(io.BytesIO(weights.read_bytes()))
    with torch.no_grad():
        h = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
        h = (h - 128) / 128
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c"):
            h = getattr(net, name)(h)
        h = net.Mixed_6d.branch1x1(h)  # [N, 192, 17, 17]
    return h[:, :7].reshape(len(x), -1)


@pytest.fixture(scope="module")
def sfid_fe(inception_weights):
    return build_features("sfid", weights=inception_weights)


def test_features_are_mixed_6_conv_first_7_channels(sfid_fe, inception_weights):
    x = images(3, 0)
    got = sfid_fe.extract(x, batch_size=2)[POOL]
    assert got.shape == (3, 7 * 17 * 17) == (3, 2023)
    torch.testing.assert_close(got, by_hand(inception_weights, x), rtol=0, atol=1e-5)
    assert sfid_fe.identity()["features"] == "sfid" and sfid_fe.identity()["standard_weights"] is False


def test_sfid_is_frechet_distance_on_them(sfid_fe):
    fake, real = sfid_fe.extract(images(5, 1)), sfid_fe.extract(images(6, 2))
    res = evaluate_features(["fid"], fake, real, MetricOptions(), space=sfid_fe.space)
    assert set(res.values) == {"sfid"}
    expect = statistics_to_fid(*features_to_statistics(fake[POOL]), *features_to_statistics(real[POOL]))
    # 5 and 6 samples in 2,023 dimensions: FID takes the N x N form of the features, statistics_to_fid the
    # D x D statistics; rank-deficient covariances make the two agree to round-off only (1e-7 relative measured)
    assert res.values["sfid"] == pytest.approx(max(expect, 0.0), rel=1e-6)
    assert higher_is_better("sfid") is False


def test_sfid_takes_no_argument(inception_weights):
    with pytest.raises(UsageError, match="'sfid' takes no argument"):
        build_features("sfid:x", weights=inception_weights)
