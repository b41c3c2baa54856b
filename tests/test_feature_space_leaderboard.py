"""Leaderboards of records whose keys name their feature space (fd_dinov2, kid_mean_dinov2, vendi_dinov2)."""

from __future__ import annotations

from genbench.report.leaderboard import metric_columns, render_markdown, table_groups
from genbench.spec import OK, Record, RunSpec


def record(model, fd, seed=0):
    sp = RunSpec(suite="unit", dataset="cifar10", model=model, family="diffusion", recipe_hash="r", sampler="euler",
                 steps=8, seed=seed, n_samples=100, n_reference=100, metrics=(), features="dinov2")
    metrics = {"fd_dinov2": fd, "kid_mean_dinov2": 0.01, "kid_std_dinov2": 0.002, "precision_dinov2": 0.5,
               "vendi_dinov2": 7.5, "authpct_dinov2": 80.0}
    prov = {"features": "dinov2:vitl14", "weights_sha256": "c" * 64, "n_fake": 100, "n_real": 100}
    return Record(sp, OK, metrics, {}, {"kid_subset_size": 50}, prov)


def test_columns_follow_base_keys_and_std_is_paired():
    records = [record("b", 30.0), record("a", 20.0)]
    rows = next(iter(table_groups(records).values()))
    assert metric_columns(rows) == ["fd_dinov2", "kid_mean_dinov2", "precision_dinov2", "vendi_dinov2", "authpct_dinov2"]
    md = render_markdown(records, "unit", primary="fid")
    header = next(line for line in md.splitlines() if "fd_dinov2" in line)
    assert "fid" not in header.replace("fd_dinov2", "") and "kid_std_dinov2" not in header
    assert "0.01 ± 2.00e-03" in md  # KID's spread over subsets beside its mean
    # sorted by the space's Frechet distance (lower first) when there is no FID
    body = [line for line in md.splitlines() if line.startswith("| ") and ("| a " in line or "| b " in line)]
    assert body[0].startswith("| a ") and body[1].startswith("| b ")
