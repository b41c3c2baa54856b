"""Shared fixtures: an isolated cache per test session, and the GPU marker."""

from __future__ import annotations

import pytest
import torch

from genbench import cache


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


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
