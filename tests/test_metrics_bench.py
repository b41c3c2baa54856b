"""``genbench bench metrics`` (genbench/bench.py) on small inputs: it runs below 1,000 samples and
does not read float noise near 0 as a large difference."""

from __future__ import annotations

import pytest

from genbench import bench

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_runs_below_the_default_kid_subset_size_and_agrees():
    pytest.importorskip("torch_fidelity")
    table = bench.bench_metrics(150, 16)  # the old code stopped here: KID subsets of 1,000 > n
    assert {"fid", "kid", "is", "precision/recall"} <= set(table["metric"])
    # KID subsets of 150 samples on both sides: equal up to round-off; torch-fidelity's float32
    # KID shows float32 round-off (a few percent of a KID near 0)
    float32_kid = table["reference"] == "torch-fidelity"
    float32_kid &= table["metric"] == "kid"
    assert (table.loc[~float32_kid, "max_rel_diff"] < 1e-6).all(), table[["metric", "reference", "max_rel_diff"]]
    assert float(table.loc[float32_kid, "max_rel_diff"].iloc[0]) < 0.2


def test_relative_difference_has_an_absolute_floor():
    # kid_std 0 against 4.2e-7 of float noise: no difference worth reporting
    assert bench.max_relative_difference({"kid_std": 0.0}, {"kid_std": 4.2e-7}) < 0.05
    # above the floor a difference stays relative
    assert bench.max_relative_difference({"fid": 10.0}, {"fid": 11.0}) == pytest.approx(1 / 11)
    assert bench.max_relative_difference({"fid": 0.0}, {"fid": 1e-3}) == pytest.approx(1.0)
