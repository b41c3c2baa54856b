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


def spaced(model, space, metrics, seed=0, sha="c"):
    sp = RunSpec(suite="unit", dataset="cifar10", model=model, family="diffusion", recipe_hash="r", sampler="euler",
                 steps=8, seed=seed, n_samples=100, n_reference=100, metrics=(), features=space)
    prov = {"features": space, "weights_sha256": sha * 64, "n_fake": 100, "n_real": 100}
    return Record(sp, OK, {**metrics, "nfe": 8.0, "sample_s_per_1k": 2.0}, {}, {"prc_k": 3, "dc_k": 5}, prov)


def test_a_cell_in_several_spaces_is_one_row_with_a_column_group_per_space():
    records = [spaced("a", "inception", {"fid": 20.0, "precision": 0.6}),
               spaced("a", "dinov2:vitl14", {"fd_dinov2": 300.0, "precision_dinov2": 0.5, "density_dinov2": 0.9}, sha="d"),
               spaced("b", "dinov2:vitl14", {"fd_dinov2": 200.0, "precision_dinov2": 0.7, "density_dinov2": 1.1}, sha="d"),
               spaced("b", "inception", {"fid": 30.0, "precision": 0.4})]
    groups = table_groups(records)
    assert list(groups) == [("cifar10", "inception (weights cccccccccccc) + dinov2:vitl14 (weights dddddddddddd)")]
    rows = groups[next(iter(groups))]
    assert len(rows) == 2 and {r.model for r in rows} == {"a", "b"}
    assert metric_columns(rows) == ["fid", "precision", "fd_dinov2", "precision_dinov2", "density_dinov2", "nfe",
                                    "sample_s_per_1k"]
    md = render_markdown(records, "unit", primary="fid")
    assert md.count("## cifar10") == 1
    assert "inception (weights cccccccccccc): `fid`, `precision`; dinov2:vitl14 (weights dddddddddddd): `fd_dinov2`" in md
    assert "k-NN metrics: precision/recall with k = 3; density/coverage with k = 5 nearest neighbours" in md
    body = [line for line in md.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert body[0].startswith("| a ") and "| **20** |" in body[0] and "| 300 |" in body[0]  # sorted by FID


def test_a_space_alone_keeps_its_table_and_keys_that_would_share_a_column_split_tables():
    records = [spaced("a", "inception", {"fid": 20.0}), spaced("a", "domain:cifar10", {"fid": 5.0}, sha="e")]
    assert len(table_groups(records)) == 2  # both report `fid`: a column never mixes spaces
