"""End to end: `genbench eval DIR1 DIR2 --features inception --weights W --json` equals
torch_fidelity.calculate_metrics on the same PNG folders and the same (random) weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch_fidelity
from PIL import Image
from typer.testing import CliRunner

from genbench.cli import app

N = 20  # images per folder: enough for 10 IS splits, small enough for Inception on 2 CPU cores


def write_pngs(folder, images):
    folder.mkdir(parents=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("eval-parity")
    # smooth colour fields vs. the same fields with strong pixel noise: two distinct distributions
    low = rng.uniform(0, 255, size=(2 * N, 4, 4, 3))
    smooth = np.stack([np.array(Image.fromarray(l.astype(np.uint8)).resize((32, 32), Image.BILINEAR)) for l in low])
    noisy = np.clip(smooth[N:] + rng.normal(0, 60, size=smooth[N:].shape), 0, 255).astype(np.uint8)
    return write_pngs(root / "a", smooth[:N]), write_pngs(root / "b", noisy)


def test_eval_equals_torch_fidelity_calculate_metrics(folders, inception_weights):
    a, b = folders
    res = CliRunner().invoke(app, ["eval", str(a), str(b), "--features", "inception", "--weights", str(inception_weights),
                                   "--metrics", "fid,kid,is", "--kid-subset-size", str(N // 2), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ours = json.loads(res.stdout)
    ref = torch_fidelity.calculate_metrics(
        input1=str(a), input2=str(b), cuda=False, fid=True, kid=True, isc=True, verbose=False,
        feature_extractor_weights_path=str(inception_weights), kid_subset_size=N // 2, save_cpu_ram=True,
    )
    assert ours["n1"] == N and ours["n2"] == N and ours["features"] == "inception"
    assert ours["info"]["kid_subset_size"] == N // 2
    pairs = {
        "fid": "frechet_inception_distance",
        "kid_mean": "kernel_inception_distance_mean",
        "kid_std": "kernel_inception_distance_std",
        "is_mean": "inception_score_mean",
        "is_std": "inception_score_std",
    }
    for ours_key, ref_key in pairs.items():
        assert ours[ours_key] == pytest.approx(ref[ref_key], rel=1e-5, abs=1e-12), ours_key
    assert ours["fid"] > 1.0  # the two folders really differ under these weights

