"""Benchmarks (not tests): genbench's metrics against the reference implementations.

    python -m genbench.bench metrics --n 10000 --dim 2048 [--device cuda] [--repeats 3]

On the same synthetic features and device, in one run, each metric is timed in genbench and in
each installed reference package (torch-fidelity always; prdc, clean-fid, pytorch-fid when
installed, skipped otherwise). The table gives the best wall-clock time of ``repeats`` runs, the
time ratio genbench / reference (below 1: genbench is faster), the largest relative difference of
the values (relative to max(|reference value|, 1e-5), so float noise in a value near 0 does not
read as 100%), and the peak memory of each side: CUDA's max_memory_allocated on a GPU, on the CPU the
growth of the process's resident set sampled every millisecond (it sees torch and numpy alike).
clean-fid draws its KID subsets with its own generator, so its KID differs by sampling noise. Below
n = 1,000 every side uses KID subsets of n samples, as ``genbench eval`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from genbench.metrics import MetricOptions, evaluate_features

Values = dict[str, float]


@dataclass(frozen=True)
class Case:
    """One metric computed by genbench and by one reference package, keyed by genbench's keys."""

    metric: str
    reference: str
    ours: Callable[[], Values]
    theirs: Callable[[], Values]


def synthetic_features(n: int, dim: int, seed: int = 0, classes: int = 1008) -> dict[str, torch.Tensor]:
    """Two sets of non-negative float32 features (like pooled ReLU activations) and logits."""
    g = torch.Generator().manual_seed(seed)
    fake = (torch.randn(n, dim, generator=g) + 0.1).abs()
    real = (torch.randn(n, dim, generator=g) * 1.02 + torch.linspace(-0.1, 0.1, dim)).abs()
    return {"fake": fake, "real": real, "logits": torch.randn(n, classes, generator=g) * 3}


class PeakMemory:
    """Peak memory growth in MiB while the block runs (CUDA allocator, or sampled CPU RSS)."""

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
            self._base, self._peak, self._stop = _rss(), _rss(), threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, _rss())

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = (max(self._peak, _rss()) - self._base) / 2**20


def _rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def timed(fn: Callable[[], Values], repeats: int, device: str) -> tuple[float, float, Values]:
    """(best seconds, peak MiB, values) of ``repeats`` calls."""
    best, peak, values = float("inf"), 0.0, {}
    for _ in range(repeats):
        with PeakMemory(device) as memory, contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            values = fn()
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        peak = max(peak, memory.peak_mb)
    return best, peak, values


def kid_subset_size(f: dict) -> int:
    """The KID subset size both sides use: torch-fidelity's 1,000, or n when the sets are smaller
    (as ``genbench eval`` reduces it; torch-fidelity refuses a subset larger than a set)."""
    return min(MetricOptions().kid_subset_size, len(f["fake"]), len(f["real"]))


def genbench_runner(names: list[str], f: dict, device: str) -> Callable[[], Values]:
    fake = {"pool": f["fake"], "logits": f["logits"]}
    options = MetricOptions(device=device, kid_subset_size=kid_subset_size(f))
    return lambda: evaluate_features(names, fake, {"pool": f["real"]}, options).values


def torch_fidelity_cases(f: dict, device: str) -> list[Case]:
    from torch_fidelity import metric_fid, metric_isc, metric_kid, metric_prc

    def fid() -> Values:
        stats = metric_fid.fid_features_to_statistics(f["fake"]), metric_fid.fid_features_to_statistics(f["real"])
        return {"fid": metric_fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]}

    def kid(dtype: torch.dtype) -> Callable[[], Values]:
        def run() -> Values:
            out = metric_kid.kid_features_to_metric(
                f["fake"].to(dtype), f["real"].to(dtype), kid_subset_size=kid_subset_size(f), verbose=False
            )
            return {"kid_mean": out["kernel_inception_distance_mean"], "kid_std": out["kernel_inception_distance_std"]}

        return run

    def isc() -> Values:
        out = metric_isc.isc_features_to_metric(f["logits"].to(device))
        return {"is_mean": out["inception_score_mean"], "is_std": out["inception_score_std"]}

    def prc() -> Values:
        out = metric_prc.prc_features_to_metric(f["fake"].to(device), f["real"].to(device), verbose=False)
        return {"precision": out["precision"], "recall": out["recall"]}

    return [
        Case("fid", "torch-fidelity", genbench_runner(["fid"], f, device), fid),
        Case("kid", "torch-fidelity", genbench_runner(["kid"], f, device), kid(torch.float32)),
        # torch-fidelity computes KID in the features' dtype: fed float64 it shows the float32 round-off
        Case("kid", "torch-fidelity (float64 input)", genbench_runner(["kid"], f, device), kid(torch.float64)),
        Case("is", "torch-fidelity", genbench_runner(["is"], f, device), isc),
        Case("precision/recall", "torch-fidelity", genbench_runner(["precision", "recall"], f, device), prc),
    ]


