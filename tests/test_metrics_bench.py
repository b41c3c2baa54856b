"""``genbench bench metrics`` (genbench/bench/metrics.py) on small inputs: it runs below 1,000 samples and
does not read float noise near 0 as a large difference."""

from __future__ import annotations

import pytest

from genbench import bench

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_runs_below_the_default_kid_subset_size_and_agrees():
    pytest.importorskip("torch_fidelity")
    table = bench.bench_metrics(150, 16)  # the old code stopped here: KID subsets of 1,000 > n
    assert {"FID (features)", "KID (features)", "IS (logits)", "precision/recall (features)"} <= set(table["task"])
    # KID subsets of 150 samples on both sides: equal up to round-off; torch-fidelity's and clean-fid's
    # float32 kernel sums show float32 round-off (a few percent of a KID near 0)
    float32_kid = table["peer"].isin(["torch-fidelity", "clean-fid"]) & (table["task"] == "KID (features)")
    assert (table.loc[~float32_kid, "max_rel_diff"] < 1e-6).all(), table[["task", "peer", "max_rel_diff"]]
    assert (table.loc[float32_kid, "max_rel_diff"] < 0.2).all()
    # every installed peer has rows, every absent one a reason
    for peer, module in (("prdc", "prdc"), ("clean-fid", "cleanfid"), ("pytorch-fid", "pytorch_fid")):
        present = peer in set(table["peer"])
        assert present or peer in table.attrs["skipped"], peer
        if not present:
            assert "pip install" in table.attrs["skipped"][peer]


def test_relative_difference_has_an_absolute_floor():
    # kid_std 0 against 4.2e-7 of float noise: no difference worth reporting
    assert bench.max_relative_difference({"kid_std": 0.0}, {"kid_std": 4.2e-7}) < 0.05
    # above the floor a difference stays relative
    assert bench.max_relative_difference({"fid": 10.0}, {"fid": 11.0}) == pytest.approx(1 / 11)
    assert bench.max_relative_difference({"fid": 0.0}, {"fid": 1e-3}) == pytest.approx(1.0)
    # a standard deviation is read against its mean as well: 3e-7 of noise on a KID of 0.097 is nothing
    ours, theirs = {"kid_mean": 0.097, "kid_std": 0.0}, {"kid_mean": 0.097, "kid_std": 3e-7}
    assert bench.max_relative_difference(ours, theirs) == pytest.approx(3e-7 / 0.097)
