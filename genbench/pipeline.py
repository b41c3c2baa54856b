"""A whole suite, end to end: load and expand it, run its pending specs with an executor, store the
records, write the leaderboard. The top layer under the CLI and ``genbench.api.run_suite``:
pipeline -> executors -> runner -> models, data, metrics; the suite loader beside the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genbench import cache
from genbench.errors import UsageError
from genbench.executors import Executor, check_executor, run_with
from genbench.progress import EventLog, Reporter
from genbench.runner import RunContext, check_run_inputs, pending_specs, resolve_device
from genbench.spec import Record
from genbench.store import ResultsStore
from genbench.suite import Suite, load_suite, plan_suite


@dataclass
class RunSummary:
    suite: str
    out: Path
    records: list[Record]  # the stored records of this run's specs (reused or computed now)
    leaderboard: Path | None = None
    published: list[Path] = field(default_factory=list)
    reused: int = 0  # specs found stored as ok and not recomputed
    ran: int = 0  # specs computed now
    notes: list[str] = field(default_factory=list)  # what the expansion decided for the user
    warnings: list[str] = field(default_factory=list)  # what the results' reader must know

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)


def default_out(suite: Suite) -> Path:
    return Path("genbench-runs") / suite.name


def run_suite(suite: str | Suite = "default", out: Path | str | None = None, device: str = "auto", seed: int | None = None,
              publish: bool = False, cache_dir: Path | str | None = None, data_root: Path | str | None = None,
              weights: Path | str | None = None, progress: bool = True, rerun: bool = False,
              executor: str = "local", publish_dir: Path | str = "leaderboards", seeds: list[int] | None = None,
              quiet: bool = False, log_json: Path | str | None = None, address: str | None = None) -> RunSummary:
    """Run a suite end to end: expand, train/load, sample, evaluate, store, write the leaderboard.

    ``seeds`` (``--seeds``) or ``seed`` (``--seed``) replace the seeds of every grid; each seed trains
    and samples on its own. The leaderboard shows every record of the store in ``out``, so runs of
    other seeds kept there stay on it. ``executor="ray"`` runs each spec as a Ray task on the cluster at
    ``address`` (or ``$RAY_ADDRESS``; a local Ray without either).
    """
    executor = check_executor(executor)
    if address and executor is not Executor.ray:
        raise UsageError("--address is the Ray cluster's address: it needs --executor ray")
    if cache_dir is not None:
        cache.set_cache_dir(cache_dir)
    s = suite if isinstance(suite, Suite) else load_suite(suite)
    plan = plan_suite(s, seed=seed, seeds=seeds)
    out_dir = Path(out) if out is not None else default_out(s)
    ctx = RunContext(device=resolve_device(device), data_root=Path(data_root) if data_root else None,
                     weights=Path(weights) if weights else None)
    check_run_inputs(plan.specs, ctx)  # bad input stops here, before the store is opened
    events = EventLog(log_json) if log_json is not None else None
    store = ResultsStore(out_dir)
    todo = pending_specs(plan.specs, store, rerun)
    with Reporter(len(plan.specs), enabled=progress, quiet=quiet, events=events) as reporter:
        ctx.reporter = reporter
        for note in plan.notes:
            reporter.log(f"note: {note}", important=True)
        pending = {t.key for t in todo}
        for spec in plan.specs:
            if spec.key not in pending:
                reporter.event("reused", spec)
                reporter.advance_overall()
        run_with(executor, todo, store, ctx, rerun=rerun, address=address)
    return _summarise(s, plan, out_dir, store, len(todo), publish, publish_dir)


def _summarise(s: Suite, plan, out_dir: Path, store: ResultsStore, ran: int, publish: bool,
               publish_dir: Path | str) -> RunSummary:
    from genbench.report.leaderboard import collect_warnings, write_leaderboard

    keys = {sp.key for sp in plan.specs}
    stored = store.records()  # the leaderboard shows the whole store: other seeds and suites kept there stay on it
    summary = RunSummary(s.name, out_dir, [r for r in stored if r.key in keys], reused=len(plan.specs) - ran, ran=ran,
                         notes=list(plan.notes))
    summary.warnings = collect_warnings(summary.records)
    summary.leaderboard = write_leaderboard(stored, s, out_dir / "leaderboard", run_dir=out_dir)
    if publish:
        summary.published = [write_leaderboard(stored, s, Path(publish_dir) / s.name, csv=True, run_dir=out_dir)]
    return summary
