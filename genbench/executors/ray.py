"""The Ray executor: one task per RunSpec across a Ray cluster; the driver writes the store.

``genbench run --executor ray`` connects to ``$RAY_ADDRESS`` when set (a cluster) or starts a
local Ray. Each task trains/loads, samples and evaluates one spec and returns its Record as a
dict; records are stored as they arrive, so an interrupted sweep resumes like a local one.
Workers share the checkpoint and reference caches when ``GENBENCH_CACHE`` points to shared storage.
The driver writes the ``--log-json`` events: ``spec_started`` when a task is submitted and
``evaluated``/``failed``/``skipped`` when its record arrives (the workers' stages are not logged).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genbench import cache
from genbench.errors import UsageError
from genbench.runner import RunContext, pending_specs, report_record, run_spec
from genbench.spec import RunSpec, record_from_dict


def _run_remote(spec_dict: dict[str, Any], device: str, data_root: str | None, cache_dir: str, batch_size: int,
                weights: str | None = None) -> dict[str, Any]:
    cache.set_cache_dir(cache_dir)
    ctx = RunContext(device=device, data_root=Path(data_root) if data_root else None, batch_size=batch_size,
                     weights=Path(weights) if weights else None)
    return run_spec(RunSpec.from_dict(spec_dict), ctx).to_dict()


def run_specs_ray(specs: list[RunSpec], store, ctx: RunContext, rerun: bool = False) -> list:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'genbench[ray]' (or use --executor local)") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False)
    gpus = 1 if ctx.device.startswith("cuda") else 0
    remote = ray.remote(num_gpus=gpus)(_run_remote)
    todo = pending_specs(specs, store, rerun)
    root = str(ctx.data_root) if ctx.data_root else None
    pending = {}
    for s in todo:
        ctx.event("spec_started", s)
        pending[remote.remote(s.to_dict(), ctx.device, root, str(cache.cache_dir()), ctx.batch_size,
                              str(ctx.weights) if ctx.weights else None)] = s
    records = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        pending.pop(ready[0])
        rec = record_from_dict(ray.get(ready[0]))
        store.put(rec)
        records.append(rec)
        report_record(rec, ctx)
    return records
