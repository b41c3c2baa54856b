"""SIGKILL a ``genbench run`` at random points and check that a rerun loses and duplicates nothing.

Each trial starts ``python -m genbench run`` on a small suite (tiny model, toy 2-D data and
digits, several seeds) in a fresh run directory and cache, waits until the run starts its
first spec, sleeps a random fraction of the run's working time and sends SIGKILL. Then it
reads what the killed process left, reruns the same command to completion and checks:

* the rerun exits 0;
* the store holds exactly one record per spec of the suite, every key once, all ``ok``, and
  ``PRAGMA integrity_check`` answers ``ok``;
* every record stored as ``ok`` before the kill is still there, unchanged (nothing lost, nothing
  recomputed);
* the metrics equal those of an uninterrupted reference run (bit for bit when both ran with the
  same thread count; within 1e-9 otherwise, as BLAS reductions round by thread count);
* every cache entry loads (safetensors files parse, checkpoints load as models, JSON parses);
  temp files left by the killed writer (``*.tmp``) are counted, never read as entries.

Targeted kills complement the random ones: a run is killed at its k-th artifact write, between
the temp file's fsync and its rename (the child wraps ``os.replace``, which only genbench's
atomic writer calls), for k = 1, 2, ... until a run finishes before its k-th write. That lands a
kill inside every write of the suite, which random timing almost never does.

Usage::

    python benchmarks/kill_trials.py --trials 10 --seed 0          # random kills, then every write
    python benchmarks/kill_trials.py --trials 10 --no-write-kills

Exit status 0 when every trial passes. ``run_trials`` is also called by
tests/test_reliability.py with fewer trials.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE_YAML = """\
name: killtrial
description: SIGKILL trials (benchmarks/kill_trials.py)
settings: {n_samples: 300, n_reference: 300}
runs:
  - datasets: [toy2d:8gaussians, toy2d:moons, digits]
    models: [tiny]
    seeds: [0, 1]
"""
TIMING_KEYS = ("sample_s_per_1k", "train_s")  # wall-clock: the only metrics allowed to differ


@dataclass
class Work:
    """One trial's private suite file, run directory and cache."""

    root: Path

    @property
    def suite(self) -> Path:
        return self.root / "killtrial.yaml"

    @property
    def out(self) -> Path:
        return self.root / "run"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def args(self) -> list[str]:
        return ["run", "--suite", str(self.suite), "--out", str(self.out), "--cache", str(self.cache),
                "--device", "cpu", "--no-progress"]

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "genbench", *self.args()]


@dataclass
class Trial:
    index: int
    delay_s: float
    killed: bool = False
    last_line: str = ""  # what the run printed last before the kill
    ok_before: int = 0  # records stored as ok when the kill landed
    temp_files: int = 0  # *.tmp files the killed writer left
    rerun_exit: int | None = None
    bit_identical: bool = False  # metrics equal the reference run's bit for bit
    finished_s: float = 0.0  # work seconds of a run that finished before its kill (0 when killed)
    at_write: int | None = None  # targeted kill: at this artifact write (None: at delay_s)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def make_work(root: Path) -> Work:
    root.mkdir(parents=True, exist_ok=True)
    work = Work(root)
    work.suite.write_text(SUITE_YAML)
    return work


def child_env() -> dict[str, str]:
    """The child imports this checkout's genbench and reference_models (whatever is installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("GENBENCH_CACHE", None)
    return env


def expected_keys(work: Work) -> list[str]:
    from genbench.suite import expand_suite, load_suite

    return [s.key for s in expand_suite(load_suite(str(work.suite)))]


class LineWatcher:
    """Reads a child's stderr on a thread; ``started`` is set at the first ``run`` line."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.started = threading.Event()
        self.t_start = self.t_last = 0.0  # perf_counter of the first ``run`` line and of the last line
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            self.t_last = time.perf_counter()
            if line.startswith("run ") and not self.started.is_set():
                self.t_start = self.t_last
                self.started.set()
        self.started.set()  # the stream ended (the run finished or died)

    def work_s(self) -> float:
        """Seconds from the first spec to the last line printed (the leaderboard line of a finished run)."""
        return max(0.0, self.t_last - self.t_start)


def run_to_completion(work: Work, timeout_s: float = 600) -> tuple[int, float, str]:
    """Run the suite once without interruption: (exit code, seconds of work after the first spec began, stderr)."""
    proc = subprocess.Popen(work.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(), cwd=work.root)
    watch = LineWatcher(proc)
    code = proc.wait(timeout_s)
    watch.thread.join(10)
    return code, watch.work_s(), "\n".join(watch.lines)


# A child that SIGKILLs itself at its k-th os.replace (genbench's atomic writer renames with it).
KILL_AT_WRITE = """\
import os, runpy, signal, sys
k, calls, real_replace = int(sys.argv.pop(1)), [0], os.replace
def replace(src, dst):
    calls[0] += 1
    if calls[0] == k:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
os.replace = replace
sys.argv[0] = "genbench"
runpy.run_module("genbench", run_name="__main__", alter_sys=True)
"""


