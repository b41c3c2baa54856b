"""What a run tells its user: rich progress bars on stderr, and an optional JSON-lines event log.

``Reporter`` draws one bar for the whole suite and one per stage (train, sample, features,
metrics) and prints one line per spec; ``quiet`` keeps only what needs reading (expansion notes,
failures, warnings). ``EventLog`` (``genbench run --log-json FILE``) appends one JSON object per
stage of each spec, for machines: ``spec_started``, ``trained``, ``sampled``, ``evaluated``,
``failed``, ``skipped``, ``reused``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

STAGES = ("train", "sample", "features", "metrics")
EVENTS = ("spec_started", "trained", "sampled", "evaluated", "failed", "skipped", "reused")


class EventLog:
    """One JSON object per line: ``{"event", "time", "key", "spec", ...stage fields}``, flushed as written."""

    def __init__(self, path: Path | str):
        from genbench.errors import UsageError

        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[str] | None = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write the event log {self.path} ({e.strerror}); choose a writable --log-json path") from None
        self._t0 = time.perf_counter()

    def emit(self, event: str, spec: Any = None, **fields: Any) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        row: dict[str, Any] = {"event": event, "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                               "elapsed_s": round(time.perf_counter() - self._t0, 3)}
        if spec is not None:
            row.update(key=spec.key, spec=spec.label())
        row.update(fields)
        if self._f is not None:
            self._f.write(json.dumps(row, sort_keys=True, default=str) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class Reporter:
    """Overall and per-stage progress with ETA, on stderr (stdout stays clean for --json)."""

    def __init__(self, total: int, enabled: bool = True, console: Console | None = None, quiet: bool = False,
                 events: EventLog | None = None):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.events = events
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not enabled or quiet, transient=False,
        )
        self.overall: TaskID = self.progress.add_task("suite", total=total)
        self.stages = {s: self.progress.add_task(s, total=1, start=False) for s in STAGES}

    def __enter__(self) -> "Reporter":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
        if self.events is not None:
            self.events.close()

    def stage(self, name: str, total: int) -> "StageCallback":
        task = self.stages[name]
        self.progress.reset(task, total=max(total, 1), completed=0, start=True)
        return StageCallback(self, task)

    def advance_overall(self) -> None:
        self.progress.advance(self.overall)

    def log(self, message: str, important: bool = False) -> None:
        """A line on stderr; with ``quiet`` only the ``important`` ones (failures, notes)."""
        if important or not self.quiet:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def event(self, event: str, spec: Any = None, **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(event, spec, **fields)


class StageCallback:
    """Called as ``cb(done, total)`` by long-running stages."""

    def __init__(self, reporter: Reporter, task: TaskID):
        self.reporter, self.task = reporter, task

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.reporter.progress.update(self.task, total=max(total, 1))
        self.reporter.progress.update(self.task, completed=done)