def prdc_cases(f: dict, device: str) -> list[Case]:
    prdc = importlib.import_module("prdc")

    def dc() -> Values:
        out = prdc.compute_prdc(f["real"].numpy(), f["fake"].numpy(), nearest_k=5)
        return {"density": float(out["density"]), "coverage": float(out["coverage"])}

    return [Case("density/coverage", "prdc", genbench_runner(["density", "coverage"], f, device), dc)]


def _numpy_statistics(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    a = x.numpy()
    return np.mean(a, axis=0), np.cov(a, rowvar=False)


def clean_fid_cases(f: dict, device: str) -> list[Case]:
    cleanfid = importlib.import_module("cleanfid.fid")

    def fid() -> Values:
        return {"fid": float(cleanfid.frechet_distance(*_numpy_statistics(f["fake"]), *_numpy_statistics(f["real"])))}

    def kid() -> Values:
        np.random.seed(2020)
        m = kid_subset_size(f)
        kid = cleanfid.kernel_distance(f["fake"].numpy(), f["real"].numpy(), num_subsets=100, max_subset_size=m)
        return {"kid_mean": kid}

    return [
        Case("fid", "clean-fid", genbench_runner(["fid"], f, device), fid),
        Case("kid", "clean-fid", genbench_runner(["kid"], f, device), kid),
    ]


def pytorch_fid_cases(f: dict, device: str) -> list[Case]:
    fid_score = importlib.import_module("pytorch_fid.fid_score")

    def fid() -> Values:
        stats = _numpy_statistics(f["fake"]) + _numpy_statistics(f["real"])
        return {"fid": float(fid_score.calculate_frechet_distance(*stats))}

    return [Case("fid", "pytorch-fid", genbench_runner(["fid"], f, device), fid)]


REFERENCES: dict[str, Callable[[dict, str], list[Case]]] = {
    "torch-fidelity": torch_fidelity_cases,
    "prdc": prdc_cases,
    "clean-fid": clean_fid_cases,
    "pytorch-fid": pytorch_fid_cases,
}


def installed_cases(f: dict, device: str) -> tuple[list[Case], list[str]]:
    """Cases of every installed reference package, and the names of those skipped."""
    cases, skipped = [], []
    for name, build in REFERENCES.items():
        try:
            cases += build(f, device)
        except ImportError:
            skipped.append(name)
    return cases, skipped


# values are compared relative to max(|reference value|, floor): below the floor a difference is
# read as absolute. KID's std is exactly 0 when the subset is the whole set and float32 noise
# (~4e-7) in torch-fidelity's: relative difference 1, absolute difference nothing.
ABSOLUTE_FLOOR = 1e-5


def max_relative_difference(ours: Values, theirs: Values, floor: float = ABSOLUTE_FLOOR) -> float:
    """Largest |ours - theirs| / max(|theirs|, floor) over the reference's keys."""
    return max(abs(ours[k] - v) / max(abs(v), floor) for k, v in theirs.items())


def bench_metrics(n: int, dim: int, device: str = "cpu", repeats: int = 1) -> pd.DataFrame:
    """Time genbench against each installed reference on n x dim features; one row per (metric, reference)."""
    f = synthetic_features(n, dim)
    cases, skipped = installed_cases(f, device)
    rows = []
    for case in cases:
        ours_s, ours_mb, ours = timed(case.ours, repeats, device)
        theirs_s, theirs_mb, theirs = timed(case.theirs, repeats, device)
        rows.append(
            {
                "metric": case.metric,
                "reference": case.reference,
                "n": n,
                "dim": dim,
                "device": device,
                "genbench_s": ours_s,
                "reference_s": theirs_s,
                "time_ratio": ours_s / theirs_s,
                "max_rel_diff": max_relative_difference(ours, theirs),
                "genbench_peak_mib": ours_mb,
                "reference_peak_mib": theirs_mb,
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = skipped
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genbench.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    metrics = sub.add_parser(
        "metrics", help="metrics vs torch-fidelity/prdc/clean-fid/pytorch-fid, e.g. --n 10000 --dim 2048"
    )
    metrics.add_argument("--n", type=int, default=10_000, help="samples per set (default 10000)")
    metrics.add_argument("--dim", type=int, default=2048, help="feature dimension (default 2048)")
    metrics.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    metrics.add_argument("--repeats", type=int, default=1, help="runs per measurement; the best is kept")
    metrics.add_argument("--threads", type=int, default=None, help="CPU threads for torch and numpy (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)  # numpy's BLAS, as used by the reference packages
    table = bench_metrics(args.n, args.dim, args.device, args.repeats)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    if table.attrs.get("skipped"):
        print(f"not installed, skipped: {', '.join(table.attrs['skipped'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