def kill_at_write(work: Work, k: int, timeout_s: float = 600) -> tuple[bool, str]:
    """Run the suite, killed at its ``k``-th artifact write; (whether it was killed, its last line)."""
    argv = [sys.executable, "-c", KILL_AT_WRITE, str(k), *work.args()]
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(), cwd=work.root,
                          timeout=timeout_s)
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    return proc.returncode == -signal.SIGKILL, (lines[-1] if lines else "")


def kill_after(work: Work, delay_s: float, timeout_s: float = 600) -> tuple[bool, str, float]:
    """Start a run, SIGKILL it ``delay_s`` after its first spec began.

    Returns (whether it was killed, its last line, its work seconds when it finished before the kill).
    """
    proc = subprocess.Popen(work.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(), cwd=work.root)
    watch = LineWatcher(proc)
    watch.started.wait(timeout_s)
    try:
        proc.wait(delay_s)
        killed = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout_s)
        killed = True
    watch.thread.join(10)
    return killed, (watch.lines[-1] if watch.lines else ""), (0.0 if killed else watch.work_s())


def stored_rows(out: Path) -> list[tuple]:
    """(key, status, metrics_json, created_at) of every row, read with plain sqlite3."""
    path = out / "results.sqlite"
    if not path.is_file():
        return []
    con = sqlite3.connect(path, timeout=60)
    try:
        return con.execute("SELECT key, status, metrics_json, created_at FROM records ORDER BY key").fetchall()
    finally:
        con.close()


def integrity(out: Path) -> str:
    con = sqlite3.connect(out / "results.sqlite", timeout=60)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def temp_files(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.is_dir() for p in d.rglob("*.tmp")]


def unreadable_cache_entries(cache: Path) -> list[str]:
    """Cache entries (temp files excluded) that do not load: safetensors, checkpoints, JSON."""
    from safetensors.torch import load_file

    from genbench.models.base import load_checkpoint

    bad = []
    for p in sorted(cache.rglob("*")):
        if not p.is_file() or p.suffix == ".tmp":
            continue
        try:
            if p.suffix == ".safetensors":
                load_file(str(p))
            elif p.suffix == ".json":
                json.loads(p.read_text())
        except Exception as e:  # noqa: BLE001 - any failure is a corrupt entry
            bad.append(f"{p.name}: {type(e).__name__}")
    for j in sorted((cache / "checkpoints").glob("*.json")):
        try:
            load_checkpoint(j.with_suffix(""))
        except Exception as e:  # noqa: BLE001
            bad.append(f"checkpoint {j.stem[:12]}: {type(e).__name__}: {e}")
    return bad


def same_metrics(a: dict | None, b: dict, rel: float = 1e-9) -> bool:
    """Equal up to ``rel``: BLAS reductions round differently with another thread count (~1e-15)."""
    if a is None or set(a) != set(b):
        return False
    return all(math.isclose(a[k], b[k], rel_tol=rel, abs_tol=1e-12) if isinstance(b[k], float) else a[k] == b[k] for k in b)


def metrics_without_timing(rows: list[tuple]) -> dict[str, dict]:
    return {key: {k: v for k, v in json.loads(m).items() if k not in TIMING_KEYS} for key, _, m, _ in rows}


def check_after_rerun(trial: Trial, work: Work, keys: list[str], before: list[tuple], reference: dict[str, dict]) -> None:
    rows = stored_rows(work.out)
    found = [r[0] for r in rows]
    if sorted(found) != sorted(keys):
        trial.problems.append(f"stored keys {len(found)} (unique {len(set(found))}) != {len(keys)} specs")
    if any(r[1] != "ok" for r in rows):
        trial.problems.append("records not ok: " + ", ".join(f"{r[0][:8]}={r[1]}" for r in rows if r[1] != "ok"))
    if integrity(work.out) != "ok":
        trial.problems.append("PRAGMA integrity_check failed")
    now = {r[0]: r for r in rows}
    for r in before:
        if r[1] == "ok" and now.get(r[0]) != r:
            trial.problems.append(f"record {r[0][:8]} stored before the kill changed or vanished")
    got = metrics_without_timing(rows)
    diff = sorted(k[:8] for k in reference if not same_metrics(got.get(k), reference[k]))
    if diff:
        trial.problems.append(f"metrics differ from the uninterrupted run for {diff}")
    trial.bit_identical = got == reference
    bad = unreadable_cache_entries(work.cache)
    if bad:
        trial.problems.append("corrupt cache entries: " + "; ".join(bad))


