"""The Ray executor: one task per RunSpec across a Ray cluster; the driver writes the store.

``genbench run --executor ray`` connects to ``$RAY_ADDRESS`` when set (a cluster) or starts a
local Ray. Each task trains/loads, samples and evaluates one spec and returns its Record as a
dict; records are stored as they arrive, so an interrupted sweep resumes like a local one.
Workers share the checkpoint and reference caches when ``GENBENCH_CACHE`` points to shared storage.
"""

from __future__ import annotations

import os
from typing import Any

from genbench.errors import UsageError


def _run_remote(spec_dict: dict[str, Any], device: str, data_root: str | None, cache_dir: str, batch_size: int) -> dict[str, Any]:
    from pathlib import Path

    from genbench import cache
    from genbench.runner import RunContext, run_spec
    from genbench.spec import RunSpec

    cache.set_cache_dir(cache_dir)
    ctx = RunContext(device=device, data_root=Path(data_root) if data_root else None, batch_size=batch_size)
    return run_spec(RunSpec.from_dict(spec_dict), ctx).to_dict()


def run_specs_ray(specs, store, ctx, rerun: bool = False) -> list:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'genbench[ray]' (or use --executor local)") from None
    from genbench import cache
    from genbench.spec import record_from_dict

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False)
    gpus = 1 if ctx.device.startswith("cuda") else 0
    remote = ray.remote(num_gpus=gpus)(_run_remote)
    done = set() if rerun else store.done_keys()
    todo = [s for s in specs if s.key not in done]
    if ctx.reporter:
        for _ in range(len(specs) - len(todo)):
            ctx.reporter.advance_overall()
    root = str(ctx.data_root) if ctx.data_root else None
    pending = {remote.remote(s.to_dict(), ctx.device, root, str(cache.cache_dir()), ctx.batch_size): s for s in todo}
    records = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(ready[0])
        rec = record_from_dict(ray.get(ready[0]))
        store.put(rec)
        records.append(rec)
        if ctx.reporter:
            ctx.reporter.log(f"{rec.status}: {spec.label()}" + (f": {rec.error}" if rec.error else ""))
            ctx.reporter.advance_overall()
    return records
