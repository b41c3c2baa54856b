"""``genbench bench``: genbench against its peers, on the same inputs, in one process (issue 11).

    genbench bench all --n 5000 --images 100 --publish leaderboards/performance.md

Tasks (each a module): ``metrics`` (FID/KID/IS/precision/recall/density/coverage on synthetic features,
against torch-fidelity, prdc, clean-fid, pytorch-fid), ``images`` (PNG folders to FID/KID/IS, against
torch-fidelity, torchmetrics, clean-fid, pytorch-fid, on one random-weights InceptionV3, and the
``--fast`` path against the exact one), ``sampler`` (the DDIM loop against diffusers' DDIMScheduler
loop and against the bare network forwards on one UNet2DModel). A peer that is not installed is
skipped with the reason; nothing is downloaded.

Each row: task, peer, size, genbench's and the peer's best wall-clock time, the speed-up (peer time /
genbench time: above 1 genbench is faster), the issue's target speed-up where it sets one, the largest
relative difference of the values, and each side's peak memory (``genbench.bench.measure`` says how it
is measured). ``--profile`` adds, for each row that misses its target, the functions that took most
of genbench's time there (cProfile, own time).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from genbench.bench.measure import Case, max_relative_difference, measure
from genbench.bench.metrics import metric_cases, synthetic_features

__all__ = ["Case", "bench", "bench_metrics", "main", "max_relative_difference", "synthetic_features"]

TASKS = ("metrics", "images", "sampler")
PEER_PACKAGES = ("torch", "torch-fidelity", "torchmetrics", "clean-fid", "pytorch-fid", "prdc", "diffusers", "numpy",
                 "scipy")


def run_cases(cases: list[Case], repeats: int, device: str, profile: bool = False) -> pd.DataFrame:
    rows, profiles = [], {}
    for case in cases:
        print(f"bench: {case.task} vs {case.peer} ({case.size}) ...", file=sys.stderr, flush=True)
        try:
            rows.append(measure(case, repeats, device))
        except Exception as e:  # noqa: BLE001 - a peer that cannot run here is one line of the table, not the end
            rows.append(failed_row(case, device, e))
        if profile and rows[-1]["met"] is False and case.task not in profiles:
            profiles[case.task] = top_functions(case.ours)
    table = pd.DataFrame(rows)
    table.attrs["profiles"] = profiles
    return table


def failed_row(case: Case, device: str, error: Exception) -> dict:
    why = (str(error).strip().splitlines() or [""])[0][:160]
    nan = float("nan")
    return {"task": case.task, "peer": case.peer, "size": case.size, "device": device, "genbench_s": nan, "peer_s": nan,
            "speedup": nan, "max_rel_diff": nan, "genbench_peak_mib": nan, "peer_peak_mib": nan, "target": case.target,
            "met": None, "note": f"failed here: {type(error).__name__}: {why}"}


def top_functions(fn: Callable, k: int = 6) -> list[tuple[str, float, float]]:
    """(function, own seconds, share of the total) of the k functions with the most own time in one call."""
    prof = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()):
        prof.runcall(fn)
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values()) or 1.0
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:k]
    return [(_function_name(key), v[2], v[2] / total) for key, v in top]


def _function_name(key: tuple[str, int, str]) -> str:
    file, line, name = key
    return name if file == "~" else f"{Path(file).name}:{line}({name})"


def bench_metrics(n: int, dim: int, device: str = "cpu", repeats: int = 1) -> pd.DataFrame:
    """genbench against each installed peer on n x dim features; one row per (task, peer)."""
    cases, skipped = metric_cases(n, dim, device)
    table = run_cases(cases, repeats, device)
    table.attrs["skipped"] = skipped
    return table


def bench(tasks: list[str], *, n: int, dim: int, images: int, batch: int, steps: int, device: str = "cpu",
          repeats: int = 1, workdir: Path | None = None, profile: bool = False, fid_n: int | None = None) -> pd.DataFrame:
    """Every case of ``tasks`` (from TASKS) in one table; ``attrs``: skipped peers, profiles, seconds."""
    from genbench.bench.images import image_cases
    from genbench.bench.sampling import sampler_cases
    from genbench.cache import subdir

    work = workdir or subdir("bench")
    builders = {"metrics": lambda: metric_cases(n, dim, device, fid_n), "images": lambda: image_cases(work, images, device),
                "sampler": lambda: sampler_cases(work, batch, steps, device)}
    start, cases, skipped = time.perf_counter(), [], {}
    for task in tasks:
        c, s = builders[task]()
        cases += c
        skipped.update({f"{peer} ({task})": why for peer, why in s.items()})
    table = run_cases(cases, repeats, device, profile)
    table.attrs.update(skipped=skipped, seconds=time.perf_counter() - start)
    return table


def format_table(table: pd.DataFrame) -> str:
    """The table as Markdown: one row per (task, peer)."""
    head = ("| task | peer | size | genbench s | peer s | speed-up | target | max rel. diff | genbench peak MiB "
            "| peer peak MiB | note |")
    lines = [head, "|" + "---|" * 11]
    for r in table.to_dict("records"):
        verdict = {True: "met", False: "**missed**"}.get(r["met"], "not measured")
        target = "" if r["target"] is None or pd.isna(r["target"]) else f"≥ {r['target']:.3g}x {verdict}"
        diff = "n/a" if pd.isna(r["max_rel_diff"]) else f"{r['max_rel_diff']:.1e}"
        speedup = "n/a" if pd.isna(r["speedup"]) else f"{r['speedup']:.2f}x"
        lines.append(f"| {r['task']} | {r['peer']} | {r['size']} | {r['genbench_s']:.3g} | {r['peer_s']:.3g} | "
                     f"{speedup} | {target} | {diff} | {r['genbench_peak_mib']:.0f} | {r['peer_peak_mib']:.0f} | "
                     f"{r['note']} |")
    return "\n".join(lines)


def missed_targets(table: pd.DataFrame) -> list[str]:
    """One line per row that misses its target: by how much, and where genbench's time went (--profile)."""
    out = []
    for r in table.to_dict("records"):
        if r["met"] is not False:
            continue
        line = (f"- {r['task']} vs {r['peer']}: speed-up {r['speedup']:.2f}x against the target "
                f"{r['target']:.3g}x (short by a factor {r['target'] / r['speedup']:.2f})")
        top = table.attrs.get("profiles", {}).get(r["task"])
        if top:
            line += "; genbench's own time by function: " + ", ".join(f"{f} {s:.2f} s ({p:.0%})" for f, s, p in top)
        out.append(line)
    return out