def rerun(work: Work, in_process: bool = False) -> int:
    """The same command again, as a new process or (faster, for the tests) through ``genbench.cli.main`` here."""
    if in_process:
        from genbench.cli import main

        try:
            main(work.args())
        except SystemExit as e:
            return int(e.code or 0)
        return 0
    code, _, err = run_to_completion(work)
    if code != 0:
        sys.stderr.write(err + "\n")
    return code


def one_trial(index: int, delay_s: float, root: Path, keys: list[str], reference: dict[str, dict],
              in_process_rerun: bool = False, at_write: int | None = None) -> Trial:
    """Kill a run ``delay_s`` after its first spec (or at its ``at_write``-th write), rerun, check."""
    work = make_work(root / (f"trial{index:02d}" if at_write is None else f"write{at_write:02d}"))
    trial = Trial(index, delay_s, at_write=at_write)
    if at_write is None:
        trial.killed, trial.last_line, trial.finished_s = kill_after(work, delay_s)
    else:
        trial.killed, trial.last_line = kill_at_write(work, at_write)
    before = stored_rows(work.out)
    trial.ok_before = sum(r[1] == "ok" for r in before)
    trial.temp_files = len(temp_files(work.cache, work.out))
    trial.rerun_exit = rerun(work, in_process_rerun)
    if trial.rerun_exit != 0:
        trial.problems.append(f"rerun exited {trial.rerun_exit}")
    check_after_rerun(trial, work, keys, before, reference)
    return trial


def describe(t: Trial, n_specs: int) -> str:
    when = f"at write {t.at_write}" if t.at_write is not None else f"at +{t.delay_s:5.2f} s"
    return (f"kill {when} ({'killed' if t.killed else 'finished first'}), {t.ok_before}/{n_specs} records ok before, "
            f"{t.temp_files} temp files left, last line {t.last_line[:60]!r}; rerun exit {t.rerun_exit}, "
            f"metrics {'bit-identical' if t.bit_identical else 'within 1e-9'}: "
            f"{'PASS' if t.passed else 'FAIL ' + '; '.join(t.problems)}")


def run_trials(trials: int = 10, seed: int = 0, root: Path | None = None, log=print,
               in_process_rerun: bool = False, window_s: float | None = None,
               write_kills: list[int] | None = None) -> list[Trial]:
    """An uninterrupted reference run, then ``trials`` kill-and-rerun trials; returns their results.

    The reference run is a process timed to find the window the kills are drawn from, or, when
    ``window_s`` is given (the tests), an in-process run that only provides the reference metrics.
    ``write_kills``: the writes to kill at afterwards (``[]``: none; ``None``: 1, 2, ... until a run
    finishes before its write).
    """
    root = Path(root or tempfile.mkdtemp(prefix="genbench-kill-"))
    calib = make_work(root / "reference")
    keys = expected_keys(calib)
    if window_s is None:
        code, window_s, err = run_to_completion(calib)
    else:
        code, err = rerun(calib, in_process=True), "(in process)"
    if code != 0:
        raise RuntimeError(f"the uninterrupted reference run failed ({code}):\n{err}")
    reference = metrics_without_timing(stored_rows(calib.out))
    log(f"reference run: {len(keys)} specs; kills drawn from the first {window_s:.2f} s after the first spec began")
    rng = random.Random(seed)
    results = []
    for i in range(trials):
        t = one_trial(i, rng.uniform(0.0, window_s), root, keys, reference, in_process_rerun)
        if not t.killed and t.finished_s > 0:
            window_s = min(window_s, t.finished_s)  # the machine got faster: draw later kills from the real span
        log(f"trial {i:2d}: {describe(t, len(keys))}")
        results.append(t)
    k = 0
    while write_kills is None or k < len(write_kills):
        at = write_kills[k] if write_kills is not None else k + 1
        t = one_trial(len(results), 0.0, root, keys, reference, in_process_rerun, at_write=at)
        log(f"write {at:2d}: {describe(t, len(keys))}")
        results.append(t)
        k += 1
        if write_kills is None and not t.killed:
            break  # the run has fewer writes than ``at``
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", type=Path, default=None, help="work directory [default: a new temp dir]")
    ap.add_argument("--no-write-kills", action="store_true", help="skip the kills at each artifact write")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    results = run_trials(args.trials, args.seed, args.root, write_kills=[] if args.no_write_kills else None)
    rand = [t for t in results if t.at_write is None]
    writes = [t for t in results if t.at_write is not None]
    print(f"random kills: {sum(t.passed for t in rand)}/{len(rand)} passed "
          f"({sum(t.killed for t in rand)} killed mid-run, {sum(not t.killed for t in rand)} finished before the kill)")
    if writes:
        print(f"kills at writes: {sum(t.passed for t in writes)}/{len(writes)} passed "
              f"({sum(t.killed for t in writes)} writes hit, {sum(t.temp_files for t in writes)} temp files left behind)")
    return 0 if all(t.passed for t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
