"""The public Python API (filled in by the runner and store modules)."""

from __future__ import annotations


def evaluate(*args, **kwargs):
    from genbench.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def run_suite(*args, **kwargs):
    from genbench.runner import run_suite as _run_suite

    return _run_suite(*args, **kwargs)


def load_results(*args, **kwargs):
    from genbench.store import load_results as _load_results

    return _load_results(*args, **kwargs)