def environment() -> dict[str, str]:
    """Device, CPU, threads, load and library versions of this run."""
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), platform.machine())
    from genbench import __version__
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores, capability {torch.backends.cpu.get_cpu_capability()}",
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "torch threads": str(torch.get_num_threads()),
        "load average at start": f"{os.getloadavg()[0]:.1f}",
        "python": platform.python_version(),
        "versions": ", ".join(f"{p} {version(p)}" for p in ("genbench", *PEER_PACKAGES)).replace(
            f"genbench {version('genbench')}", f"genbench {__version__}"),
    }


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def performance_markdown(table: pd.DataFrame, command: str, env: dict[str, str]) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# genbench performance against its peers",
        "",
        f"Generated by `{command}` on {when} ({table.attrs.get('seconds', 0):.0f} s); regenerate with the same command.",
        "Every row: the same inputs on both sides, in one process, best of the repeats; speed-up = peer time / genbench time",
        "(above 1: genbench is faster); max rel. diff: largest |genbench - peer| / max(|peer|, 1e-5) over the values;",
        "peak memory: growth of this process's RSS plus its children's PSS, sampled every 5 ms (`genbench/bench/measure.py`).",
        "Targets are issue 11's.",
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
        "",
        format_table(table),
    ]
    skipped = table.attrs.get("skipped") or {}
    if skipped:
        parts += ["", "Skipped peers:", *[f"- {peer}: {why}" for peer, why in skipped.items()]]
    missed = missed_targets(table)
    parts += ["", "Missed targets:" if missed else "Every target with a row here was met.", *missed]
    if env["gpu"] == "none":
        parts += ["", "GPU figures are missing: no GPU was available to this run (the issue's GPU targets are unmeasured)."]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genbench bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=[*TASKS, "all"])
    parser.add_argument("--n", type=int, default=5000, help="feature rows per set for `metrics` (default 5000)")
    parser.add_argument("--fid-n", type=int, default=None, help="feature rows per set for FID in `metrics` [--n]")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension for `metrics` (default 2048)")
    parser.add_argument("--images", type=int, default=100, help="PNGs per folder for `images` (default 100)")
    parser.add_argument("--batch", type=int, default=8, help="samples per batch for `sampler` (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps for `sampler` (default 20)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and numpy (default: all)")
    parser.add_argument("--workdir", type=Path, default=None, help="inputs (PNGs, weights, pipeline) [cache/bench]")
    parser.add_argument("--profile", action="store_true", help="profile genbench's side of each missed target")
    parser.add_argument("--publish", type=Path, default=None, metavar="FILE.md", help="also write the table here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)  # numpy's BLAS, as the peers use it
    env = environment()
    tasks = list(TASKS) if args.task == "all" else [args.task]
    table = bench(tasks, n=args.n, dim=args.dim, images=args.images, batch=args.batch, steps=args.steps,
                  device=args.device, repeats=args.repeats, workdir=args.workdir, profile=args.profile,
                  fid_n=args.fid_n)
    print(format_table(table))
    for peer, why in (table.attrs.get("skipped") or {}).items():
        print(f"skipped {peer}: {why}")
    for line in missed_targets(table):
        print(line)
    if args.publish:
        command = "genbench bench " + " ".join(argv if argv is not None else sys.argv[1:])
        args.publish.parent.mkdir(parents=True, exist_ok=True)
        args.publish.write_text(performance_markdown(table, command, env))
        print(f"published: {args.publish}", file=sys.stderr)
    return 0
