"""Rich progress bars: one for the whole suite and one per stage (train, sample, features, metrics)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

STAGES = ("train", "sample", "features", "metrics")


class Reporter:
    """Overall and per-stage progress with ETA, on stderr (stdout stays clean for --json)."""

    def __init__(self, total: int, enabled: bool = True, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not enabled, transient=False,
        )
        self.overall: TaskID = self.progress.add_task("suite", total=total)
        self.stages = {s: self.progress.add_task(s, total=1, start=False) for s in STAGES}

    def __enter__(self) -> "Reporter":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def stage(self, name: str, total: int) -> "StageCallback":
        task = self.stages[name]
        self.progress.reset(task, total=max(total, 1), completed=0, start=True)
        return StageCallback(self, task)

    def advance_overall(self) -> None:
        self.progress.advance(self.overall)

    def log(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False)


class StageCallback:
    """Called as ``cb(done, total)`` by long-running stages."""

    def __init__(self, reporter: Reporter, task: TaskID):
        self.reporter, self.task = reporter, task

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.reporter.progress.update(self.task, total=max(total, 1))
        self.reporter.progress.update(self.task, completed=done)
