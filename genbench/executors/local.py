"""The local executor: specs one after another in this process (``genbench.runner.run_specs``)."""

from genbench.runner import run_specs as run_specs_local  # noqa: F401
