"""The Ray executor: one task per cell (the RunSpecs that share one sampling pass, usually one spec; a
suite naming several feature spaces gives one per space) across a Ray cluster; the driver alone writes the store.

``genbench run --executor ray`` connects to ``--address`` (or ``$RAY_ADDRESS``) when given, joins a
Ray already initialised in this process, or else starts a local Ray (and shuts it down afterwards).
Each task trains/loads and samples its cell once, evaluates each spec and returns their Records (and
sample previews) to the driver, which stores them as they arrive, so an interrupted sweep resumes like a local one. A task
asks for one GPU when the run's device is CUDA. A task whose worker dies (killed, out of memory) or
that raises is retried ``max_retries`` times; after that the driver stores one failed record per spec of it
and goes on. Only the driver touches the store, and it stores one record per finished task, so a
retried task is stored once. Workers share the checkpoint and reference caches when
``GENBENCH_CACHE`` (``--cache``) points to storage every node sees; cache files are written atomically.
The driver writes the ``--log-json`` events: ``spec_started`` when a task is submitted and
``evaluated``/``failed``/``skipped`` when its record arrives (the workers' stages are not logged).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from genbench import cache
from genbench.errors import UsageError
from genbench.runner import RunContext, pending_specs, report_record, run_cell, sampling_groups
from genbench.spec import FAILED, OK, Record, RunSpec, base_provenance, record_from_dict

MAX_RETRIES = 2  # a task runs at most 1 + MAX_RETRIES times


def run_remote(spec_dicts: list[dict[str, Any]], device: str, data_root: str | None, cache_dir: str, batch_size: int,
               weights: str | None = None) -> list[tuple[dict[str, Any], Any]]:
    """One cell on a Ray worker (specs sharing a sampling pass): per spec, its Record as a dict and its
    sample preview or None."""
    cache.set_cache_dir(cache_dir)
    ctx = RunContext(device=device, data_root=Path(data_root) if data_root else None, batch_size=batch_size,
                     weights=Path(weights) if weights else None)
    records = run_cell([RunSpec.from_dict(d) for d in spec_dicts], ctx)
    return [(rec.to_dict(), ctx.previews.pop(rec.key, None)) for rec in records]


def _connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address`` (or $RAY_ADDRESS), or this process's Ray, or start a local one.
    Returns whether this call started Ray (and so should shut it down)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
    except ConnectionError as e:
        raise UsageError(f"cannot reach the Ray cluster at {address!r} ({e}); check --address / $RAY_ADDRESS "
                         "(e.g. ray://HOST:10001 or HOST:6379), or drop it to start a local Ray") from None
    return True


def run_specs_ray(specs: list[RunSpec], store, ctx: RunContext, rerun: bool = False, address: str | None = None,
                  max_retries: int = MAX_RETRIES, task: Callable[..., tuple[dict, Any]] = run_remote) -> list[Record]:
    """Run the specs not yet stored as ok (all with ``rerun``) as Ray tasks; store each record as it
    arrives. ``task`` is what a worker runs for one spec (``run_remote``; tests wrap it)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'genbench[ray]' (or use --executor local)") from None
    started = _connect(ray, address)
    gpus = 1 if ctx.device.startswith("cuda") else 0
    remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=max_retries, retry_exceptions=True)(task)
    todo = pending_specs(specs, store, rerun)
    root = str(ctx.data_root) if ctx.data_root else None
    weights = str(ctx.weights) if ctx.weights else None
    pending = {}
    try:
        for cell in sampling_groups(todo):
            for s in cell:
                ctx.event("spec_started", s)
            ref = remote.remote([s.to_dict() for s in cell], ctx.device, root, str(cache.cache_dir()), ctx.batch_size,
                                weights)
            pending[ref] = cell
        records = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            for rec, preview in _results(ray, ready[0], cell, ctx, max_retries):
                store.put(rec)
                if rec.status == OK:
                    store.put_preview(rec.key, preview)
                records.append(rec)
                report_record(rec, ctx)
        return records
    finally:
        for ref in pending:  # interrupted: the unfinished tasks stop too (nothing of theirs is stored)
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _results(ray, ref, cell: list[RunSpec], ctx: RunContext, max_retries: int) -> list[tuple[Record, Any]]:
    """The records a task returned for its cell, or a failed record per spec once its retries are spent."""
    try:
        return [(record_from_dict(rec), preview) for rec, preview in ray.get(ref)]
    except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.OutOfMemoryError) as e:
        cause = getattr(e, "cause", None) or e
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        err = f"Ray task failed {1 + max_retries} times; last: {type(cause).__name__}: {first}"
        return [(Record(spec, FAILED, provenance={**base_provenance(ctx.device), "spec": spec.to_dict()}, error=err), None)
                for spec in cell]
