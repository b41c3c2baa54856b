"""Vendi, memorisation (authpct, nn_ratio), CMMD and feature-space key names, on fixed feature
arrays against their reference definitions (vendi-score; dgm-eval's authpct; CMMD's published
formula in float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.errors import UsageError
from genbench.metrics import MetricOptions, evaluate_features, higher_is_better
from genbench.metrics.base import metric_key, space_key
from genbench.metrics.cmmd import cmmd
from genbench.metrics.memorisation import memorisation
from genbench.metrics.vendi import per_class_vendi, vendi_score


def feats(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + shift


@pytest.mark.parametrize("n, d", [(60, 8), (12, 30)])
def test_vendi_equals_vendi_score_package(n, d):
    vendi = pytest.importorskip("vendi_score.vendi")
    x = feats(n, d, 0)
    ref = vendi.score_dual(x.numpy().astype(np.float64), q=1, normalize=True)
    assert vendi_score(x) == pytest.approx(ref, rel=1e-9)
    # the same through the n x n similarity matrix of unit vectors (linear kernel)
    u = torch.nn.functional.normalize(x.double(), dim=1).numpy()
    assert vendi_score(x) == pytest.approx(vendi.score_K(u @ u.T, q=1), rel=1e-9)


def test_vendi_known_values():
    e = torch.eye(5)
    assert vendi_score(e) == pytest.approx(5.0, rel=1e-12)  # 5 orthogonal directions: 5 distinct samples
    assert vendi_score(torch.ones(7, 3) * torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(UsageError, match="all zeros"):
        vendi_score(torch.zeros(3, 2))


def test_per_class_vendi_is_dgm_evals_definition():
    vendi = pytest.importorskip("vendi_score.vendi")
    x, labels = feats(40, 6, 1), torch.arange(40) % 3
    got = per_class_vendi(x, labels)
    assert sorted(got) == [0, 1, 2]
    for c, v in got.items():
        assert v == pytest.approx(vendi.score_dual(x[labels == c].double().numpy(), q=1, normalize=True), rel=1e-9)


def dgm_eval_authpct(train, gen):
    """dgm-eval's compute_authpct, as published (float32 cdist, self-distances excluded)."""
    real = torch.cdist(train, train)
    real.fill_diagonal_(float("inf"))
    gd = torch.cdist(train, gen)
    real_min, gen_min = real.min(dim=0), gd.min(dim=0)
    authen = real_min.values[gen_min.indices] < gen_min.values
    return (100 * torch.sum(authen) / len(authen)).item(), (gen_min.values / real_min.values[gen_min.indices])


def test_memorisation_equals_dgm_eval_authpct():
    train = feats(50, 5, 2)
    gen = torch.cat([train[:10] + 1e-3 * feats(10, 5, 3), feats(30, 5, 4, shift=0.5)])  # 10 near-copies
    auth, ratio_median, ratios = memorisation(gen, train, chunk=7)
    # dgm-eval's definition evaluated in float64: in float32 the near-copies' distances (1e-3 against
    # norms of 1) lose several digits to cancellation, differently with the BLAS thread count
    ref_auth, ref_ratios = dgm_eval_authpct(train.double(), gen.double())
    assert auth == pytest.approx(ref_auth, abs=1e-9)
    torch.testing.assert_close(ratios, ref_ratios, rtol=1e-9, atol=0)
    assert ratio_median == pytest.approx(float(ref_ratios.double().median()), rel=1e-6)
    assert (ratios[:10] < 0.05).all() and auth <= 75.0  # the copies are found and are not authentic


def test_cmmd_equals_published_formula_float64():
    x, y = feats(40, 16, 5), feats(30, 16, 6, shift=0.3)
    xn = x.double().numpy() / np.linalg.norm(x.double().numpy(), axis=1, keepdims=True)
    yn = y.double().numpy() / np.linalg.norm(y.double().numpy(), axis=1, keepdims=True)
    gamma = 1 / (2 * 10.0**2)

    def k(a, b):
        return np.exp(-gamma * (-2 * a @ b.T + (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :])).mean()

    ref = 1000 * (k(xn, xn) + k(yn, yn) - 2 * k(xn, yn))
    assert cmmd(x, y, chunk=9) == pytest.approx(ref, rel=1e-10)
    assert ref > 0 and cmmd(x, x) == pytest.approx(0.0, abs=1e-12)


def test_keys_name_the_feature_space():
    fake, real = {"pool": feats(40, 6, 7, shift=0.2)}, {"pool": feats(40, 6, 8)}
    names = ["fid", "kid", "precision", "vendi", "authpct", "cmmd"]
    opts = MetricOptions(kid_subset_size=20, kid_subsets=5, bootstrap=4)
    plain = evaluate_features(names, fake, real, opts)
    spaced = evaluate_features(names, fake, real, opts, space="dinov2")
    assert "fd_dinov2" in spaced.values and "fid" not in spaced.values
    assert {space_key(k, "dinov2") for k in plain.values} == set(spaced.values)
    assert {"kid_mean_dinov2", "precision_dinov2", "vendi_dinov2", "authpct_dinov2", "cmmd_dinov2"} <= set(spaced.values)
    for k, v in plain.values.items():
        assert spaced.values[space_key(k, "dinov2")] == v
    assert set(spaced.ci) == {space_key(k, "dinov2") for k in plain.ci} and "fd_dinov2" in spaced.ci
    assert "fd_dinov2_bias" in spaced.info and "fid_bias" not in spaced.info
    assert spaced.info["space"] == "dinov2"
    # directions follow the base key; unknown keys stay unknown
    assert higher_is_better("fd_dinov2") is False and higher_is_better("vendi_clip") is True
    assert metric_key("kid_mean_dinov2").bounds == (0.0, None)
    assert metric_key("nonsense_dinov2") is None


def test_warnings_name_the_space():
    # n < d: FID's rank warning must not call an FD in DINOv2 space "FID"
    fake, real = {"pool": feats(5, 8, 9)}, {"pool": feats(5, 8, 10)}
    plain = evaluate_features(["fid"], fake, real)
    spaced = evaluate_features(["fid"], fake, real, space="dinov2")
    assert any("FID" in w for w in plain.warnings)
    assert spaced.warnings and not any("FID" in w or "fid" in w for w in spaced.warnings)
    assert any("fd_dinov2" in w for w in spaced.warnings)


def test_vendi_per_class_metric_is_the_mean_of_vendi_score_per_class():
    vendi = pytest.importorskip("vendi_score.vendi")
    x, labels = feats(45, 6, 7), torch.tensor([0, 1, 2, 2, 0] * 9)  # classes of 18, 9 and 18 samples
    res = evaluate_features(["vendi_per_class"], {"pool": x, "labels": labels}, None, space="dinov2")
    per_class = [vendi.score_dual(x[labels == c].double().numpy(), q=1, normalize=True) for c in range(3)]
    assert res.values["vendi_per_class_dinov2"] == pytest.approx(sum(per_class) / 3, rel=1e-9)
    assert res.info["vendi_by_class"]["1"] == pytest.approx(per_class[1], rel=1e-9)
    assert higher_is_better("vendi_per_class_dinov2")
    # an unconditional model's samples carry no labels: one line saying so
    with pytest.raises(UsageError, match="vendi_per_class.*no class labels"):
        evaluate_features(["vendi_per_class"], {"pool": x}, None)
