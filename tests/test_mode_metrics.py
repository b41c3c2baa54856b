"""Toy 2-D mode metrics (VEEGAN, PacGAN): modes captured, high-quality share, KL to uniform over modes."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data.base import get_dataset
from genbench.errors import UsageError
from genbench.metrics import MetricOptions, evaluate_features
from genbench.reference import reference_extras

KEYS = ["modes_captured", "high_quality", "mode_kl"]


def mode_metrics(fake: torch.Tensor, dataset: str, **options):
    real = get_dataset(dataset).load("test").x
    extras = reference_extras(dataset, "test", None)
    return evaluate_features(KEYS, {"pool": fake}, {"pool": real, **extras}, MetricOptions(**options))


@pytest.mark.parametrize("dataset, modes", [("toy2d:8gaussians", 8), ("toy2d:25gaussians", 25)])
def test_the_data_themselves_capture_every_mode_with_the_gaussian_share(dataset, modes):
    res = mode_metrics(get_dataset(dataset).load("train").x, dataset)
    assert res.values["modes_captured"] == modes
    # P(|x - c| <= 3 sigma) for a 2-D isotropic Gaussian is 1 - exp(-9/2)
    assert res.values["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    assert res.values["mode_kl"] < 0.01


def test_samples_on_three_of_eight_modes_capture_three():
    centres, std = get_dataset("toy2d:8gaussians").modes()
    g = torch.Generator().manual_seed(0)
    x = centres[torch.arange(3).repeat(300)].float() + std * torch.randn(900, 2, generator=g) * 0.5
    res = mode_metrics(x, "toy2d:8gaussians")
    assert res.values["modes_captured"] == 3 and res.values["high_quality"] == 1.0
    assert res.values["mode_kl"] == pytest.approx(math.log(8 / 3), rel=1e-9)


def test_a_mode_below_the_share_threshold_is_not_captured_and_far_points_are_low_quality():
    centres, std = get_dataset("toy2d:8gaussians").modes()
    x = torch.cat([centres[:1].repeat(995, 1), centres[1:2].repeat(5, 1), torch.full((1000, 2), 10.0, dtype=torch.float64)]).float()
    res = mode_metrics(x, "toy2d:8gaussians")  # mode 1 holds 5 of 2000 = 0.25% < 0.8%
    assert res.values["modes_captured"] == 1 and res.values["high_quality"] == pytest.approx(0.5)
    assert mode_metrics(x, "toy2d:8gaussians", mode_min_share=0.002).values["modes_captured"] == 2


def test_mode_metrics_need_the_mode_centres():
    x = get_dataset("toy2d:checkerboard").load("test").x
    with pytest.raises(UsageError, match="needs real.mode_centres, but the reference set provides no 'mode_centres'"):
        evaluate_features(["modes_captured"], {"pool": x}, {"pool": x, **reference_extras("toy2d:checkerboard", "test", None)})


def test_toy2d_suite_reports_the_mode_metrics_on_the_mixtures():
    # the toy2d suite asks for every default metric; the mode metrics are among them where the dataset has modes
    from dataclasses import replace

    from genbench.runner import RunContext, run_spec
    from genbench.suite import expand_suite, load_suite

    specs = [s for s in expand_suite(load_suite("toy2d")) if s.model == "tiny" and s.seed == 0 and s.dataset in ("toy2d:25gaussians", "toy2d:moons")]
    assert len(specs) == 2 and all(not s.metrics for s in specs)
    for spec in specs:
        rec = run_spec(replace(spec, n_samples=300, n_reference=300, bootstrap=0), RunContext())
        assert rec.status == "ok", rec.error
        has = set(KEYS) <= set(rec.metrics)
        assert has == (spec.dataset == "toy2d:25gaussians")
        if has:  # one Gaussian over a 5x5 grid of modes falls mostly between them
            assert rec.metrics["high_quality"] < 0.5
