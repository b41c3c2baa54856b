"""domain:<dataset> classifiers: training reaches its target, shipped weights verify and perform."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch

from genbench.data.base import get_dataset, images_to_uint8
from genbench.errors import DataUnavailableError, RunFailure, UnknownNameError, UsageError
from genbench.features import domain
from genbench.features.base import LOGITS, POOL, build_features

TARGETS = {"digits": 0.97, "mnist5k": 0.97, "fashion-mnist": 0.91}


def fid_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance (float64, covariance ddof 1; tr sqrt(s1 s2) from the eigenvalues of s1 s2)."""
    a, b = a.double().numpy(), b.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    tr_covmean = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(min=0)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def test_brief_training_on_digits_reaches_target(tmp_path):
    entry = domain.train_domain_classifier("digits", out_dir=tmp_path, epochs=15, seed=0)
    assert entry["test_accuracy"] >= TARGETS["digits"]
    assert (entry["n_train"], entry["n_test"]) == (1437, 360)
    path = tmp_path / "digits.safetensors"
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stat().st_size < 2_000_000
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["classifiers"]["digits"]["sha256"] == entry["sha256"]
    # the file stands alone: --weights loads it, and it is not the shipped (standard) one
    fe = build_features("domain:digits", weights=path)
    assert fe.standard is False and fe.weights_sha256 == entry["sha256"]
    test = get_dataset("digits").load("test")
    acc = domain.classifier_accuracy(fe, images_to_uint8(test.x), test.y)
    assert acc == pytest.approx(entry["test_accuracy"], abs=1e-4)


def test_training_is_deterministic(tmp_path):
    a = domain.train_domain_classifier("digits", out_dir=tmp_path / "a", epochs=2, seed=3)
    b = domain.train_domain_classifier("digits", out_dir=tmp_path / "b", epochs=2, seed=3)
    assert a["sha256"] == b["sha256"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GENBENCH_SLOW_TESTS"), reason="full recipe; set GENBENCH_SLOW_TESTS=1")
def test_retraining_digits_reproduces_the_shipped_file(tmp_path):
    entry = domain.train_domain_classifier("digits", out_dir=tmp_path)
    assert entry["sha256"] == domain.read_manifest(domain.shipped_dir())["classifiers"]["digits"]["sha256"]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_shipped_classifier_verifies_and_reaches_manifest_accuracy(name):
    manifest = domain.read_manifest(domain.shipped_dir())["classifiers"]
    assert name in manifest, f"no shipped classifier for {name}"
    entry = manifest[name]
    try:
        test = get_dataset(name).load("test")
    except DataUnavailableError as e:
        pytest.skip(str(e))
    fe = build_features(f"domain:{name}")
    assert fe.weights_source == "shipped" and fe.standard is True
    assert fe.weights_sha256 == entry["sha256"]
    assert entry["bytes"] < 2_000_000
    acc = domain.classifier_accuracy(fe, images_to_uint8(test.x), test.y)
    assert acc >= TARGETS[name]
    assert abs(acc - entry["test_accuracy"]) <= 1.0 / entry["n_test"]  # at most one image differs


def test_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    shutil.copy(domain.shipped_dir() / "manifest.json", tmp_path / "manifest.json")
    blob = bytearray((domain.shipped_dir() / "digits.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / "digits.safetensors").write_bytes(bytes(blob))
    monkeypatch.setattr(domain, "shipped_dir", lambda: tmp_path)
    with pytest.raises(RunFailure, match="damaged"):
        build_features("domain:digits")


def test_fid_real_vs_real_far_below_real_vs_noise():
    fe = build_features("domain:digits")
    ds = get_dataset("digits")
    train = fe.extract(ds.load("train").uint8())[POOL]
    test = fe.extract(ds.load("test").uint8())[POOL]
    g = torch.Generator().manual_seed(0)
    noise = fe.extract(torch.randint(0, 256, (360, 1, 8, 8), generator=g, dtype=torch.uint8))[POOL]
    fid_real, fid_noise = fid_from_features(train, test), fid_from_features(test, noise)
    assert fid_real * 20 < fid_noise, (fid_real, fid_noise)


def test_preprocessing_resizes_and_converts_channels():
    fe = build_features("domain:digits")
    x = get_dataset("digits").load("test").uint8()[:16]  # [16, 1, 8, 8]
    rgb_big = torch.nn.functional.interpolate(x.float(), size=(16, 16), mode="nearest").round().to(torch.uint8)
    rgb_big = rgb_big.repeat(1, 3, 1, 1)  # [16, 3, 16, 16]
    out = fe.extract(rgb_big)
    assert out[POOL].shape == (16, 128) and out[LOGITS].shape == (16, 10)
    # averaging equal channels and an exact 2x nearest up/down-sample give back the 8x8 image
    same = fe.extract(x)
    assert (out[LOGITS].argmax(1) == same[LOGITS].argmax(1)).float().mean() >= 0.9


def test_errors():
    with pytest.raises(UsageError, match="needs a dataset"):
        build_features("domain")
    with pytest.raises(UnknownNameError, match="did you mean|Known"):
        build_features("domain:digitz")
    with pytest.raises(UsageError, match="uint8"):
        build_features("domain:digits").extract(torch.zeros(2, 1, 8, 8))
    with pytest.raises(UsageError, match="labelled image dataset"):
        domain.train_domain_classifier("toy2d:moons", epochs=1)


def test_weights_of_another_dataset_are_refused(tmp_path):
    src = domain.shipped_dir() / "digits.safetensors"
    with pytest.raises(UsageError, match="not 'mnist5k'"):
        build_features("domain:mnist5k", weights=src)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(UsageError, match="not a readable safetensors"):
        build_features("domain:digits", weights=junk)


def test_trained_classifier_in_cache_is_used_when_none_is_shipped(monkeypatch, tmp_path):
    monkeypatch.setattr(domain, "shipped_dir", lambda: tmp_path / "nothing-shipped")
    with pytest.raises(UsageError, match="genbench train-features digits"):
        build_features("domain:digits")
    entry = domain.train_domain_classifier("digits", epochs=1)  # default out_dir: CACHE/domain
    fe = build_features("domain:digits")
    assert fe.weights_source == "trained" and fe.weights_sha256 == entry["sha256"] and fe.standard is False


def test_augment_shifts_within_bounds():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    same = domain.augment(x, domain.Recipe(shift=0), g)
    assert torch.equal(same, x)
    shifted = domain.augment(x, domain.Recipe(shift=1), g)
    assert shifted.shape == x.shape
    # every output pixel is an input pixel of the same image (replicate padding, no new values)
    for i in range(2):
        assert set(shifted[i].flatten().tolist()) <= set(x[i].flatten().tolist())
