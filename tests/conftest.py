"""Shared fixtures: an isolated cache per test session, the GPU marker, and slow tests opt-in."""

from __future__ import annotations

import os

import pytest
import torch

from genbench import cache


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only with GENBENCH_SLOW_TESTS=1, so the README's test command stays
    within CI's budget (each has a fast sibling that runs by default); ``gpu`` tests need CUDA."""
    run_slow, has_cuda = os.environ.get("GENBENCH_SLOW_TESTS") == "1", torch.cuda.is_available()
    skip_slow = pytest.mark.skip(reason="slow; set GENBENCH_SLOW_TESTS=1 to run it")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if not run_slow and item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)
        if not has_cuda and item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """Every test writes its cache under a session temp dir, never into ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GENBENCH_CACHE", str(tmp_path_factory.mktemp("genbench-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _reset_cache_override():
    yield
    cache.set_cache_dir(None)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: small networks and kernels are as fast, and much faster on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """One random (non-degenerate) InceptionV3 state dict in torch-fidelity's format per session."""
    from genbench.features.inception import make_random_inception_weights

    path = tmp_path_factory.getbasetemp() / "inception-random-seed0.pth"
    if not path.exists():
        make_random_inception_weights(path, seed=0)
    return path
