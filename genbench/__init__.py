"""genbench: reproducible benchmarks of generative models."""

__version__ = "0.1.0"

from genbench.api import evaluate, load_results, run_suite  # noqa: E402

__all__ = ["__version__", "evaluate", "load_results", "run_suite"]
