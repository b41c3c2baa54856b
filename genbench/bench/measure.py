"""How ``genbench bench`` measures: wall-clock time, peak memory and the difference of the values.

* Time: ``time.perf_counter`` around one call, the device synchronised (CUDA) before it stops;
  the two sides alternate ``repeats`` times (a drifting load on a shared machine hits both) and
  the best time of each is kept; where a case asks for it (the sampler loop), one untimed call
  of each side comes first.
* Peak memory on the CPU: the growth, over its value before the call, of this process's resident
  set (``/proc/self/statm``) plus the proportional set size of its child processes (data-loader
  workers; ``/proc/PID/smaps_rollup``), sampled every 5 ms by a thread. RSS sees what torch and
  numpy allocate alike (tracemalloc would miss torch). Caveats: a peak shorter than 5 ms can be
  missed, and memory the allocator kept from an earlier call is not seen again as growth. On a
  GPU: ``torch.cuda.max_memory_allocated`` above the allocation before the call.
* Values: the largest |genbench - peer| / max(|peer|, 1e-5) over the peer's keys (a ``_std`` also scaled by its ``_mean``).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

Values = dict[str, float]
SAMPLE_EVERY_S = 0.005
# values are compared relative to max(|peer value|, floor): below the floor a difference is read as
# absolute. KID's std is exactly 0 when the subset is the whole set and float32 noise (~4e-7) in
# torch-fidelity's: relative difference 1, absolute difference nothing.
ABSOLUTE_FLOOR = 1e-5


@dataclass(frozen=True)
class Case:
    """One task done by genbench (``ours``) and by a peer (``theirs``), values keyed by genbench's keys.

    ``target``: the speed-up (peer time / genbench time) the issue asks for, None where it sets none.
    """

    task: str
    peer: str
    size: str
    ours: Callable[[], Values]
    theirs: Callable[[], Values]
    target: float | None = None
    note: str = ""
    difference: Callable[[dict, dict], float] | None = None  # default: max_relative_difference
    min_repeats: int = 1  # cheap, noisy cases (the sampler loop) alternate at least this often
    warmup: bool = False  # True: one untimed call of each side first (kernels, caches); else the first call counts


class PeakMemory:
    """Peak memory growth in MiB while the block runs (CUDA allocator, or sampled CPU RSS + children's PSS)."""

    def __init__(self, device: str):
        self.cuda = torch.device(device).type == "cuda"
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._peak = process_tree_bytes()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self._peak = max(self._peak, process_tree_bytes())

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = (max(self._peak, process_tree_bytes()) - self._base) / 2**20


def process_tree_bytes() -> int:
    """This process's RSS plus its descendants' PSS, in bytes (Linux /proc; 0 elsewhere)."""
    return _rss_self() + sum(_pss(pid) for pid in _descendants(os.getpid()))


def _rss_self() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in task.read_text().split():
                out += [int(child), *_descendants(int(child))]
    return out


def _pss(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def timed(fn: Callable[[], Values], device: str) -> tuple[float, float, Values]:
    """(seconds, peak MiB, values) of one call; the peers' prints are swallowed."""
    with PeakMemory(device) as memory, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        values = fn()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, memory.peak_mb, values


def max_relative_difference(ours: Values, theirs: Values, floor: float = ABSOLUTE_FLOOR) -> float:
    """Largest |ours - theirs| / scale over the peer's keys, scale = max(|theirs|, floor); a standard deviation
    ``X_std`` is scaled by its mean ``X_mean`` too (KID's std of ~0 against 3e-7 of float noise is no difference)."""
    def scale(key: str, value: float) -> float:
        mean = theirs.get(key[: -len("_std")] + "_mean", 0.0) if key.endswith("_std") else 0.0
        return max(abs(value), abs(mean), floor)

    return max(abs(ours[k] - v) / scale(k, v) for k, v in theirs.items())


def measure(case: Case, repeats: int, device: str) -> dict:
    """One table row: the sides alternate (genbench first) ``repeats`` times; the best time and the largest
    peak of each, their values compared."""
    if case.warmup:
        with contextlib.redirect_stdout(io.StringIO()):
            case.ours(), case.theirs()
    runs = [(timed(case.ours, device), timed(case.theirs, device)) for _ in range(max(repeats, case.min_repeats))]
    (ours_s, ours_mb, ours), (theirs_s, theirs_mb, theirs) = (
        (min(r[i][0] for r in runs), max(r[i][1] for r in runs), runs[-1][i][2]) for i in (0, 1))
    speedup = theirs_s / ours_s
    return {
        "task": case.task, "peer": case.peer, "size": case.size, "device": device,
        "genbench_s": ours_s, "peer_s": theirs_s, "speedup": speedup,
        "max_rel_diff": (case.difference or max_relative_difference)(ours, theirs) if theirs else float("nan"),
        "genbench_peak_mib": ours_mb, "peer_peak_mib": theirs_mb,
        "target": case.target, "met": None if case.target is None else bool(speedup >= case.target),
        "note": case.note,
    }
