"""Executors: who runs a suite's pending specs. ``local`` runs them one after another in this
process (``genbench.runner.run_specs``); ``ray`` spreads them over a Ray cluster. Each stores
every record as it arrives and reports it through ``genbench.runner.report_record``."""

from __future__ import annotations

from enum import Enum

from genbench.registry import check_choice


class Executor(str, Enum):
    """The values ``genbench run --executor`` accepts (Typer lists them in --help)."""

    local = "local"
    ray = "ray"


def check_executor(name: str) -> Executor:
    """An executor name checked with "did you mean" (an unknown one is a usage error, never run locally)."""
    return Executor(check_choice(str(getattr(name, "value", name)), [e.value for e in Executor], "executor"))


def run_with(executor: str, specs, store, ctx, rerun: bool = False, address: str | None = None) -> list:
    """Run the specs of ``specs`` not yet stored as ok with ``executor`` (``address``: the Ray cluster's);
    returns the records computed now."""
    if check_executor(executor) is Executor.ray:
        from genbench.executors.ray import run_specs_ray

        return run_specs_ray(specs, store, ctx, rerun=rerun, address=address)
    from genbench.runner import run_specs

    return run_specs(specs, store, ctx, rerun=rerun)
