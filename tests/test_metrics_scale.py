"""Bounded memory of the k-NN and kernel metrics: results do not depend on the chunk size, and no
block larger than chunk_size x chunk_size is ever built.

The 50,000 x 50,000 x 2,048 case runs in the benchmark (``python -m genbench.bench metrics``);
here the same code runs on small sets with small chunks.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genbench.metrics import MetricOptions, evaluate_features, kid, neighbours

KNN = ["precision", "recall", "density", "coverage"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sets(n1: int, n2: int, dim: int, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {"pool": torch.randn(n1, dim, generator=g).to(dtype)}, {"pool": torch.randn(n2, dim, generator=g).to(dtype)}


@pytest.fixture
def block_sizes(monkeypatch):
    """Records rows x columns of every distance block computed."""
    sizes: list[tuple[int, int]] = []
    original = neighbours.block_distances

    def recording(a, b, upcast=False):
        sizes.append((len(a), len(b)))
        return original(a, b, upcast)

    monkeypatch.setattr(neighbours, "block_distances", recording)
    return sizes


def test_chunked_knn_metrics_equal_unchunked():
    fake, real = sets(700, 650, 64)
    whole = evaluate_features(KNN, fake, real, MetricOptions(chunk_size=10_000, bootstrap=5))
    for chunk in (128, 300):
        chunked = evaluate_features(KNN, fake, real, MetricOptions(chunk_size=chunk, bootstrap=5))
        # the same distances in other blocks: a BLAS may round a block's entries differently with
        # its shape (AVX-512), so a count may move by one sample where a distance ties a radius
        assert chunked.values == pytest.approx(whole.values, abs=1.01 / 650)
        assert {k: tuple(v) for k, v in chunked.ci.items()} == pytest.approx(whole.ci, abs=0.01)


def test_tiny_chunks_with_intervals_run_and_agree():
    """Chunks narrower than the neighbour lists (the old bootstrap kept 8 (k + 1) neighbours, the
    shared reference search keeps k + 1 + 8) used to stop with "selected index k out of range";
    every chunk size gives the same counts."""
    fake, real = sets(60, 70, 4, torch.float64)
    whole = evaluate_features(KNN, fake, real, MetricOptions(chunk_size=10_000, bootstrap=3))
    for chunk in (1, 3, 8, 15):
        tiny = evaluate_features(KNN, fake, real, MetricOptions(chunk_size=chunk, bootstrap=3))
        # counts over 60-70 samples: equal unless a distance ties a radius within round-off
        assert tiny.values == pytest.approx(whole.values, abs=1.01 / 60)
        assert set(tiny.ci) == set(KNN)


def test_distance_blocks_never_exceed_chunk_squared(block_sizes):
    fake, real = sets(900, 800, 32)
    chunk = 200
    result = evaluate_features(KNN, fake, real, MetricOptions(chunk_size=chunk, bootstrap=3))
    assert block_sizes and max(r * c for r, c in block_sizes) <= chunk * chunk
    assert set(result.ci) == set(KNN)


def test_nearest_distances_match_a_full_sort():
    """The running merge of per-block k smallest equals sorting whole rows (of the same blocks)."""
    x = torch.randn(500, 16, dtype=torch.float64)
    d, i = neighbours.nearest_distances(x, 7, chunk=64)
    full = torch.cat([torch.cat([torch.cdist(a, b) for b in x.split(64)], 1) for a in x.split(64)])
    expected_d, _ = full.sort(dim=1)
    assert torch.equal(d, expected_d[:, :7])
    assert torch.equal(full.gather(1, i), d)
    assert torch.equal(neighbours.kth_nearest_distance(x, 3, chunk=64), full.kthvalue(4, dim=1).values)


def test_kid_gram_blocks_are_bounded_and_chunk_independent(monkeypatch):
    fake, real = sets(600, 640, 32, torch.float64)
    base = MetricOptions(kid_subset_size=200, kid_subsets=30, bootstrap=4)
    whole = evaluate_features(["kid"], fake, real, dataclasses.replace(base, chunk_size=10_000))
    shapes: list[tuple[int, int]] = []
    original = kid.polynomial_kernel
    monkeypatch.setattr(kid, "polynomial_kernel", lambda x, y, o: shapes.append((len(x), len(y))) or original(x, y, o))
    chunked = evaluate_features(["kid"], fake, real, dataclasses.replace(base, chunk_size=128))
    assert chunked.info["kid_method"] == "gram"
    assert max(r * c for r, c in shapes) <= 128 * 128
    assert chunked.values["kid_mean"] == pytest.approx(whole.values["kid_mean"], rel=1e-12)
    assert chunked.ci["kid_mean"] == pytest.approx(whole.ci["kid_mean"], rel=1e-12)


def test_larger_sets_equal_torch_fidelity_with_chunks(block_sizes):
    """2,000 x 2,000 features of 2,048 dims in 500 x 500 blocks, against torch-fidelity's own
    blocked computation with the same block size."""
    tf_prc = pytest.importorskip("torch_fidelity.metric_prc")
    fake, real = sets(2000, 2000, 2048, seed=1)
    real["pool"] = real["pool"] * 1.01
    ours = evaluate_features(["precision", "recall"], fake, real, MetricOptions(chunk_size=500)).values
    ref = tf_prc.prc_features_to_metric(
        fake["pool"], real["pool"], prc_batch_size=500, save_cpu_ram=True, verbose=False
    )
    assert ours == {
        "precision": pytest.approx(ref["precision"], rel=1e-6),
        "recall": pytest.approx(ref["recall"], rel=1e-6),
    }
    assert max(r * c for r, c in block_sizes) == 500 * 500


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu_and_memory_is_bounded():
    fake, real = sets(20_000, 20_000, 256, seed=2)
    names = ["fid", "kid", "precision", "recall", "density", "coverage"]
    cpu = evaluate_features(names, fake, real, MetricOptions(chunk_size=4096))
    torch.cuda.reset_peak_memory_stats()
    cuda = evaluate_features(names, fake, real, MetricOptions(chunk_size=4096, device="cuda"))
    peak = torch.cuda.max_memory_allocated()
    for key, value in cpu.values.items():
        assert cuda.values[key] == pytest.approx(value, rel=1e-4), key
    features_bytes = 2 * 20_000 * 256 * 8
    assert peak < features_bytes + 16 * 4096 * 4096 * 4  # a few blocks, never 20,000^2
