"""Intra-FID and class consistency (metrics that read the labels asked for), and the labels
protocol that feeds them: balanced labels in SeededNoise, kept by the runner with the samples."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from genbench.errors import UsageError
from genbench.metrics import MetricOptions, default_metrics, evaluate_features
from genbench.metrics.fid import features_to_statistics, statistics_to_fid
from genbench.seeding import SeededNoise, balanced_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def labelled_features(n_per_class: int, classes: int = 3, dim: int = 4, seed: int = 0, shift: float = 3.0):
    """Gaussian features whose mean depends on the class: ([N, D], [N])."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.randn(len(y), dim, generator=g, dtype=torch.float64) + shift * torch.nn.functional.one_hot(y, dim).double()
    return x, y


def test_intra_fid_is_the_mean_of_the_per_class_fids():
    fake, fy = labelled_features(60, seed=1)
    real, ry = labelled_features(50, seed=2)
    res = evaluate_features(["intra_fid", "fid"], {"pool": fake, "labels": fy}, {"pool": real, "labels": ry})
    per_class = [statistics_to_fid(*features_to_statistics(fake[fy == c]), *features_to_statistics(real[ry == c])) for c in range(3)]
    assert res.values["intra_fid"] == pytest.approx(sum(per_class) / 3, rel=1e-9)
    assert res.info["intra_fid_classes"] == 3


def test_intra_fid_sees_wrong_classes_that_fid_does_not():
    fake, fy = labelled_features(60, seed=1)
    real, ry = labelled_features(60, seed=2)
    right = evaluate_features(["intra_fid", "fid"], {"pool": fake, "labels": fy}, {"pool": real, "labels": ry})
    wrong = evaluate_features(["intra_fid", "fid"], {"pool": fake, "labels": (fy + 1) % 3}, {"pool": real, "labels": ry})
    assert wrong.values["fid"] == right.values["fid"]  # the same samples
    assert wrong.values["intra_fid"] > 10 * right.values["intra_fid"]


def test_class_consistency_is_the_classifier_accuracy_against_the_labels_asked_for():
    y = balanced_labels(100, 10)
    logits = torch.nn.functional.one_hot(y, 10).double()
    logits[:30] = torch.nn.functional.one_hot((y[:30] + 1) % 10, 10).double()  # 30 samples of the wrong class
    real = {"logits": torch.nn.functional.one_hot(y, 10).double(), "labels": y}
    res = evaluate_features(["class_consistency"], {"logits": logits, "labels": y}, real, MetricOptions(bootstrap=20))
    assert res.values["class_consistency"] == pytest.approx(0.7)
    assert res.info["class_consistency_reference"] == 1.0 and not res.warnings
    lo, hi = res.ci["class_consistency"]
    assert lo <= 0.7 <= hi


def test_class_consistency_warns_when_the_logits_do_not_classify_the_reference():
    y = balanced_labels(50, 5)
    wrong = torch.nn.functional.one_hot((y + 1) % 5, 5).double()
    res = evaluate_features(["class_consistency"], {"logits": wrong, "labels": y}, {"logits": wrong, "labels": y})
    assert res.info["class_consistency_reference"] == 0.0
    assert any("not a classifier of this dataset's classes" in w for w in res.warnings)


def test_label_metrics_need_the_labels_and_are_default_only_with_them():
    fake, fy = labelled_features(20)
    with pytest.raises(UsageError, match="needs fake.labels, but the generated samples carry no class labels"):
        evaluate_features(["intra_fid"], {"pool": fake}, {"pool": fake, "labels": fy})
    assert "intra_fid" not in default_metrics({"pool", "logits"}, {"pool", "logits", "labels"})
    assert {"intra_fid", "class_consistency"} <= set(default_metrics({"pool", "logits", "labels"}, {"pool", "logits", "labels"}))


def test_seeded_noise_carries_balanced_labels_through_batches():
    noise = SeededNoise.for_run(0, 25, num_classes=10)
    assert torch.equal(noise.labels, torch.arange(25) % 10)
    parts = list(noise.batches(7))
    assert torch.equal(torch.cat([p.labels for p in parts]), noise.labels)
    # a sample's class depends on its index in the run, not on the batch it falls into
    assert torch.equal(SeededNoise.for_run(0, 5, start=20, num_classes=10).labels, noise.labels[20:])
    assert SeededNoise.for_run(0, 3).labels is None


def test_runner_keeps_the_labels_with_the_samples_for_the_label_metrics(tmp_path):
    from typer.testing import CliRunner

    from genbench.cli import app

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nsettings: {n_samples: 200, n_reference: 200, train: {steps: 3, batch_size: 32}}\n"
                     "runs:\n  - datasets: [digits]\n    models: [cgan, dcgan]\n")
    res = CliRunner().invoke(app, ["run", "--suite", str(suite), "--out", str(tmp_path / "out"),
                                   "--cache", str(tmp_path / "cache"), "--no-progress"])
    assert res.exit_code == 0, res.output
    con = sqlite3.connect(tmp_path / "out" / "results.sqlite")
    rows = {model: json.loads(m) for model, m in con.execute("SELECT model, metrics_json FROM records")}
    con.close()
    assert 0.0 <= rows["cgan"]["class_consistency"] <= 1.0 and rows["cgan"]["intra_fid"] > 0
    assert "intra_fid" not in rows["dcgan"] and "class_consistency" not in rows["dcgan"]
